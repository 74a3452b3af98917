package xdscmd

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/spread-grpc/spread/internal/kubetest"
	"github.com/spread-grpc/spread/internal/xds"
)

// applyFile creates every object of a multi-document YAML file (the kinds deploy/xds uses).
func applyFile(ctx context.Context, t *testing.T, cs kubernetes.Interface, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range kubetest.DecodeObjects(t, b) {
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Service:
			_, err = cs.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.Deployment:
			_, err = cs.AppsV1().Deployments(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = cs.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *policyv1.PodDisruptionBudget:
			_, err = cs.PolicyV1().PodDisruptionBudgets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("%s: unexpected kind %T", path, obj)
		}
		if err != nil {
			t.Fatalf("%s: create %T: %v", path, obj, err)
		}
	}
}

// readyWithin runs a control plane as identity rc and reports whether it completes its first
// full sync within d.
func readyWithin(t *testing.T, rc *rest.Config, d time.Duration) bool {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	eps, svcs, closeSrc, err := KubeSourcesForConfig(rc, DefaultConfig(), log, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSrc()
	srv, err := xds.New(eps, svcs, xds.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-srv.Ready():
		return true
	case <-time.After(d):
		return false
	}
}

// TestDeployManifestAndRBAC: deploy/xds/xds.yaml is accepted by a real API server, and its
// ClusterRole is exactly enough: the control plane, as that ServiceAccount, syncs; as an
// identity without the binding, it does not.
func TestDeployManifestAndRBAC(t *testing.T) {
	kc := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs, err := kubernetes.NewForConfig(kc.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "spread-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	applyFile(ctx, t, cs, "../../deploy/xds/xds.yaml")
	// Something to serve, so that the first sync needs both Services and EndpointSlices.
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "be", Namespace: "default", Annotations: map[string]string{xds.AnnotationXDS: "true"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 50051}}},
	}
	if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !readyWithin(t, kc.UserConfig("system:serviceaccount:spread-system:spread-xds", "system:serviceaccounts", "system:serviceaccounts:spread-system"), 30*time.Second) {
		t.Fatal("control plane as spread-xds ServiceAccount: no first sync (RBAC not enough?)")
	}
	if readyWithin(t, kc.UserConfig("system:serviceaccount:spread-system:nobody", "system:serviceaccounts"), 2*time.Second) {
		t.Fatal("control plane without the binding synced: the test proves nothing")
	}
}

// TestBadAnnotationEvent: a malformed annotation puts one Warning Event on the Service (what
// `kubectl describe service` lists), recorded with the manifest's ServiceAccount identity
// (its ClusterRole lets it create and patch Events); the same error on a second port
// counts on that Event instead of adding one; a fixed and re-broken Service reports again.
func TestBadAnnotationEvent(t *testing.T) {
	kc := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cs, err := kubernetes.NewForConfig(kc.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "spread-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	applyFile(ctx, t, cs, "../../deploy/xds/xds.yaml")

	rc := kc.UserConfig("system:serviceaccount:spread-system:spread-xds", "system:serviceaccounts", "system:serviceaccounts:spread-system")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	eps, svcs, closeSrc, err := KubeSourcesForConfig(rc, DefaultConfig(), log, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSrc()
	events, err := NewServiceEventsForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	srv, err := xds.New(eps, svcs, xds.WithLogger(log), xds.WithConfigErrorHandler(events.Report))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	defer func() { stop(); <-done }()

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "be", Namespace: "default", Annotations: map[string]string{xds.AnnotationLBPolicy: "round_robbin"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 50051}, {Name: "grpc-alt", Port: 50052}}},
	}
	svc, err = cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	warnings := func() []corev1.Event {
		l, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=Service,involvedObject.name=be,involvedObject.uid=" + string(svc.UID)})
		if err != nil {
			t.Fatal(err)
		}
		var out []corev1.Event
		for _, e := range l.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == EventReason {
				out = append(out, e)
			}
		}
		return out
	}
	until := func(what string, cond func([]corev1.Event) bool) []corev1.Event {
		t.Helper()
		for {
			evs := warnings()
			if cond(evs) {
				return evs
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: not seen; events %+v", what, evs)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	evs := until("one Warning Event counted twice (two ports, one error)", func(evs []corev1.Event) bool {
		return len(evs) == 1 && evs[0].Count == 2 || len(evs) > 1
	})
	if len(evs) != 1 {
		t.Fatalf("%d Warning Events for one error, want 1 (deduplicated): %+v", len(evs), evs)
	}
	host, _ := os.Hostname()
	if e := evs[0]; !strings.Contains(e.Message, "round_robbin") || e.Source.Component != "spread-xds" || e.Source.Host != host {
		t.Errorf("event message %q, source %+v: want the bad value, component spread-xds, host %q", e.Message, e.Source, host)
	}

	// Fixed, then broken the same way: reported again (on the same Event, counting up).
	for _, policy := range []string{"round_robin", "round_robbin"} {
		cur, err := cs.CoreV1().Services("default").Get(ctx, "be", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Annotations[xds.AnnotationLBPolicy] = policy
		if _, err := cs.CoreV1().Services("default").Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if policy == "round_robin" {
			deadline := time.Now().Add(30 * time.Second)
			for {
				d, err := srv.Dump()
				if err != nil {
					t.Fatal(err)
				}
				if len(d.Services) > 0 && d.Services[0].ConfigError == "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("fixed annotation not taken")
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	until("the re-broken Service reported again", func(evs []corev1.Event) bool { return len(evs) == 1 && evs[0].Count >= 4 })

	// A second replica records its own Event (not deduplicated across replicas: see
	// NewServiceEvents), naming itself.
	eps2, svcs2, closeSrc2, err := KubeSourcesForConfig(rc, DefaultConfig(), log, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSrc2()
	cs2, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	events2 := newServiceEvents(cs2, "replica-b")
	defer events2.Close()
	srv2, err := xds.New(eps2, svcs2, xds.WithLogger(log), xds.WithConfigErrorHandler(events2.Report))
	if err != nil {
		t.Fatal(err)
	}
	runCtx2, stop2 := context.WithCancel(ctx)
	done2 := make(chan error, 1)
	go func() { done2 <- srv2.Run(runCtx2) }()
	defer func() { stop2(); <-done2 }()
	evs = until("a second replica's Event", func(evs []corev1.Event) bool { return len(evs) >= 2 })
	hosts := map[string]bool{}
	for _, e := range evs {
		hosts[e.Source.Host] = true
	}
	if len(evs) != 2 || !hosts[host] || !hosts["replica-b"] {
		t.Fatalf("events after a second replica: %d from hosts %v, want 2 from %q and replica-b", len(evs), hosts, host)
	}
}
