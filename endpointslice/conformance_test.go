package endpointslice

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	k8stesting "k8s.io/client-go/testing"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/endpoint/endpointtest"
	"github.com/spread-grpc/spread/internal/kubefake"
	"github.com/spread-grpc/spread/internal/kubetest"
)

// conformanceHarness makes a Harness over Service svc in namespace ns: its slice "a" holds
// 192.0.2.1 at first; Change adds 192.0.2.2 in slice "b"; Empty deletes both. admin writes
// the slices, src reads them. Writes first call watching, if set: a fake clientset (unlike
// an API server) loses a delete made between its list and its watch (package kubefake).
func conformanceHarness(t *testing.T, admin kubernetes.Interface, src *Source, ns, svc string, refused *endpoint.Key, watching func(context.Context, *testing.T)) endpointtest.Harness {
	ctx, cancel := context.WithTimeout(context.Background(), endpointtest.Timeout)
	t.Cleanup(cancel)
	api := admin.DiscoveryV1().EndpointSlices(ns)
	mk := func(name, addr string) *discoveryv1.EndpointSlice {
		sl := slice(svc+"-"+name, svc, grpcPort, ep(addr))
		sl.Namespace = ns
		return sl
	}
	first := mk("a", "192.0.2.1")
	if _, err := api.Create(ctx, first, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	key := endpoint.Key{Namespace: ns, Service: svc, Port: "grpc"}
	return endpointtest.Harness{
		Source:  src,
		Key:     key,
		Initial: Trim([]*discoveryv1.EndpointSlice{first}, "grpc"),
		Change: func(t *testing.T) func(endpoint.Set) bool {
			if watching != nil {
				watching(ctx, t)
			}
			if _, err := api.Create(ctx, mk("b", "192.0.2.2"), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			return func(s endpoint.Set) bool {
				return slices.Equal(s.HostPorts(), []string{"192.0.2.1:8080", "192.0.2.2:8080"})
			}
		},
		Empty: func(t *testing.T) {
			if watching != nil {
				watching(ctx, t)
			}
			for _, name := range []string{"a", "b"} {
				if err := api.Delete(ctx, svc+"-"+name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					t.Fatal(err)
				}
			}
		},
		Refused: refused,
		Close:   src.Close,
	}
}

// TestConformanceFakeClientset runs the endpoint.Source conformance suite over a fake
// clientset, where a list in namespace "secret" is Forbidden.
func TestConformanceFakeClientset(t *testing.T) {
	refused := endpoint.Key{Namespace: "secret", Service: "be", Port: "grpc"}
	endpointtest.RunConformance(t, func(t *testing.T) endpointtest.Harness {
		client := kubefake.NewClientset()
		client.PrependReactor("list", "endpointslices", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetNamespace() != "secret" {
				return false, nil, nil
			}
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "",
				errors.New(`cannot list resource "endpointslices" in namespace "secret"`))
		})
		watching := func(ctx context.Context, t *testing.T) {
			if err := client.WaitWatching(ctx, "endpointslices"); err != nil {
				t.Fatal(err)
			}
		}
		src := New(client, WithLogger(quiet))
		t.Cleanup(src.Close)
		return conformanceHarness(t, client, src, "ns", "be", &refused, watching)
	})
}

// TestConformanceAPIServer runs the endpoint.Source conformance suite against a real
// kube-apiserver, as a user that RBAC lets list and watch endpointslices in namespace
// "conformance" only: the refused key, in "default", gets a real Forbidden.
func TestConformanceAPIServer(t *testing.T) {
	c := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	const ns, user = "conformance", "conformance-reader"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "endpointslice-reader", Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}}},
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "endpointslice-reader", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: "rbac.authorization.k8s.io", Name: user}},
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	reader, err := kubernetes.NewForConfig(c.UserConfig(user))
	if err != nil {
		t.Fatal(err)
	}
	// The authorizer learns of the binding through its own informer: wait until it has.
	for {
		_, err := reader.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{})
		if err == nil {
			break
		}
		if !apierrors.IsForbidden(err) || ctx.Err() != nil {
			t.Fatalf("list as %s: %v", user, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	refused := endpoint.Key{Namespace: "default", Service: "be", Port: "grpc"}
	var n atomic.Int64
	endpointtest.RunConformance(t, func(t *testing.T) endpointtest.Harness {
		src := New(reader, WithLogger(quiet))
		t.Cleanup(src.Close)
		svc := fmt.Sprintf("be-%d", n.Add(1)) // a Service of its own per check
		return conformanceHarness(t, admin, src, ns, svc, &refused, nil)
	})
}
