package kubernetes

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/echotest"
	"github.com/spread-grpc/spread/internal/kubefake"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// grpc's client-side health checking and transports wind down asynchronously
		// after ClientConn.Close; the leak check still runs after they are gone.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
	)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func target(t *testing.T, s string) resolver.Target {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return resolver.Target{URL: *u}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    endpoint.Key
		wantErr string
	}{
		{in: "kubernetes:///be-srv.prod:grpc", want: endpoint.Key{Namespace: "prod", Service: "be-srv", Port: "grpc"}},
		{in: "kubernetes:///be-srv.prod:50051", want: endpoint.Key{Namespace: "prod", Service: "be-srv", Port: "50051"}},
		{in: "kubernetes:///be-srv.prod.svc.cluster.local:grpc", want: endpoint.Key{Namespace: "prod", Service: "be-srv", Port: "grpc"}},
		{in: "kubernetes:///be-srv:grpc", want: endpoint.Key{Namespace: "default", Service: "be-srv", Port: "grpc"}},
		{in: "kubernetes://prod/be-srv:grpc", want: endpoint.Key{Namespace: "prod", Service: "be-srv", Port: "grpc"}},
		{in: "kubernetes://prod/be-srv:8080", want: endpoint.Key{Namespace: "prod", Service: "be-srv", Port: "8080"}},
		{in: "kubernetes:///be-srv.prod", wantErr: "cannot parse"},
		{in: "kubernetes://prod/be-srv", wantErr: "missing :<port>"},
		{in: "kubernetes://be-srv.prod:50051", wantErr: "authority must be a namespace"},
		{in: "kubernetes:///", wantErr: "empty"},
		{in: "kubernetes:///Be_Srv.prod:grpc", wantErr: "service"},
		{in: "kubernetes://Prod/be:grpc", wantErr: "namespace"},
		{in: "kubernetes:///be.prod:70000", wantErr: "out of range"},
		{in: "kubernetes:///be.prod:not_a_port_name", wantErr: "port"},
		{in: "kubernetes:///be.prod:grpc?x=1", wantErr: "query"},
	} {
		got, err := ParseTarget(target(t, tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "want kubernetes:///") {
				t.Errorf("ParseTarget(%q) error = %v, want one mentioning %q and the accepted forms", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// recordingCC is a resolver.ClientConn that records what the resolver pushes.
type recordingCC struct {
	mu       sync.Mutex
	states   chan resolver.State
	errs     chan error
	scJSON   []string
	stateErr error
}

func newRecordingCC() *recordingCC {
	return &recordingCC{states: make(chan resolver.State, 100), errs: make(chan error, 100)}
}

func (c *recordingCC) UpdateState(s resolver.State) error {
	c.states <- s
	return c.stateErr
}
func (c *recordingCC) ReportError(err error)           { c.errs <- err }
func (c *recordingCC) NewAddress(_ []resolver.Address) {}
func (c *recordingCC) ParseServiceConfig(js string) *serviceconfig.ParseResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scJSON = append(c.scJSON, js)
	return &serviceconfig.ParseResult{}
}

func (c *recordingCC) nextState(ctx context.Context, t *testing.T) resolver.State {
	t.Helper()
	select {
	case s := <-c.states:
		return s
	case <-ctx.Done():
		t.Fatal("no resolver state before the deadline")
		return resolver.State{}
	}
}

func addrs(s resolver.State) []string {
	out := []string{}
	for _, a := range s.Addresses {
		out = append(out, a.Addr)
	}
	return out
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func kslice(name, svc string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "prod",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](50051), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   eps,
	}
}

func kep(addr, pod, zone string, ready, serving, terminating *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{addr},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: pod, Namespace: "prod"},
		Zone:       ptr.To(zone),
		Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating},
	}
}

func TestStatePushed(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset(kslice("be-1", "be",
		kep("192.0.2.1", "be-a", "zone-a", nil, nil, nil), // nil ready = ready
		kep("192.0.2.2", "be-b", "zone-b", ptr.To(true), nil, nil),
		kep("192.0.2.3", "be-c", "zone-a", ptr.To(false), ptr.To(true), ptr.To(true)), // draining
		kep("192.0.2.4", "be-d", "zone-a", ptr.To(false), ptr.To(false), nil),
	))
	cc, r := buildOver(t, client, "kubernetes:///be.prod:grpc")
	r.ResolveNow(resolver.ResolveNowOptions{}) // a no-op; must not block or panic

	s := cc.nextState(ctx, t)
	if got, want := addrs(s), []string{"192.0.2.1:50051", "192.0.2.2:50051"}; !slices.Equal(got, want) {
		t.Fatalf("addresses %v, want the ready ones %v", got, want)
	}
	if len(s.Endpoints) != 2 || EndpointPod(s.Endpoints[0]) != "be-a" || EndpointZone(s.Endpoints[1]) != "zone-b" ||
		AddressPod(s.Addresses[1]) != "be-b" || AddressZone(s.Addresses[0]) != "zone-a" {
		t.Errorf("attributes missing: %+v", s)
	}
	if s.ServiceConfig == nil || !slices.Equal(cc.scJSON, []string{DefaultServiceConfig}) {
		t.Errorf("service config %v parsed from %q, want %q", s.ServiceConfig, cc.scJSON, DefaultServiceConfig)
	}

	// No ready endpoint left: the draining one takes the calls.
	if _, err := client.DiscoveryV1().EndpointSlices("prod").Update(ctx, kslice("be-1", "be",
		kep("192.0.2.3", "be-c", "zone-a", ptr.To(false), ptr.To(true), ptr.To(true)),
		kep("192.0.2.4", "be-d", "zone-a", ptr.To(false), ptr.To(false), nil),
	), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := addrs(cc.nextState(ctx, t)), []string{"192.0.2.3:50051"}; !slices.Equal(got, want) {
		t.Fatalf("addresses %v, want the serving one %v", got, want)
	}

	// No slice: an empty state, not the old addresses.
	if err := client.DiscoveryV1().EndpointSlices("prod").Delete(ctx, "be-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if s := cc.nextState(ctx, t); len(s.Addresses) != 0 || len(s.Endpoints) != 0 || s.ServiceConfig == nil {
		t.Fatalf("state %+v, want no addresses and the service config", s)
	}
}

func TestForbiddenReportsErrorFast(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset()
	client.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "",
			errors.New(`User "system:serviceaccount:prod:client" cannot list resource "endpointslices"`))
	})
	b, err := NewBuilder(WithClient(client), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.backoff = func(int) time.Duration { return time.Hour } // one attempt is enough here
	cc := newRecordingCC()
	r, err := b.Build(target(t, "kubernetes://prod/be:grpc"), cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	select {
	case err := <-cc.errs:
		if !apierrors.IsForbidden(err) || !strings.HasPrefix(err.Error(), "kubernetes resolver: ") || !strings.Contains(err.Error(), "be.prod:grpc") {
			t.Errorf("reported %q, want a wrapped Forbidden naming the target", err)
		}
	case s := <-cc.states:
		t.Fatalf("pushed %+v without permission", s)
	case <-ctx.Done():
		t.Fatal("no error reported")
	}
}

func TestBuildRejectsMalformedTarget(t *testing.T) {
	b, err := NewBuilder(WithClient(fake.NewClientset()), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Build(target(t, "kubernetes:///be"), newRecordingCC(), resolver.BuildOptions{}); err == nil {
		t.Fatal("Build accepted a target without port")
	}
	// A ClientConn surfaces it on the first call (NewClient builds resolvers lazily).
	conn, err := grpc.NewClient("kubernetes:///be", grpc.WithResolvers(b), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		if !strings.Contains(err.Error(), "kubernetes resolver") {
			t.Fatalf("NewClient error %v, want ours", err)
		}
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = echo.NewEchoServerClient(conn).SayHello(ctx, &echo.EchoRequest{})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "want kubernetes:///") {
		t.Fatalf("call on a malformed target: %v, want UNAVAILABLE explaining the target forms", err)
	}
}

func TestNewBuilderOutsideClusterFailsClearly(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := NewBuilder(); err == nil || !strings.Contains(err.Error(), "in-cluster config") {
		t.Errorf("NewBuilder() outside a cluster = %v, want an in-cluster config error", err)
	}
	if err := Register(); err == nil {
		t.Error("Register() outside a cluster registered a builder")
	}
	if _, err := NewBuilder(WithKubeconfig("/nonexistent/kubeconfig")); err == nil || !strings.Contains(err.Error(), "kubeconfig") {
		t.Errorf("NewBuilder(WithKubeconfig(missing)) = %v, want a kubeconfig error", err)
	}
}

// TestEmptySetFailsFast checks with a real grpc-go ClientConn (and a fake clientset, which
// accepts loopback addresses) that an empty state makes round_robin fail RPCs at once with
// UNAVAILABLE, and that calls recover when endpoints return.
func TestEmptySetFailsFast(t *testing.T) {
	ctx := testCtx(t)
	be := echotest.Start(t, "be-a", "zone-a")
	host, port := splitHostPort(t, be.Addr)
	sl := kslice("be-1", "be", kep(host, "be-a", "zone-a", nil, nil, nil))
	sl.Ports[0].Port = ptr.To(port)
	client := kubefake.NewClientset(sl)
	b, err := NewBuilder(WithClient(client), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	conn, err := grpc.NewClient("kubernetes:///be.prod:grpc", grpc.WithResolvers(b), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := echo.NewEchoServerClient(conn)
	if _, err := c.SayHello(ctx, &echo.EchoRequest{Name: "t"}); err != nil {
		t.Fatal(err)
	}

	// A fake clientset loses a Delete made before the informer's watch is open (under make
	// test-stress the calls below then succeeded until the test's deadline).
	if err := client.WaitWatching(ctx, "endpointslices"); err != nil {
		t.Fatal(err)
	}
	if err := client.DiscoveryV1().EndpointSlices("prod").Delete(ctx, "be-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Until the empty state lands, calls still succeed; after it, each fails at once.
	for {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		start := time.Now()
		_, err := c.SayHello(callCtx, &echo.EchoRequest{Name: "t"})
		cancel()
		if err == nil {
			if ctx.Err() != nil {
				t.Fatal("calls kept succeeding after the Service lost its endpoints")
			}
			continue
		}
		// At once: the code, not the clock, tells a fail-fast from a wait for the 5 s
		// deadline; the bound only keeps well under the deadline on a busy machine.
		if status.Code(err) != codes.Unavailable || time.Since(start) > 2500*time.Millisecond {
			t.Fatalf("call failed with %v after %v, want UNAVAILABLE at once", err, time.Since(start))
		}
		t.Logf("empty set: %v", err)
		break
	}

	if _, err := client.DiscoveryV1().EndpointSlices("prod").Create(ctx, sl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SayHello(ctx, &echo.EchoRequest{Name: "t"}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("no recovery after endpoints returned: %v", err)
	}
}

func splitHostPort(t *testing.T, hp string) (string, int32) {
	t.Helper()
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return host, int32(n)
}

func TestDualStackPodIsOneEndpoint(t *testing.T) {
	ctx := testCtx(t)
	v6 := kslice("be-v6", "be",
		kep("2001:db8::1", "be-a", "zone-a", nil, nil, nil),
		kep("2001:db8::2", "be-b", "zone-b", nil, nil, nil))
	v6.AddressType = discoveryv1.AddressTypeIPv6
	client := fake.NewClientset(kslice("be-v4", "be",
		kep("192.0.2.1", "be-a", "zone-a", nil, nil, nil),
		kep("192.0.2.2", "be-b", "zone-b", nil, nil, nil)), v6)
	cc, _ := buildOver(t, client, "kubernetes:///be.prod:grpc")
	s := cc.nextState(ctx, t)
	if len(s.Addresses) != 4 || len(s.Endpoints) != 2 {
		t.Fatalf("%d addresses in %d endpoints, want 4 in 2 (one per pod)", len(s.Addresses), len(s.Endpoints))
	}
	for _, e := range s.Endpoints {
		if len(e.Addresses) != 2 {
			t.Errorf("endpoint of pod %s has addresses %v, want its IPv4 and IPv6 one", EndpointPod(e), e.Addresses)
		}
	}
}

func TestDefaultNamespace(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset(kslice("be-1", "be", kep("192.0.2.1", "be-a", "zone-a", nil, nil, nil)))
	b, err := NewBuilder(WithClient(client), WithLogger(quiet), WithNamespace("prod"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cc := newRecordingCC()
	r, err := b.Build(target(t, "kubernetes:///be:grpc"), cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := addrs(cc.nextState(ctx, t)); !slices.Equal(got, []string{"192.0.2.1:50051"}) {
		t.Fatalf("kubernetes:///be:grpc with namespace prod resolved to %v", got)
	}
}

func TestKubeconfigNamespace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: prod}}]
current-context: x
`
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := NewBuilder(WithKubeconfig(path), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.namespace != "prod" {
		t.Errorf("default namespace %q, want the context's %q", b.namespace, "prod")
	}
}

// buildOver builds a resolver for tgt over client's EndpointSlices, recording its states;
// the resolver and its Builder close at the end of the test.
func buildOver(t *testing.T, client *fake.Clientset, tgt string) (*recordingCC, resolver.Resolver) {
	t.Helper()
	b, err := NewBuilder(WithClient(client), WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cc := newRecordingCC()
	r, err := b.Build(target(t, tgt), cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return cc, r
}
