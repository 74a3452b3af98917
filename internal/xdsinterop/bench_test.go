package xdsinterop

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// endpointAcks returns, per ADS stream of a node whose id starts with prefix and that
// subscribes to the assignment of "be", the endpoint version it ACKed and whether that is
// the last version it was sent.
func (e *env) endpointAcks(tb testing.TB, prefix string) map[int64][2]string {
	tb.Helper()
	d, err := e.dump()
	if err != nil {
		tb.Fatal(err)
	}
	out := map[int64][2]string{}
	for _, c := range d.Clients {
		ts := c.Types["endpoint"]
		if strings.HasPrefix(c.NodeID, prefix) && slices.Contains(ts.Resources, "be.default:grpc") {
			out[c.Stream] = [2]string{ts.Acked, ts.Sent}
		}
	}
	return out
}

// waitNewAssignment waits until every stream of prefix has ACKed an assignment of "be"
// other than the one it held in before.
func (e *env) waitNewAssignment(tb testing.TB, prefix string, before map[int64][2]string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		now := e.endpointAcks(tb, prefix)
		done := len(now) > 0
		for s, v := range now {
			if v[0] == before[s][0] || v[0] != v[1] {
				done = false
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: no new assignment ACKed within 30 s (before %v, now %v)", prefix, before, now)
		}
		time.Sleep(5 * time.Millisecond) // polling the admin endpoint; the condition is the ACK
	}
}

// BenchmarkInteropDiscovery measures, per client implementation, the time from an
// EndpointSlice write on the real API server (a sixth pod, be-7 in zone a) to the first call
// that pod receives from a client calling in a loop. Each trial then removes the pod again
// and waits until the client has ACKed that. Reports p50/p99/max in ms.
//
//	SPREAD_KUBE_ASSETS=... go test ./internal/xdsinterop -run '^$' -bench InteropDiscovery -benchtime 30x
func BenchmarkInteropDiscovery(b *testing.B) {
	e := startEnv(b)
	be7 := e.backends["be-7"]
	base := readyPods(1, 2, 3, 4, 5)
	for _, k := range kinds(b) {
		b.Run(k.name, func(b *testing.B) {
			node := k.name + "-bench"
			c := k.start(b, node, e.bootstrap(node, ""), 0)
			tg := target("be", k.port)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			if _, err := c.do(ctx, request{Target: tg, N: 200}); err != nil {
				b.Fatal(err)
			}
			var lat []time.Duration
			run := time.Now().UnixNano() // the function runs more than once: names stay unique
			b.ResetTimer()
			for i := range b.N {
				name := fmt.Sprintf("%s-%d-trial-%d", node, run, i)
				type result struct {
					rep reply
					err error
				}
				res := make(chan result, 1)
				go func() {
					rep, err := c.do(ctx, request{Target: tg, N: 100000, Name: name, UntilPod: "be-7"})
					res <- result{rep, err}
				}()
				// The loop runs once its first call reached a pod.
				for started := false; !started; time.Sleep(time.Millisecond) {
					for _, p := range []string{"be-1", "be-2", "be-3", "be-4", "be-5"} {
						if _, ok := e.backends[p].FirstCall(name); ok {
							started = true
						}
					}
				}
				before := e.endpointAcks(b, node)
				t0 := time.Now()
				if err := e.setPods("be", append(base, pod{i: 7, ready: true})...); err != nil {
					b.Fatal(err)
				}
				r := <-res
				if r.err != nil {
					b.Fatal(r.err)
				}
				first, ok := be7.FirstCall(name)
				if !ok || r.rep.Counts["be-7"] == 0 {
					b.Fatalf("trial %d: be-7 never called: %v %v", i, r.rep.Counts, r.rep.Errors)
				}
				if first.Before(t0) {
					// The client still had be-7 from the previous trial: not a measurement.
					b.Logf("trial %d: be-7 called before the write; not counted", i)
				} else {
					lat = append(lat, first.Sub(t0))
				}
				e.waitNewAssignment(b, node, before)
				before = e.endpointAcks(b, node)
				if err := e.setPods("be", base...); err != nil {
					b.Fatal(err)
				}
				e.waitNewAssignment(b, node, before)
			}
			b.StopTimer()
			if len(lat) == 0 {
				b.Fatal("no trial counted")
			}
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(q(1), "max-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
