package xds_test

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/xds"
)

var v2Key = endpoint.Key{Namespace: "default", Service: "be-v2", Port: "grpc"}

// routedEnv: Service be (pods be-1, be-2) and Service be-v2 (pod v2-1), each its own
// cluster, behind one control plane whose Service list the test sets.
type routedEnv struct {
	ctx  context.Context
	svcs *fakeServices
	cp   *controlPlane
	c    echo.EchoServerClient
}

func startRoutedEnv(t *testing.T, rules []xds.RouteRule) *routedEnv {
	ctx := testCtx(t, 120*time.Second)
	var src fakeEndpoints
	src.publish(beKey, eps(startBackends(t, 2, "be-"), "")...)
	src.publish(v2Key, eps(startBackends(t, 1, "v2-"), "")...)
	svcs := &fakeServices{}
	svcs.set(xds.Service{Key: beKey, Routes: rules}, xds.Service{Key: v2Key})
	cp := startControlPlane(t, "127.0.0.1:0", &src, svcs)
	return &routedEnv{ctx: ctx, svcs: svcs, cp: cp, c: newClient(t, cp.addr, "", beTarget)}
}

func (e *routedEnv) route(rules []xds.RouteRule) {
	e.svcs.set(xds.Service{Key: beKey, Routes: rules}, xds.Service{Key: v2Key})
}

func split(be, v2 uint32) []xds.RouteRule {
	return []xds.RouteRule{{Backends: []xds.WeightedBackend{{Key: beKey, Weight: be}, {Key: v2Key, Weight: v2}}}}
}

// byVersion counts calls per Service: pods "be-*" are be, "v2-*" are be-v2.
func byVersion(got map[string]int) (be, v2 int) {
	for p, n := range got {
		if p[:3] == "v2-" {
			v2 += n
		} else {
			be += n
		}
	}
	return be, v2
}

// TestRouteWeightedSplit: 90/10 over 10,000 calls lands within ±2 % of each weight.
// The share of be-v2 is binomial (p = 0.1, n = 10,000): its standard deviation is 0.3 %,
// so ±2 % is 6.7 sigma — a false failure is not a practical concern.
func TestRouteWeightedSplit(t *testing.T) {
	e := startRoutedEnv(t, split(90, 10))
	eventually(t, e.ctx, "both versions answer", func() (bool, string) {
		got, err := spread(e.ctx, e.c, 100)
		be, v2 := byVersion(got)
		return err == nil && be > 0 && v2 > 0, fmtCounts(got)
	})
	const n = 10000
	got, err := spread(e.ctx, e.c, n)
	if err != nil {
		t.Fatal(err)
	}
	be, v2 := byVersion(got)
	t.Logf("90/10 over %d calls: be %d, be-v2 %d (%s)", n, be, v2, fmtCounts(got))
	if math.Abs(float64(v2)/n-0.10) > 0.02 || math.Abs(float64(be)/n-0.90) > 0.02 {
		t.Fatalf("be %d, be-v2 %d of %d: want 90 %% ± 2 and 10 %% ± 2", be, v2, n)
	}
	// Each backend is its own cluster with its own policy: be's round_robin still spreads
	// its share evenly over its two pods.
	if d := got["be-1"] - got["be-2"]; d > n/50 || d < -n/50 {
		t.Fatalf("be's share over its pods: %s", fmtCounts(got))
	}
}

// TestRouteShiftUnderLoad: moving 90/10 to 0/100 while callers run loses no call, and the
// client follows (within a generous deadline; the time is logged, not asserted).
func TestRouteShiftUnderLoad(t *testing.T) {
	e := startRoutedEnv(t, split(90, 10))
	eventually(t, e.ctx, "both versions answer", func() (bool, string) {
		got, err := spread(e.ctx, e.c, 100)
		be, v2 := byVersion(got)
		return err == nil && be > 0 && v2 > 0, fmtCounts(got)
	})
	loadCtx, stop := context.WithTimeout(e.ctx, 60*time.Second)
	defer stop()
	var calls, failed atomic.Int64
	var lastBe atomic.Int64 // unix nanos of the latest call answered by be
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := 0; i < 200000 && loadCtx.Err() == nil; i++ {
				r, err := e.c.SayHello(loadCtx, &echo.EchoRequest{Name: "load"})
				if loadCtx.Err() != nil {
					return
				}
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					t.Errorf("call failed during the shift: %v", err)
					continue
				}
				if r.GetPod()[:3] != "v2-" {
					lastBe.Store(time.Now().UnixNano())
				}
			}
		})
	}
	shift := time.Now()
	e.route(split(0, 100))
	eventually(t, e.ctx, "all calls on be-v2", func() (bool, string) {
		got, err := spread(e.ctx, e.c, 200)
		be, v2 := byVersion(got)
		return err == nil && be == 0 && v2 == 200, fmtCounts(got)
	})
	stop()
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d calls failed during the shift", failed.Load(), calls.Load())
	}
	if calls.Load() == 0 {
		t.Fatal("no calls ran during the shift")
	}
	t.Logf("shift 90/10 → 0/100 under load: %d calls, 0 failed; last call on be %v after the push",
		calls.Load(), time.Duration(lastBe.Load()-shift.UnixNano()).Round(time.Millisecond))
}

// firstStreamPod opens SayHelloStream and returns the pod of its first message.
func firstStreamPod(ctx context.Context, c echo.EchoServerClient) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := c.SayHelloStream(ctx, &echo.EchoRequest{Name: "s"})
	if err != nil {
		return "", err
	}
	r, err := s.Recv()
	if err != nil {
		return "", err
	}
	return r.GetPod(), nil
}

// TestRouteMethodMatch: SayHelloStream goes to be-v2, every other call to be.
func TestRouteMethodMatch(t *testing.T) {
	e := startRoutedEnv(t, []xds.RouteRule{
		{Match: xds.RouteMatch{Service: "echo.EchoServer", Method: "SayHelloStream"}, Backends: []xds.WeightedBackend{{Key: v2Key, Weight: 1}}},
		{Backends: []xds.WeightedBackend{{Key: beKey, Weight: 1}}},
	})
	eventually(t, e.ctx, "SayHello on be only", func() (bool, string) { return onlyPods(e.ctx, e.c, 50, "be-1", "be-2") })
	for range 20 {
		p, err := firstStreamPod(e.ctx, e.c)
		if err != nil || p != "v2-1" {
			t.Fatalf("SayHelloStream answered by %q (%v), want v2-1", p, err)
		}
	}
	// The same by regular expression.
	e.route([]xds.RouteRule{
		{Match: xds.RouteMatch{Service: `echo\.Echo.*`, Method: ".*Stream", Regex: true}, Backends: []xds.WeightedBackend{{Key: v2Key, Weight: 1}}},
		{Backends: []xds.WeightedBackend{{Key: beKey, Weight: 1}}},
	})
	eventually(t, e.ctx, "regex: SayHello stays on be", func() (bool, string) { return onlyPods(e.ctx, e.c, 50, "be-1", "be-2") })
	for range 20 {
		p, err := firstStreamPod(e.ctx, e.c)
		if err != nil || p != "v2-1" {
			t.Fatalf("regex: SayHelloStream answered by %q (%v), want v2-1", p, err)
		}
	}
}

// TestRouteHeaderMatch: calls with x-canary: yes go to be-v2, the rest to be.
func TestRouteHeaderMatch(t *testing.T) {
	e := startRoutedEnv(t, []xds.RouteRule{
		{Match: xds.RouteMatch{Headers: []xds.HeaderMatch{{Name: "x-canary", Value: "yes"}}}, Backends: []xds.WeightedBackend{{Key: v2Key, Weight: 1}}},
		{Backends: []xds.WeightedBackend{{Key: beKey, Weight: 1}}},
	})
	eventually(t, e.ctx, "plain calls on be only", func() (bool, string) { return onlyPods(e.ctx, e.c, 50, "be-1", "be-2") })
	got, err := spread(e.ctx, e.c, 50, "x-canary", "yes")
	if err != nil || got["v2-1"] != 50 {
		t.Fatalf("x-canary: yes → %s (%v), want all 50 on v2-1", fmtCounts(got), err)
	}
	got, err = spread(e.ctx, e.c, 50, "x-canary", "no")
	if be, _ := byVersion(got); err != nil || be != 50 {
		t.Fatalf("x-canary: no → %s (%v), want all 50 on be", fmtCounts(got), err)
	}
}

// TestRouteInvalidKeepsLastGood: rules naming a backend the control plane does not serve
// are not applied; the Service keeps routing by its last good rules.
func TestRouteInvalidKeepsLastGood(t *testing.T) {
	e := startRoutedEnv(t, []xds.RouteRule{{Backends: []xds.WeightedBackend{{Key: v2Key, Weight: 1}}}})
	eventually(t, e.ctx, "all on be-v2", func() (bool, string) { return onlyPods(e.ctx, e.c, 20, "v2-1") })
	e.route([]xds.RouteRule{{Backends: []xds.WeightedBackend{{Key: endpoint.Key{Namespace: "default", Service: "nope", Port: "grpc"}, Weight: 1}}}})
	eventually(t, e.ctx, "invalid rules counted", func() (bool, string) {
		n := e.cp.metric("spread_xds_config_errors_total", map[string]string{"reason": "invalid_routes"})
		return n >= 1, "no invalid_routes error counted"
	})
	for range 5 {
		if ok, state := onlyPods(e.ctx, e.c, 50, "v2-1"); !ok {
			t.Fatalf("after invalid rules: %s, want the last good routing (all on v2-1)", state)
		}
	}
}
