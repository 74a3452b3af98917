package xdsinterop

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/spread-grpc/spread/internal/grpcroute"
)

func routeRef(name string, weight int32) gatewayv1.GRPCBackendRef {
	return gatewayv1.GRPCBackendRef{BackendRef: gatewayv1.BackendRef{
		BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: ptr.To(gatewayv1.PortNumber(50051))},
		Weight:                 ptr.To(weight),
	}}
}

// TestNodeGRPCRoute: a GRPCRoute on a real API server → `spread xds` → @grpc/grpc-js-xds.
// Service be (pods be-1, be-2) gets a 90/10 split with be-lr (pod be-3) as the canary: over
// 10,000 calls each side is within ±2 % of its weight (be-lr's share is binomial, σ 0.3 %:
// ±2 % is 6.7 σ); 90/10 → 0/100 under load (4 callers) loses no call and the client
// follows (the time from the API write to be's last answer is logged); a header match
// sends x-canary: yes to the canary, the rest to be; a method match sends SayHelloStream to
// the canary; an invalid generation (unknown backend) gets ResolvedRefs=False
// BackendNotFound and the method routing keeps serving.
func TestNodeGRPCRoute(t *testing.T) {
	node, modules := nodeModules(t)
	e := startEnv(t)
	if err := e.setPods("be", readyPods(1, 2)...); err != nil {
		t.Fatal(err)
	}
	if err := e.setPods("be-lr", readyPods(3)...); err != nil {
		t.Fatal(err)
	}
	gc, err := gatewayclient.NewForConfig(e.rc)
	if err != nil {
		t.Fatal(err)
	}
	rt := &gatewayv1.GRPCRoute{ObjectMeta: metav1.ObjectMeta{Name: "canary", Namespace: "default"}}
	rt.Spec.ParentRefs = []gatewayv1.ParentReference{{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")), Name: "be"}}
	rt.Spec.Rules = []gatewayv1.GRPCRouteRule{{BackendRefs: []gatewayv1.GRPCBackendRef{routeRef("be", 90), routeRef("be-lr", 10)}}}
	if rt, err = gc.GatewayV1().GRPCRoutes("default").Create(e.ctx, rt, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c := startProc(t, "grpc-js-xds", e.bootstrap("node-route", ""), []string{"NODE_PATH=" + modules},
		node, filepath.Join(repoRoot(t), "examples", "node", "client.js"), "--lines", "xds:///be.default:50051")
	do := func(r request) reply {
		t.Helper()
		ctx, cancel := context.WithTimeout(e.ctx, 3*time.Minute)
		defer cancel()
		rep, err := c.do(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	until := func(what string, cond func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			ok, state := cond()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not reached within 2m; last: %s", what, state)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	tgt := "xds:///be.default:50051"
	until("both versions answer", func() (bool, string) {
		r := do(request{Target: tgt, N: 100})
		return r.failed() == 0 && r.Counts["be-3"] > 0 && r.Counts["be-1"]+r.Counts["be-2"] > 0, fmt.Sprint(r)
	})
	const n = 10000
	r := do(request{Target: tgt, N: n})
	v2 := r.Counts["be-3"]
	be := r.Counts["be-1"] + r.Counts["be-2"]
	t.Logf("grpc-js-xds 90/10: be %d, be-lr (canary) %d of %d, %d failed", be, v2, n, r.failed())
	if r.failed() != 0 || math.Abs(float64(be)/n-0.9) > 0.02 || math.Abs(float64(v2)/n-0.1) > 0.02 {
		t.Fatalf("%v: want 90 %% ± 2 on be, 10 %% ± 2 on be-lr, none failed", r)
	}

	apply := func(rules []gatewayv1.GRPCRouteRule) {
		t.Helper()
		rt, err := gc.GatewayV1().GRPCRoutes("default").Get(e.ctx, "canary", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rt.Spec.Rules = rules
		if _, err = gc.GatewayV1().GRPCRoutes("default").Update(e.ctx, rt, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// 90/10 → 0/100 under load (4 callers in the Node process): no call fails, and the last
	// answer from be comes soon after the API write (the time is logged; the bound is only
	// there to catch a client that never follows).
	before := e.backends["be-1"].Calls()
	type result struct {
		r   reply
		err error
	}
	shifted := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(e.ctx, 3*time.Minute)
		defer cancel()
		r, err := c.do(ctx, request{Target: tgt, N: 200000, Name: "shift", Concurrency: 4, StreakPrefix: "be-3", Streak: 400})
		shifted <- result{r, err}
	}()
	until("Node load running", func() (bool, string) {
		n := e.backends["be-1"].Calls() - before
		return n >= 50, fmt.Sprint(n, " calls on be-1")
	})
	t0 := time.Now()
	apply([]gatewayv1.GRPCRouteRule{{BackendRefs: []gatewayv1.GRPCBackendRef{routeRef("be", 0), routeRef("be-lr", 100)}}})
	res := <-shifted
	if res.err != nil {
		t.Fatal(res.err)
	}
	lastBe := max(res.r.Last["be-1"], res.r.Last["be-2"])
	if res.r.failed() != 0 || lastBe == 0 {
		t.Fatalf("shift: %v (last answers %v): want no failed call, and be answering before the write", res.r, res.r.Last)
	}
	follow := time.UnixMilli(lastBe).Sub(t0)
	total := 0
	for _, k := range res.r.Counts {
		total += k
	}
	t.Logf("grpc-js-xds shift 90/10 → 0/100 under load: API write → last call answered by be %v; %d calls, 0 failed", follow.Round(time.Millisecond), total)
	if follow > 20*time.Second {
		t.Errorf("be answered %v after the write", follow)
	}

	apply([]gatewayv1.GRPCRouteRule{
		{
			Matches:     []gatewayv1.GRPCRouteMatch{{Headers: []gatewayv1.GRPCHeaderMatch{{Name: "x-canary", Value: "yes"}}}},
			BackendRefs: []gatewayv1.GRPCBackendRef{routeRef("be-lr", 1)},
		},
		{BackendRefs: []gatewayv1.GRPCBackendRef{routeRef("be", 1)}},
	})
	until("x-canary: yes on the canary", func() (bool, string) {
		r := do(request{Target: tgt, N: 50, Header: "x-canary", Key: "yes"})
		return r.failed() == 0 && r.Counts["be-3"] == 50, fmt.Sprint(r)
	})
	if r := do(request{Target: tgt, N: 50}); r.failed() != 0 || r.Counts["be-1"]+r.Counts["be-2"] != 50 {
		t.Fatalf("calls without the header: %v, want all 50 on be", r)
	}

	// A method match: SayHelloStream to the canary, the rest to be.
	apply([]gatewayv1.GRPCRouteRule{
		{
			Matches:     []gatewayv1.GRPCRouteMatch{{Method: &gatewayv1.GRPCMethodMatch{Service: ptr.To("echo.EchoServer"), Method: ptr.To("SayHelloStream")}}},
			BackendRefs: []gatewayv1.GRPCBackendRef{routeRef("be-lr", 1)},
		},
		{BackendRefs: []gatewayv1.GRPCBackendRef{routeRef("be", 1)}},
	})
	methodRouting := func() (bool, string) {
		s := do(request{Target: tgt, N: 30, Method: "SayHelloStream"})
		u := do(request{Target: tgt, N: 30})
		ok := s.failed() == 0 && s.Counts["be-3"] == 30 && u.failed() == 0 && u.Counts["be-1"]+u.Counts["be-2"] == 30
		return ok, fmt.Sprint("stream ", s, ", unary ", u)
	}
	until("SayHelloStream on the canary, SayHello on be", methodRouting)

	// An invalid generation (unknown backend) is refused in the status, and the method
	// routing above keeps serving.
	apply([]gatewayv1.GRPCRouteRule{{BackendRefs: []gatewayv1.GRPCBackendRef{routeRef("be-v3", 1)}}})
	until("ResolvedRefs=False BackendNotFound", func() (bool, string) {
		rt, err := gc.GatewayV1().GRPCRoutes("default").Get(e.ctx, "canary", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, p := range rt.Status.Parents {
			if p.ControllerName != grpcroute.ControllerName {
				continue
			}
			c := meta.FindStatusCondition(p.Conditions, string(gatewayv1.RouteConditionResolvedRefs))
			if c != nil && c.Status == metav1.ConditionFalse && c.Reason == string(gatewayv1.RouteReasonBackendNotFound) && c.ObservedGeneration == rt.Generation {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", rt.Status.Parents)
	})
	for range 3 {
		if ok, state := methodRouting(); !ok {
			t.Fatalf("invalid route: last good routing lost: %s", state)
		}
	}
}
