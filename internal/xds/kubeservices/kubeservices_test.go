package kubeservices

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/spread-grpc/spread/endpoint/endpointtest"
	"github.com/spread-grpc/spread/internal/xds"
)

func svc(name string, ann map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "prod", Annotations: ann}, Spec: corev1.ServiceSpec{Ports: ports}}
}

func TestAnnounce(t *testing.T) {
	opted := map[string]string{xds.AnnotationLBPolicy: "ring_hash", xds.AnnotationHashHeader: "x-user", "other.io/x": "y"}
	svcs := []*corev1.Service{
		svc("named", opted, corev1.ServicePort{Name: "grpc", Port: 50051}, corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}),
		svc("unnamed", map[string]string{xds.AnnotationXDS: "true"}, corev1.ServicePort{Port: 8080}),
		svc("plain", nil, corev1.ServicePort{Port: 80}),
	}
	got := New(nil).announce(svcs)
	if len(got) != 2 {
		t.Fatalf("announced %+v, want named:grpc and unnamed:8080", got)
	}
	if k := got[0].Key.String(); k != "named.prod:grpc" || len(got[0].Aliases) != 1 || got[0].Aliases[0] != "50051" {
		t.Errorf("named port: %+v", got[0])
	}
	if _, ok := got[0].Annotations["other.io/x"]; ok || got[0].Annotations[xds.AnnotationHashHeader] != "x-user" {
		t.Errorf("annotations passed on: %v, want only spread.dev/ ones", got[0].Annotations)
	}
	if k := got[1].Key.String(); k != "unnamed.prod:8080" || len(got[1].Aliases) != 0 {
		t.Errorf("unnamed port: %+v", got[1])
	}
	if all := New(nil, WithAllServices()).announce(svcs); len(all) != 3 {
		t.Errorf("WithAllServices announced %d ports, want 3", len(all))
	}
}

func TestWatchServicesFollowsChanges(t *testing.T) {
	// A bound on the waits below, not a speed: the informer's first sync took over 10 s under
	// make test-stress on a machine loaded by other work as well.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := fake.NewClientset(svc("a", map[string]string{xds.AnnotationXDS: "true"}, corev1.ServicePort{Name: "grpc", Port: 1}))
	got := make(chan []xds.Service, 10)
	wctx, stop := context.WithCancel(ctx)
	wait, err := New(cs).WatchServices(wctx, func(l []xds.Service) { got <- l })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stop(); wait() }()
	next := func() []xds.Service {
		select {
		case l := <-got:
			return l
		case <-ctx.Done():
			t.Fatal("no list delivered")
			return nil
		}
	}
	if l := next(); len(l) != 1 || l[0].Key.Service != "a" {
		t.Fatalf("first list %+v", l)
	}
	if _, err := cs.CoreV1().Services("prod").Create(ctx, svc("b", map[string]string{xds.AnnotationLBPolicy: "pick_first"}, corev1.ServicePort{Port: 2}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if l := next(); len(l) != 2 {
		t.Fatalf("after adding b: %+v", l)
	}
	if err := cs.CoreV1().Services("prod").Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if l := next(); len(l) != 1 || l[0].Key.Service != "b" {
		t.Fatalf("after deleting a: %+v", l)
	}
}

// A Services list the RBAC forbids is an error from WatchServices, as for the EndpointSlice
// source, instead of a wait for a sync that never comes.
func TestWatchServicesForbiddenFailsFast(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := fake.NewClientset()
	client.PrependReactor("list", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "",
			errors.New(`User "system:serviceaccount:ns:nobody" cannot list resource "services"`))
	})
	wait, err := New(client, WithLogger(slog.New(slog.DiscardHandler))).WatchServices(ctx, func([]xds.Service) {
		t.Error("fn called although the list is forbidden")
	})
	if err == nil {
		cancel()
		wait()
		t.Fatal("WatchServices succeeded without permission")
	}
	if !apierrors.IsForbidden(err) || wait != nil {
		t.Errorf("WatchServices = wait %v, %v; want no wait and a wrapped Forbidden", wait != nil, err)
	}
}

// A Service whose only spread.dev/ annotation is a misspelled opt-in is announced, so that
// ParseServiceConfig sees it and names the typo, instead of the Service being left out in
// silence. Annotations of other components under spread.dev/ still do not opt in.
func TestNearMissOptsIn(t *testing.T) {
	for _, k := range []string{"spread.dev/lbpolicy", "spread.dev/LB_Policy", "spread.dev/lb-polcy"} {
		got := New(nil).announce([]*corev1.Service{svc("typo", map[string]string{k: "ring_hash"}, corev1.ServicePort{Port: 80})})
		if len(got) != 1 {
			t.Errorf("%s: announced %+v, want the Service so its annotation is checked", k, got)
			continue
		}
		_, err := xds.ParseServiceConfig(got[0].Annotations)
		ce, ok := errors.AsType[*xds.ConfigError](err)
		if !ok || ce.Reason != xds.ReasonUnknownAnnotation || ce.Annotation != k {
			t.Errorf("%s: ParseServiceConfig = %v, want an unknown-annotation error naming it", k, err)
		}
	}
	if got := New(nil).announce([]*corev1.Service{svc("other", map[string]string{"spread.dev/team": "payments"}, corev1.ServicePort{Port: 80})}); len(got) != 0 {
		t.Errorf("a spread.dev/ annotation that is not an xDS one opted in: %+v", got)
	}
}

// The same through the control plane: the Services informer (fake clientset) feeds a real
// xds.Server, whose config error handler is told about the typo.
func TestNearMissReachesTheConfigErrorHandler(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs := fake.NewClientset(svc("typo", map[string]string{"spread.dev/lbpolicy": "ring_hash"}, corev1.ServicePort{Name: "grpc", Port: 50051}))
	errc := make(chan error, 10)
	srv, err := xds.New(&endpointtest.Fake{}, New(cs), xds.WithLogger(slog.New(slog.DiscardHandler)), xds.WithConfigErrorHandler(func(s xds.Service, err error) {
		if s.Key.Service == "typo" {
			errc <- err
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx) }()
	defer func() { stop(); <-done }()
	select {
	case err := <-errc:
		ce, ok := errors.AsType[*xds.ConfigError](err)
		if !ok || ce.Annotation != "spread.dev/lbpolicy" || ce.Reason != xds.ReasonUnknownAnnotation {
			t.Errorf("config error %v, want unknown annotation spread.dev/lbpolicy", err)
		}
	case <-ctx.Done():
		t.Fatal("the misspelled Service never reached ParseServiceConfig")
	}
}
