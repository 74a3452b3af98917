package xdsinterop

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
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
// ±2 % is 6.7 σ); then a header match sends x-canary: yes to the canary, the rest to be.
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

	if rt, err = gc.GatewayV1().GRPCRoutes("default").Get(e.ctx, "canary", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	rt.Spec.Rules = []gatewayv1.GRPCRouteRule{
		{
			Matches:     []gatewayv1.GRPCRouteMatch{{Headers: []gatewayv1.GRPCHeaderMatch{{Name: "x-canary", Value: "yes"}}}},
			BackendRefs: []gatewayv1.GRPCBackendRef{routeRef("be-lr", 1)},
		},
		{BackendRefs: []gatewayv1.GRPCBackendRef{routeRef("be", 1)}},
	}
	if _, err = gc.GatewayV1().GRPCRoutes("default").Update(e.ctx, rt, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	until("x-canary: yes on the canary", func() (bool, string) {
		r := do(request{Target: tgt, N: 50, Header: "x-canary", Key: "yes"})
		return r.failed() == 0 && r.Counts["be-3"] == 50, fmt.Sprint(r)
	})
	if r := do(request{Target: tgt, N: 50}); r.failed() != 0 || r.Counts["be-1"]+r.Counts["be-2"] != 50 {
		t.Fatalf("calls without the header: %v, want all 50 on be", r)
	}
}
