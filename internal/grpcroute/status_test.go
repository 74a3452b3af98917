package grpcroute

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"
)

// TestStatusWriterKeepsOthersAndWritesOnlyChanges (fake clientset: the real API server test
// is internal/xdscmd TestGRPCRouteOnRealAPIServer): another controller's entry survives, our
// entry carries observedGeneration, and an unchanged result writes nothing.
func TestStatusWriterKeepsOthersAndWritesOnlyChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rt := route("canary", nil, canary(90, 10))
	rt.Spec.ParentRefs = append(rt.Spec.ParentRefs, svcParent("be"))
	other := gatewayv1.RouteParentStatus{ParentRef: gatewayv1.ParentReference{Name: "gw"}, ControllerName: "example.com/gateway",
		Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", LastTransitionTime: metav1.Now()}}}
	rt.Status.Parents = []gatewayv1.RouteParentStatus{other}
	cs := fake.NewSimpleClientset(rt)
	w := &statusWriter{client: cs, now: func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }}
	results := map[k8stypes.UID]result{rt.UID: {t: Translate(rt, served)}}
	if err := w.write(ctx, []*gatewayv1.GRPCRoute{rt}, results); err != nil {
		t.Fatal(err)
	}
	got, err := cs.GatewayV1().GRPCRoutes("default").Get(ctx, "canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Status.Parents) != 2 || got.Status.Parents[0].ControllerName != other.ControllerName {
		t.Fatalf("parents %+v: want the other controller's entry kept, then ours", got.Status.Parents)
	}
	ours := got.Status.Parents[1]
	if ours.ControllerName != ControllerName || len(ours.Conditions) != 2 {
		t.Fatalf("our entry %+v", ours)
	}
	for _, c := range ours.Conditions {
		if c.Status != metav1.ConditionTrue || c.ObservedGeneration != rt.Generation {
			t.Fatalf("condition %+v: want True at generation %d", c, rt.Generation)
		}
	}
	writes := func() int {
		n := 0
		for _, a := range cs.Actions() {
			if a.GetVerb() == "update" && a.GetSubresource() == "status" {
				n++
			}
		}
		return n
	}
	before := writes()
	if err := w.write(ctx, []*gatewayv1.GRPCRoute{got}, results); err != nil {
		t.Fatal(err)
	}
	if writes() != before {
		t.Fatal("an unchanged result was written again")
	}
	// A route that no longer attaches to a served Service loses our entry, keeps the other.
	got.Spec.ParentRefs = got.Spec.ParentRefs[:0]
	results[rt.UID] = result{t: Translate(got, served)}
	if err := w.write(ctx, []*gatewayv1.GRPCRoute{got}, results); err != nil {
		t.Fatal(err)
	}
	final, _ := cs.GatewayV1().GRPCRoutes("default").Get(ctx, "canary", metav1.GetOptions{})
	if len(final.Status.Parents) != 1 || final.Status.Parents[0].ControllerName != other.ControllerName {
		t.Fatalf("parents %+v: want only the other controller's entry", final.Status.Parents)
	}
}
