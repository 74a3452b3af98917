package kubernetes

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/echotest"
	"github.com/spread-grpc/spread/internal/kubetest"
)

// TestKubernetes runs the resolver against a real kube-apiserver (and, in one subtest,
// kube-controller-manager) on loopback. The subtests share one control plane, each in its own
// namespace, and run one after the other.
func TestKubernetes(t *testing.T) {
	c := kubetest.Start(t)
	admin, err := k8s.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("SpreadAddRemoveScaleToZero", func(t *testing.T) { testSpread(t, c, admin) })
	t.Run("ThreeHundredEndpointsInThreeSlices", func(t *testing.T) { testManySlices(t, c, admin) })
	t.Run("TerminatingGetsNoNewCalls", func(t *testing.T) { testTerminating(t, c, admin) })
	t.Run("RBAC", func(t *testing.T) { testRBAC(t, c, admin) })
	t.Run("OneWatchPerServicePerBuilder", func(t *testing.T) { testWatchSharing(t, c, admin) })
	t.Run("ControllerManagerE2E", func(t *testing.T) { testControllerManager(t, c, admin) })
	// Last: it restarts the API server.
	t.Run("APIServerRestart", func(t *testing.T) { testAPIServerRestart(t, c, admin) })
}

func kubeCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func testSpread(t *testing.T, c *kubetest.Cluster, admin k8s.Interface) {
	ctx := kubeCtx(t, 2*time.Minute)
	f := newService(ctx, t, c, admin, "spread")
	f.apply(ctx, "be-a", f.eps(seq(1, 5)...))
	client := f.dial(newBuilder(t, WithRESTConfig(c.RESTConfig())))

	// 5 pods: exactly even.
	awaitServing(ctx, t, client, seq(1, 5)...)
	expectEven(t, spread(ctx, t, client, 500), 100, seq(1, 5)...)

	// Add 2: they get calls, and then an exact share.
	f.apply(ctx, "be-a", f.eps(seq(1, 7)...))
	awaitServing(ctx, t, client, 6, 7)
	expectEven(t, spread(ctx, t, client, 700), 100, seq(1, 7)...)

	// Remove one while it has a call in flight: the call finishes, no new call reaches it.
	stream, err := client.SayHelloStream(ctx, &echo.EchoRequest{Name: "long", Count: 100, IntervalMs: 50})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	victim := -1
	for i := 1; i <= 7; i++ {
		if podName(i) == first.GetPod() {
			victim = i
		}
	}
	var rest []int
	for i := 1; i <= 7; i++ {
		if i != victim {
			rest = append(rest, i)
		}
	}
	f.apply(ctx, "be-a", f.eps(rest...))
	// The removal has landed once a full round of calls misses the victim.
	vb := f.backends[victim]
	for {
		before := vb.Calls()
		spread(ctx, t, client, 12)
		if vb.Calls() == before {
			break
		}
	}
	if vb.Active() != 1 {
		t.Fatalf("the long call on %s is no longer in flight at removal (active %d): the test proves nothing", podName(victim), vb.Active())
	}
	before := vb.Calls()
	expectEven(t, spread(ctx, t, client, 600), 100, rest...)
	if n := vb.Calls() - before; n != 0 {
		t.Errorf("removed pod %s got %d new calls", podName(victim), n)
	}
	msgs := 1
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("in-flight call on the removed pod failed after %d messages: %v", msgs, err)
		}
		msgs++
	}
	if msgs != 100 {
		t.Errorf("in-flight call got %d of 100 messages", msgs)
	}

	// Scale to zero: calls fail fast with UNAVAILABLE, never reach a stale pod.
	f.apply(ctx, "be-a", nil)
	for {
		pod, err := call(ctx, client)
		if err == nil {
			if ctx.Err() != nil {
				t.Fatalf("calls still reach %s after scale to zero", pod)
			}
			continue
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("call after scale to zero: %v, want UNAVAILABLE", err)
		}
		break
	}
	total := func() (n int64) {
		for _, c := range f.counts() {
			n += c
		}
		return n
	}
	calls := total()
	for range 20 {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start := time.Now()
		_, err := call(callCtx, client)
		cancel()
		// At once: the code, not the clock, tells a fail-fast from a wait for the 5 s
		// deadline; the bound only keeps well under the deadline on a busy machine.
		if status.Code(err) != codes.Unavailable || time.Since(start) > 2500*time.Millisecond {
			t.Fatalf("call with no endpoints: %v after %v, want UNAVAILABLE at once", err, time.Since(start))
		}
	}
	if n := total() - calls; n != 0 {
		t.Errorf("%d calls reached a backend with the Service at zero", n)
	}

	// Endpoints return: calls recover.
	f.apply(ctx, "be-a", f.eps(1, 2))
	awaitServing(ctx, t, client, 1, 2)
	expectEven(t, spread(ctx, t, client, 100), 50, 1, 2)
}

func testManySlices(t *testing.T, c *kubetest.Cluster, admin k8s.Interface) {
	ctx := kubeCtx(t, 3*time.Minute)
	f := newService(ctx, t, c, admin, "big")
	// 300 pods, 100 per slice; 3 real backends behind them (fake IP i → backend i%3).
	real := []*echotest.Backend{echotest.Start(t, "real-0", ""), echotest.Start(t, "real-1", ""), echotest.Start(t, "real-2", "")}
	for i := 1; i <= 300; i++ {
		f.dialer.Map(echotest.FakeIP(i), real[i%3].Addr)
	}
	slice := func(k int, notReady int) []discoveryv1.Endpoint {
		var out []discoveryv1.Endpoint
		for i := k*100 + 1; i <= k*100+100; i++ {
			e := ep(i, ready)
			if i == notReady {
				e.Conditions.Ready = ptr.To(false)
			}
			out = append(out, e)
		}
		return out
	}
	for k := range 3 {
		f.apply(ctx, "be-"+string(rune('a'+k)), slice(k, 0))
	}

	b := newBuilder(t, WithRESTConfig(c.RESTConfig()))
	// The resolver's own view: every state after the first full one holds all the others.
	cc := newRecordingCC()
	r, err := b.Build(target(t, f.target()), cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The first state may be a partial view only if slices were still being written; wait
	// for the full one.
	for n := 0; n != 300; n = len(cc.nextState(ctx, t).Addresses) {
	}

	client := f.dial(b)
	for f.dialer.Dialed() < 300 {
		if _, err := call(ctx, client, grpc.WaitForReady(true)); err != nil {
			t.Fatalf("call: %v (dialled %d of 300)", err, f.dialer.Dialed())
		}
	}

	// Update the middle slice ten times (one endpoint flips not ready, then back): the
	// other 200 are always there, and so is the rest of this slice.
	for round := range 10 {
		flip := 101 + round
		f.apply(ctx, "be-b", slice(1, flip))
		if n := len(cc.nextState(ctx, t).Addresses); n != 299 {
			t.Fatalf("round %d: state with %d addresses after one endpoint of slice be-b became not ready, want 299", round, n)
		}
		f.apply(ctx, "be-b", slice(1, 0))
		if n := len(cc.nextState(ctx, t).Addresses); n != 300 {
			t.Fatalf("round %d: state with %d addresses after it came back, want 300", round, n)
		}
		if _, err := call(ctx, client); err != nil {
			t.Fatalf("call during slice updates: %v", err)
		}
	}
}

func testTerminating(t *testing.T, c *kubetest.Cluster, admin k8s.Interface) {
	ctx := kubeCtx(t, 2*time.Minute)
	f := newService(ctx, t, c, admin, "term")
	f.pod(4)
	f.pod(5)
	f.apply(ctx, "be-a", append(f.eps(1, 2, 3), ep(4, draining), ep(5, draining)))
	client := f.dial(newBuilder(t, WithKubeconfig(c.Kubeconfig()))) // the kubeconfig path works too

	awaitServing(ctx, t, client, 1, 2, 3)
	expectEven(t, spread(ctx, t, client, 300), 100, 1, 2, 3)

	// With no ready endpoint left, the serving (terminating) ones take the calls.
	f.apply(ctx, "be-a", []discoveryv1.Endpoint{ep(4, draining), ep(5, draining)})
	awaitServing(ctx, t, client, 4, 5)
	expectEven(t, spread(ctx, t, client, 100), 50, 4, 5)
}

// rbacObjects decodes deploy/rbac/resolver-role.yaml.
func rbacObjects(t *testing.T) (*corev1.ServiceAccount, *rbacv1.Role, *rbacv1.RoleBinding) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "deploy", "rbac", "resolver-role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var (
		sa   *corev1.ServiceAccount
		role *rbacv1.Role
		rb   *rbacv1.RoleBinding
	)
	for _, obj := range kubetest.DecodeObjects(t, data) {
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			sa = o
		case *rbacv1.Role:
			role = o
		case *rbacv1.RoleBinding:
			rb = o
		default:
			t.Fatalf("unexpected object %T in the RBAC file", obj)
		}
	}
	if sa == nil || role == nil || rb == nil {
		t.Fatal("the RBAC file must hold a ServiceAccount, a Role and a RoleBinding")
	}
	return sa, role, rb
}

func testRBAC(t *testing.T, c *kubetest.Cluster, admin k8s.Interface) {
	ctx := kubeCtx(t, 2*time.Minute)
	f := newService(ctx, t, c, admin, "rbac")
	f.apply(ctx, "be-a", f.eps(1, 2))
	sa, role, rb := rbacObjects(t)

	// Exactly list+watch on endpointslices, nothing more.
	want := []rbacv1.PolicyRule{{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}}}
	if len(role.Rules) != 1 || !slices.Equal(role.Rules[0].APIGroups, want[0].APIGroups) ||
		!slices.Equal(role.Rules[0].Resources, want[0].Resources) || !slices.Equal(role.Rules[0].Verbs, want[0].Verbs) ||
		len(role.Rules[0].ResourceNames) != 0 {
		t.Fatalf("role rules %+v, want exactly %+v", role.Rules, want)
	}

	// The client runs as the ServiceAccount, as a pod with it would.
	user := "system:serviceaccount:" + f.ns + ":" + sa.Name
	cfg := c.UserConfig(user, "system:serviceaccounts", "system:serviceaccounts:"+f.ns)
	b := newBuilder(t, WithRESTConfig(cfg))
	b.backoff = func(int) time.Duration { return 200 * time.Millisecond }

	// Without the binding: a clear error, fast, on the resolver and on calls.
	start := time.Now()
	cc := newRecordingCC()
	r, err := b.Build(target(t, f.target()), cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-cc.errs:
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "kubernetes resolver") || !strings.Contains(err.Error(), "endpointslices") {
			t.Fatalf("reported %v, want a Forbidden error about endpointslices", err)
		}
		t.Logf("without the binding, after %v: %v", time.Since(start), err)
	case s := <-cc.states:
		t.Fatalf("state %+v pushed without permission", s)
	case <-ctx.Done():
		t.Fatal("no error reported without permission")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the permission error took %v", d)
	}
	r.Close()
	client := f.dial(b)
	callCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	_, err = call(callCtx, client)
	cancel()
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("call without permission: %v, want UNAVAILABLE with the Forbidden reason", err)
	}

	// Apply the file (namespaced to the test): the resolver retries and works.
	sa.Namespace, role.Namespace, rb.Namespace = f.ns, f.ns, f.ns
	for i := range rb.Subjects {
		rb.Subjects[i].Namespace = f.ns
	}
	if _, err := admin.CoreV1().ServiceAccounts(f.ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().Roles(f.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(f.ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	awaitServing(ctx, t, client, 1, 2)
	f.apply(ctx, "be-a", f.eps(1, 2, 3))
	awaitServing(ctx, t, client, 3)

	// The identity has nothing beyond list+watch (no get, no other namespace).
	restricted, err := k8s.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restricted.DiscoveryV1().EndpointSlices(f.ns).Get(ctx, "be-a", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("get with the resolver role: %v, want Forbidden", err)
	}
	if _, err := restricted.DiscoveryV1().EndpointSlices("spread").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list in another namespace: %v, want Forbidden", err)
	}
}

func testAPIServerRestart(t *testing.T, c *kubetest.Cluster, admin k8s.Interface) {
	ctx := kubeCtx(t, 3*time.Minute)
	f := newService(ctx, t, c, admin, "restart")
	f.apply(ctx, "be-a", f.eps(1, 2, 3))
	reg := prometheus.NewPedanticRegistry()
	client := f.dial(newBuilder(t, WithRESTConfig(c.RESTConfig()), WithRegisterer(reg)))
	awaitServing(ctx, t, client, 1, 2, 3)

	// Calls flow all along, from one goroutine.
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := call(ctx, client); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			} else {
				ok.Add(1)
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	waitCalls := func(n int64) {
		t.Helper()
		target := ok.Load() + n
		for ok.Load() < target {
			select {
			case <-ctx.Done():
				t.Fatalf("calls stalled at %d ok, %d failed", ok.Load(), failed.Load())
			case <-time.After(5 * time.Millisecond):
			}
		}
	}

	waitCalls(100)
	if err := c.StopAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	waitCalls(500) // calls go on with the API server down
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	waitCalls(100)

	// The watch resumes by itself: a change made after the restart is seen.
	f.apply(ctx, "be-a", f.eps(1, 2, 3, 4))
	for f.backends[4].Calls() == 0 {
		waitCalls(10)
	}
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d calls failed across the API server restart; first: %v", n, n+ok.Load(), firstErr.Load())
	}
	restarts := testutil.ToFloat64(metricVec(t, reg, "spread_endpointslice_watch_restarts_total"))
	if restarts < 1 {
		t.Errorf("spread_endpointslice_watch_restarts_total = %v, want ≥ 1 after a restart", restarts)
	}
	t.Logf("%d calls, 0 failed; watch restarts %v", ok.Load(), restarts)
}

// metricVec returns the sum of a counter family in reg, as a collector ToFloat64 can read.
func metricVec(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "sum"})
	g.Set(sum)
	return g
}

func testControllerManager(t *testing.T, c *kubetest.Cluster, admin k8s.Interface) {
	ctx := kubeCtx(t, 4*time.Minute)
	const ns = "e2e"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, zone := range []string{"zone-a", "zone-b"} {
		if _, err := c.CreateNode(ctx, "node-"+string(rune('a'+i)), zone); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	c.StartControllerManager(t)

	labels := map[string]string{"app": "be"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "be", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](30),
					Containers: []corev1.Container{{
						Name: "be", Image: "spread/echo",
						Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: grpcPortNumber}},
					}},
				},
			},
		},
	}
	if _, err := admin.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "be", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "grpc", Port: 80, TargetPort: intstr.FromString("grpc")}},
		},
	}
	if _, err := admin.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Each pod the harness marks ready gets a real backend named after it.
	dialer := echotest.NewDialer()
	backends := map[string]*echotest.Backend{}
	readyPods := func(want int) []string {
		t.Helper()
		for {
			pods, err := c.MarkPodsReady(ctx, ns, "app=be", nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(pods) == want {
				var names []string
				for _, p := range pods {
					if backends[p.Name] == nil {
						backends[p.Name] = echotest.Start(t, p.Name, "")
						dialer.Map(p.Status.PodIP, backends[p.Name].Addr)
					}
					names = append(names, p.Name)
				}
				return names
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%d ready pods, want %d", len(pods), want)
			case <-time.After(20 * time.Millisecond): // poll interval
			}
		}
	}
	b := newBuilder(t, WithRESTConfig(c.RESTConfig()))
	conn, err := grpc.NewClient("kubernetes:///be."+ns+":grpc", grpc.WithResolvers(b), dialer.Option(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := echo.NewEchoServerClient(conn)

	// servedBy waits until calls reach exactly the pods in want (and no other) in a full
	// round of 10×len(want) calls.
	servedBy := func(want []string) {
		t.Helper()
		for {
			got := map[string]int{}
			for range 10 * len(want) {
				pod, err := call(ctx, client, grpc.WaitForReady(true))
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				got[pod]++
			}
			match := len(got) == len(want)
			for _, p := range want {
				if got[p] != 10 {
					match = false
				}
			}
			if match {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("calls went to %v, want exactly %v", got, want)
			}
		}
	}

	servedBy(readyPods(3))
	scale := func(n int32) {
		t.Helper()
		// The deployment controller writes the Deployment too: retry on conflict.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			s, err := admin.AppsV1().Deployments(ns).GetScale(ctx, "be", metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Spec.Replicas = n
			_, err = admin.AppsV1().Deployments(ns).UpdateScale(ctx, "be", s, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	scale(5)
	servedBy(readyPods(5))
	scale(2)
	// Deleted pods stay terminating (no kubelet): the controller marks them
	// ready:false serving:true terminating:true, and they must get no new calls.
	servedBy(readyPods(2))
	if _, err := c.FinishTerminatingPods(ctx, ns, "app=be"); err != nil {
		t.Fatal(err)
	}
	servedBy(readyPods(2))
}

func testWatchSharing(t *testing.T, c *kubetest.Cluster, admin k8s.Interface) {
	ctx := kubeCtx(t, 2*time.Minute)
	f := newService(ctx, t, c, admin, "shared")
	f.apply(ctx, "be-a", f.eps(1, 2))
	// awaitWatchers polls the API server's count of open EndpointSlice watches.
	awaitWatchers := func(want float64) {
		t.Helper()
		for {
			got := endpointSliceWatchers(ctx, t, admin)
			if got == want {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%v EndpointSlice watches open, want %v", got, want)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	base := endpointSliceWatchers(ctx, t, admin)
	b := newBuilder(t, WithRESTConfig(c.RESTConfig()))
	var conns []*grpc.ClientConn
	for i, target := range []string{
		f.target(), f.target(),
		"kubernetes:///be.shared:50051",
		"kubernetes://shared/be:grpc",
	} {
		conn, err := grpc.NewClient(target, grpc.WithResolvers(b), f.dialer.Option(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		awaitServing(ctx, t, echo.NewEchoServerClient(conn), 1, 2)
		if got := endpointSliceWatchers(ctx, t, admin); got != base+1 {
			t.Fatalf("%d connections to one Service through one Builder: %v watches, want 1", i+1, got-base)
		}
	}
	// The watch ends with the last connection.
	for _, conn := range conns {
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
	}
	awaitWatchers(base)
}
