package xdscmd

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/spread-grpc/spread/internal/kubetest"
)

const xdsSA = "system:serviceaccount:spread-system:spread-xds"

var xdsSAGroups = []string{"system:serviceaccounts", "system:serviceaccounts:spread-system"}

// TestGRPCRouteAsServiceAccount: `spread xds` running with the spread-xds ServiceAccount's
// own identity and only the RBAC of deploy/xds/xds.yaml reads GRPCRoutes (routing follows
// them) and writes their status, and the real authorizer grants that identity nothing
// more on routes (no create/update/patch/delete of routes, no patch of status, no other
// Gateway API kinds) nor on anything else it does not need.
func TestGRPCRouteAsServiceAccount(t *testing.T) {
	var admin kubernetes.Interface
	e := startRouteEnv(t, func(kc *kubetest.Cluster) *rest.Config {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cs, err := kubernetes.NewForConfig(kc.RESTConfig())
		if err != nil {
			t.Fatal(err)
		}
		admin = cs
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "spread-system"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		applyFile(ctx, t, cs, "../../deploy/xds/xds.yaml")
		return kc.UserConfig(xdsSA, xdsSAGroups...)
	})

	// Reads routes (routing follows) and updates their status, as the ServiceAccount.
	e.apply(t, "canary", canaryRules(50, 50))
	e.waitStatus(t, "canary", gatewayv1.RouteConditionAccepted, metav1.ConditionTrue, gatewayv1.RouteReasonAccepted)
	e.waitStatus(t, "canary", gatewayv1.RouteConditionResolvedRefs, metav1.ConditionTrue, gatewayv1.RouteReasonResolvedRefs)
	e.until(t, "both versions answer", func() (bool, string) {
		be, v2, pods, err := e.calls(50)
		return err == nil && be > 0 && v2 > 0, fmt.Sprint(pods, err)
	})
	e.apply(t, "canary", []gatewayv1.GRPCRouteRule{{BackendRefs: []gatewayv1.GRPCBackendRef{ref("be-v3", 1)}}})
	e.waitStatus(t, "canary", gatewayv1.RouteConditionResolvedRefs, metav1.ConditionFalse, gatewayv1.RouteReasonBackendNotFound)

	// Least privilege, asked of the real authorizer (the same answers as `kubectl auth can-i --as`).
	const gw = "gateway.networking.k8s.io"
	for _, a := range []struct {
		verb, group, resource, ns string
		allowed                   bool
	}{
		{"list", gw, "grpcroutes", "default", true},
		{"watch", gw, "grpcroutes", "", true},
		{"update", gw, "grpcroutes/status", "default", true},
		{"get", gw, "grpcroutes", "default", false},
		{"create", gw, "grpcroutes", "default", false},
		{"update", gw, "grpcroutes", "default", false},
		{"patch", gw, "grpcroutes", "default", false},
		{"delete", gw, "grpcroutes", "default", false},
		{"patch", gw, "grpcroutes/status", "default", false},
		{"list", gw, "httproutes", "default", false},
		{"list", gw, "gateways", "default", false},
		{"update", gw, "gateways/status", "default", false},
		{"list", "", "services", "", true},
		{"update", "", "services", "default", false},
		{"update", "", "services/status", "default", false},
		{"get", "", "secrets", "default", false},
		{"list", "", "pods", "default", false},
		{"create", "discovery.k8s.io", "endpointslices", "default", false},
	} {
		res, sub, _ := strings.Cut(a.resource, "/")
		r, err := admin.AuthorizationV1().SubjectAccessReviews().Create(e.ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: xdsSA, Groups: append(xdsSAGroups, "system:authenticated"),
			ResourceAttributes: &authzv1.ResourceAttributes{Namespace: a.ns, Verb: a.verb, Group: a.group, Resource: res, Subresource: sub},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status.Allowed != a.allowed {
			t.Errorf("spread-xds %s %s.%s in %q: allowed=%v, want %v", a.verb, a.resource, a.group, a.ns, r.Status.Allowed, a.allowed)
		}
	}
}
