package kubernetes

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/echotest"
	"github.com/spread-grpc/spread/internal/kubetest"
)

// testLogger shows the resolver's warnings in verbose test output.
func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return quiet
}

// svcFixture is one Service (without selector: the test writes its EndpointSlices) in a
// namespace of its own, with echo backends standing for its pods.
type svcFixture struct {
	t        testing.TB
	c        *kubetest.Cluster
	admin    k8s.Interface
	ns, name string
	dialer   *echotest.Dialer
	backends map[int]*echotest.Backend
}

const grpcPortNumber = 50051

func newService(ctx context.Context, t testing.TB, c *kubetest.Cluster, admin k8s.Interface, ns string) *svcFixture {
	t.Helper()
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "be", Namespace: ns},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Ports:     []corev1.ServicePort{{Name: "grpc", Port: grpcPortNumber, TargetPort: intstr.FromInt(grpcPortNumber)}},
		},
	}
	if _, err := admin.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return &svcFixture{t: t, c: c, admin: admin, ns: ns, name: "be", dialer: echotest.NewDialer(), backends: map[int]*echotest.Backend{}}
}

// pod returns the backend of fake pod i, starting it (on loopback, mapped from FakeIP(i)) if
// needed.
func (f *svcFixture) pod(i int) *echotest.Backend {
	if b, ok := f.backends[i]; ok {
		return b
	}
	b := echotest.Start(f.t, podName(i), zoneOf(i))
	f.dialer.Map(echotest.FakeIP(i), b.Addr)
	f.backends[i] = b
	return b
}

func podName(i int) string { return fmt.Sprintf("be-%d", i) }
func zoneOf(i int) string  { return fmt.Sprintf("zone-%d", i%3) }

type cond int

const (
	ready cond = iota
	draining
)

// ep is the EndpointSlice entry of fake pod i.
func ep(i int, c cond) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{
		Addresses: []string{echotest.FakeIP(i)},
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: podName(i)},
		Zone:      ptr.To(zoneOf(i)),
	}
	if c == draining {
		e.Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
	} else {
		e.Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}
	}
	return e
}

// eps is ep(i, ready) for each i, starting their backends.
func (f *svcFixture) eps(is ...int) []discoveryv1.Endpoint {
	out := make([]discoveryv1.Endpoint, 0, len(is))
	for _, i := range is {
		f.pod(i)
		out = append(out, ep(i, ready))
	}
	return out
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// apply creates or replaces the slice called name with endpoints eps.
func (f *svcFixture) apply(ctx context.Context, name string, eps []discoveryv1.Endpoint) {
	f.t.Helper()
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: f.ns,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: f.name,
				discoveryv1.LabelManagedBy:   "spread-test",
			},
			Annotations: map[string]string{
				"endpoints.kubernetes.io/last-change-trigger-time": time.Now().UTC().Format(time.RFC3339Nano),
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](grpcPortNumber), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   eps,
	}
	slices := f.admin.DiscoveryV1().EndpointSlices(f.ns)
	cur, err := slices.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = slices.Create(ctx, sl, metav1.CreateOptions{})
	case err == nil:
		sl.ResourceVersion = cur.ResourceVersion
		_, err = slices.Update(ctx, sl, metav1.UpdateOptions{})
	}
	if err != nil {
		f.t.Fatalf("apply slice %s: %v", name, err)
	}
}

func (f *svcFixture) deleteSlice(ctx context.Context, name string) {
	f.t.Helper()
	if err := f.admin.DiscoveryV1().EndpointSlices(f.ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// target is the resolver target of the fixture's Service.
func (f *svcFixture) target() string { return "kubernetes:///" + f.name + "." + f.ns + ":grpc" }

// dial connects a client to the Service through builder b and the fixture's dialer.
func (f *svcFixture) dial(b resolver.Builder, opts ...grpc.DialOption) echo.EchoServerClient {
	f.t.Helper()
	return f.dialTarget(f.target(), b, opts...)
}

func (f *svcFixture) dialTarget(target string, b resolver.Builder, opts ...grpc.DialOption) echo.EchoServerClient {
	f.t.Helper()
	opts = append([]grpc.DialOption{grpc.WithResolvers(b), f.dialer.Option(), grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = conn.Close() })
	return echo.NewEchoServerClient(conn)
}

// counts returns the calls each started backend has received.
func (f *svcFixture) counts() map[int]int64 {
	out := make(map[int]int64, len(f.backends))
	for i, b := range f.backends {
		out[i] = b.Calls()
	}
	return out
}

func newBuilder(t testing.TB, opts ...Option) *Builder {
	t.Helper()
	b, err := NewBuilder(append([]Option{WithLogger(testLogger())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// call makes one unary call and returns the answering pod.
func call(ctx context.Context, c echo.EchoServerClient, opts ...grpc.CallOption) (string, error) {
	r, err := c.SayHello(ctx, &echo.EchoRequest{Name: "test"}, opts...)
	return r.GetPod(), err
}

// awaitServing calls until every pod in want has answered, failing on any call error and at
// ctx's deadline. It returns the pods seen.
func awaitServing(ctx context.Context, t testing.TB, c echo.EchoServerClient, want ...int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for {
		all := true
		for _, i := range want {
			if seen[podName(i)] == 0 {
				all = false
			}
		}
		if all {
			return seen
		}
		if ctx.Err() != nil {
			t.Fatalf("pods %v never all answered; seen %v", want, seen)
		}
		pod, err := call(ctx, c, grpc.WaitForReady(true))
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		seen[pod]++
	}
}

// spread makes n calls and returns how many each pod answered; any error fails the test.
func spread(ctx context.Context, t testing.TB, c echo.EchoServerClient, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		pod, err := call(ctx, c)
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		got[pod]++
	}
	return got
}

// expectEven checks that calls went to exactly the pods in want, per each.
func expectEven(t testing.TB, got map[string]int, per int, want ...int) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("calls went to %v, want exactly %d each on %v", got, per, want)
		return
	}
	for _, i := range want {
		if got[podName(i)] != per {
			t.Errorf("calls went to %v, want exactly %d each on %v", got, per, want)
			return
		}
	}
}
