package xds_test

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/endpoint/endpointtest"
	spreadbackend "github.com/spread-grpc/spread/internal/backend"
	"github.com/spread-grpc/spread/internal/echotest"
	"github.com/spread-grpc/spread/internal/xds"
)

// fakeEndpoints is an EndpointSource whose sets the test publishes (endpointtest.Fake, which
// passes the endpoint.Source conformance suite).
type fakeEndpoints struct{ endpointtest.Fake }

func (f *fakeEndpoints) publish(k endpoint.Key, eps ...endpoint.Endpoint) { f.Publish(k, eps...) }

// fakeServices is a ServiceSource whose list the test sets.
type fakeServices struct {
	mu      sync.Mutex
	list    []xds.Service
	version int
	notify  []chan struct{}
}

func (f *fakeServices) set(list ...xds.Service) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = list
	f.version++
	for _, c := range f.notify {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

func (f *fakeServices) WatchServices(ctx context.Context, fn func([]xds.Service)) (func(), error) {
	c := make(chan struct{}, 1)
	f.mu.Lock()
	f.notify = append(f.notify, c)
	if f.version > 0 {
		c <- struct{}{}
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-c:
			}
			f.mu.Lock()
			l := f.list
			f.mu.Unlock()
			fn(l)
		}
	}()
	return func() { <-done }, nil
}

// tbWriter sends log lines to the test log.
type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type controlPlane struct {
	addr string
	srv  *xds.Server
	reg  *prometheus.Registry
	stop func()
}

// startControlPlane serves an xds.Server on addr ("127.0.0.1:0" for a fresh port).
func startControlPlane(t testing.TB, addr string, eps xds.EndpointSource, svcs xds.ServiceSource, opts ...xds.Option) *controlPlane {
	t.Helper()
	var lis net.Listener
	var err error
	// A restarted control plane takes over its predecessor's port; poll briefly in case
	// the kernel has not released it yet.
	deadline := time.Now().Add(5 * time.Second)
	for {
		lis, err = net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := xds.New(eps, svcs, append([]xds.Option{xds.WithRegisterer(reg), xds.WithLogger(logger)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	var so []grpc.ServerOption
	if !*plainCodec {
		so = s.ServerOptions()
	}
	g := grpc.NewServer(so...)
	s.Register(g)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- s.Run(ctx) }()
	serveDone := make(chan struct{})
	go func() { defer close(serveDone); _ = g.Serve(lis) }()
	cp := &controlPlane{addr: lis.Addr().String(), srv: s, reg: reg}
	cp.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("Run: %v", err)
		}
		g.Stop()
		<-serveDone
	})
	t.Cleanup(cp.stop)
	return cp
}

// metric reads one sample from the control plane's registry (0 if absent).
func (cp *controlPlane) metric(name string, labels map[string]string) float64 {
	mfs, _ := cp.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// backend is an echo "pod": the real internal/backend, with call counting from echotest.
type backend struct {
	*echotest.Backend
	pod  string
	port int32
}

// startBackend serves an echo "pod" on a fresh loopback port; delay makes every call slow.
func startBackend(t testing.TB, pod string, delay time.Duration, opts ...grpc.ServerOption) *backend {
	t.Helper()
	eb := echotest.Start(t, pod, "", spreadbackend.WithServerOptions(opts...))
	eb.Server.SetDelay(delay)
	return newBackend(eb)
}

func newBackend(eb *echotest.Backend) *backend {
	_, port, _ := net.SplitHostPort(eb.Addr)
	p, _ := strconv.Atoi(port)
	return &backend{Backend: eb, pod: eb.Name, port: int32(p)}
}

func (b *backend) ep(zone string) endpoint.Endpoint {
	return endpoint.Endpoint{Address: "127.0.0.1", Port: b.port, Pod: b.pod, Zone: zone, Ready: true, Serving: true}
}

func (b *backend) draining(zone string) endpoint.Endpoint {
	e := b.ep(zone)
	e.Ready, e.Terminating = false, true
	return e
}

func startBackends(t testing.TB, n int, prefix string) []*backend {
	out := make([]*backend, n)
	for i := range out {
		out[i] = startBackend(t, prefix+strconv.Itoa(i+1), 0)
	}
	return out
}

func eps(bs []*backend, zone string) []endpoint.Endpoint {
	out := make([]endpoint.Endpoint, len(bs))
	for i, b := range bs {
		out[i] = b.ep(zone)
	}
	return out
}

// newClient dials xds:///target through the control plane at cpAddr, with the bootstrap
// passed through the API (no environment variable, no global resolver registration).
func newClient(t testing.TB, cpAddr, zone, target string, opts ...grpc.DialOption) echo.EchoServerClient {
	t.Helper()
	b, err := xds.Bootstrap(xds.BootstrapConfig{ServerURI: cpAddr, NodeID: "test-" + zone, Zone: zone})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(b)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///"+target, append([]grpc.DialOption{
		grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return echo.NewEchoServerClient(cc)
}

// spread makes n sequential calls and counts answers per pod.
func spread(ctx context.Context, c echo.EchoServerClient, n int, md ...string) (map[string]int, error) {
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	got := map[string]int{}
	for range n {
		r, err := c.SayHello(ctx, &echo.EchoRequest{Name: "t"})
		if err != nil {
			return got, err
		}
		got[r.GetPod()]++
	}
	return got, nil
}

// eventually polls cond until it holds or ctx ends. cond makes real calls, which paces it.
func eventually(t testing.TB, ctx context.Context, what string, cond func() (bool, string)) {
	t.Helper()
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not reached before the deadline; last: %s", what, last)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// onlyPods reports whether n calls landed exactly on the pods want (each at least once).
func onlyPods(ctx context.Context, c echo.EchoServerClient, n int, want ...string) (bool, string) {
	got, err := spread(ctx, c, n)
	if err != nil {
		return false, err.Error()
	}
	if len(got) != len(want) {
		return false, fmtCounts(got)
	}
	for _, p := range want {
		if got[p] == 0 {
			return false, fmtCounts(got)
		}
	}
	return true, ""
}

func fmtCounts(m map[string]int) string {
	s := ""
	for k, v := range m {
		s += k + "=" + strconv.Itoa(v) + " "
	}
	return s
}

func pods(bs ...*backend) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.pod
	}
	return out
}
