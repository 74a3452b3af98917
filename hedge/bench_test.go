package hedge_test

import (
	"slices"
	"testing"
	"time"

	"github.com/spread-grpc/spread/hedge"
)

// BenchmarkTail measures failed calls, p50/p99 latency and the extra load of plain
// round_robin and of hedged calls, all pods healthy, one of 5 slow (+200 ms) and one of 10
// frozen. Run it once per configuration:
//
//	go test -run '^$' -bench Tail -benchtime 1x ./hedge/
func BenchmarkTail(b *testing.B) {
	type scenario struct {
		name string
		pods int
		set  func(f *fleet)
	}
	scenarios := []scenario{
		{"healthy", 5, func(*fleet) {}},
		{"slow-pod", 5, func(f *fleet) { f.pods[1].Server.SetDelay(200 * time.Millisecond) }},
		{"frozen-pod", 10, func(f *fleet) { f.switches[3].Set(true) }},
	}
	pol := hedge.Policy{Idempotent: true, HedgeDelay: 50 * time.Millisecond, AdaptiveHedge: true, PerAttemptTimeout: 500 * time.Millisecond}
	for _, sc := range scenarios {
		for _, hedged := range []bool{false, true} {
			name := sc.name + "/plain"
			if hedged {
				name = sc.name + "/hedged"
			}
			b.Run(name, func(b *testing.B) {
				ctx := testCtx(b, 2*time.Minute)
				f := startFleet(b, sc.pods)
				var h *hedge.Client
				if hedged {
					h = newClient(b, nil, hedge.WithPolicy(sayHello, pol), hedge.WithBudget(hedge.Budget{Ratio: 0.3, Burst: 20}))
				}
				c := dial(b, ctx, f, h, "")
				sc.set(f)
				var before hedge.Stats
				if h != nil {
					before = h.Stats()
				}
				const n = 1000
				b.ResetTimer()
				for range b.N {
					rs := callMany(ctx, c, n, 8, time.Second)
					k, _ := failed(rs)
					ds := make([]time.Duration, 0, len(rs))
					for _, r := range rs {
						ds = append(ds, r.d)
					}
					slices.Sort(ds)
					b.ReportMetric(float64(k), "failed")
					b.ReportMetric(float64(ds[len(ds)/2])/1e6, "p50-ms")
					b.ReportMetric(float64(ds[len(ds)*99/100])/1e6, "p99-ms")
				}
				if h != nil {
					st := h.Stats()
					b.ReportMetric(float64(st.Extra()-before.Extra())/float64(st.Calls-before.Calls)*100, "extra-%")
				}
			})
		}
	}
}
