package grpcroute

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// statusWriter keeps the status.parents entries spread xds owns (ControllerName) up to
// date, leaving other controllers' entries alone. It writes only what changed.
type statusWriter struct {
	client gatewayclient.Interface
	now    func() time.Time // nil: time.Now
}

// desiredParents renders a route's result as its RouteParentStatus entries, keeping the
// transition times of conditions that did not change (prev: the route's current entries).
func desiredParents(r result, gen int64, prev []gatewayv1.RouteParentStatus, now metav1.Time) []gatewayv1.RouteParentStatus {
	var out []gatewayv1.RouteParentStatus
	for _, p := range r.t.Parents {
		var conds []metav1.Condition
		for _, e := range prev {
			if e.ControllerName == ControllerName && reflect.DeepEqual(e.ParentRef, p.Ref) {
				conds = append(conds, e.Conditions...)
			}
		}
		acc := p.Accepted
		if r.conflict != "" && acc.OK {
			acc = Condition{Reason: ReasonConflicted, Message: r.conflict + "; the route is not applied"}
		}
		suffix := ""
		if !acc.OK || !p.ResolvedRefs.OK {
			suffix = "; the Service keeps its last good routing"
		}
		set := func(typ gatewayv1.RouteConditionType, c Condition) {
			s := metav1.ConditionTrue
			msg := c.Message
			if !c.OK {
				s, msg = metav1.ConditionFalse, c.Message+suffix
			}
			meta.SetStatusCondition(&conds, metav1.Condition{
				Type: string(typ), Status: s, Reason: string(c.Reason), Message: msg,
				ObservedGeneration: gen, LastTransitionTime: now,
			})
		}
		set(gatewayv1.RouteConditionAccepted, acc)
		set(gatewayv1.RouteConditionResolvedRefs, p.ResolvedRefs)
		out = append(out, gatewayv1.RouteParentStatus{ParentRef: p.Ref, ControllerName: ControllerName, Conditions: conds})
	}
	return out
}

// write brings every route's status in line with its result.
func (w *statusWriter) write(ctx context.Context, routes []*gatewayv1.GRPCRoute, results map[types.UID]result) error {
	nowf := w.now
	if nowf == nil {
		nowf = time.Now
	}
	now := metav1.NewTime(nowf().Truncate(time.Second))
	var errs []error
	for _, rt := range routes {
		var ours, others []gatewayv1.RouteParentStatus
		for _, p := range rt.Status.Parents {
			if p.ControllerName == ControllerName {
				ours = append(ours, p)
			} else {
				others = append(others, p)
			}
		}
		want := desiredParents(results[rt.UID], rt.Generation, ours, now)
		if len(want) == 0 && len(ours) == 0 || reflect.DeepEqual(want, ours) {
			continue
		}
		cp := rt.DeepCopy() // never modify the informer's copy
		cp.Status.Parents = append(others, want...)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := w.client.GatewayV1().GRPCRoutes(rt.Namespace).UpdateStatus(wctx, cp, metav1.UpdateOptions{FieldManager: "spread-xds"})
		cancel()
		if err != nil {
			// A conflict means the cache is behind: the informer's update triggers another round.
			errs = append(errs, fmt.Errorf("update status of %s/%s: %w", rt.Namespace, rt.Name, err))
		}
	}
	return errors.Join(errs...)
}
