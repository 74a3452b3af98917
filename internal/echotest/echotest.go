// Package echotest runs Spread's real echo backend (internal/backend) on loopback for tests,
// with call counters, and a dialer that maps the documentation addresses used in
// EndpointSlices (192.0.2.0/24, which the API server accepts where it refuses loopback) to
// those backends. Traffic never goes to a 192.0.2.x address.
package echotest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/backend"
)

// Backend is one internal/backend echo server standing for one pod, instrumented by
// interceptors that count the echo calls (health checks and reflection are not counted).
type Backend struct {
	// Name is the pod name the backend answers with.
	Name string
	// Zone is the zone it answers with.
	Zone string
	// Addr is the real listening address, e.g. 127.0.0.1:port.
	Addr string
	// Server is the backend itself (SetDelay, Drain, ...).
	Server *backend.Server

	calls  atomic.Int64
	active atomic.Int64
	firsts sync.Map // request name → time.Time of its first unary call
	done   chan struct{}
}

// Start starts a backend named name on a fresh 127.0.0.1 port and stops it (at once) at the
// end of the test. opts are passed to backend.New after the counting interceptors.
func Start(t testing.TB, name, zone string, opts ...backend.Option) *Backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("echotest: listen: %v", err)
	}
	b, err := Serve(lis, name, zone, opts...)
	if err != nil {
		t.Fatalf("echotest: %v", err)
	}
	t.Cleanup(b.Stop)
	return b
}

// Serve serves a backend named name on lis until Stop, which the caller must call. It is
// Start for callers without a testing.TB or with their own listener.
func Serve(lis net.Listener, name, zone string, opts ...backend.Option) (*Backend, error) {
	b := &Backend{Name: name, Zone: zone, Addr: lis.Addr().String(), done: make(chan struct{})}
	srv, err := backend.New(backend.Config{Pod: name, Zone: zone},
		append([]backend.Option{backend.WithServerOptions(
			grpc.ChainUnaryInterceptor(b.unary), grpc.ChainStreamInterceptor(b.stream),
		)}, opts...)...)
	if err != nil {
		lis.Close()
		return nil, err
	}
	b.Server = srv
	go func() {
		defer close(b.done)
		_ = srv.Serve(context.Background(), lis)
	}()
	return b, nil
}

// echoCall reports whether method is an echo call (not health or reflection).
func echoCall(method string) bool {
	return strings.HasPrefix(method, "/"+echo.EchoServer_ServiceDesc.ServiceName+"/")
}

func (b *Backend) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if !echoCall(info.FullMethod) {
		return h(ctx, req)
	}
	b.calls.Add(1)
	if r, ok := req.(*echo.EchoRequest); ok {
		if _, seen := b.firsts.Load(r.GetName()); !seen {
			b.firsts.LoadOrStore(r.GetName(), time.Now())
		}
	}
	b.active.Add(1)
	defer b.active.Add(-1)
	return h(ctx, req)
}

func (b *Backend) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if !echoCall(info.FullMethod) {
		return h(srv, ss)
	}
	b.calls.Add(1)
	b.active.Add(1)
	defer b.active.Add(-1)
	return h(srv, ss)
}

// Calls counts the echo calls the backend has started (unary and streaming).
func (b *Backend) Calls() int64 { return b.calls.Load() }

// FirstCall returns when the first unary call with request name arrived, if one did.
func (b *Backend) FirstCall(name string) (time.Time, bool) {
	v, ok := b.firsts.Load(name)
	if !ok {
		return time.Time{}, false
	}
	return v.(time.Time), true
}

// Active counts the echo calls in progress.
func (b *Backend) Active() int64 { return b.active.Load() }

// Stop stops the backend at once, as when a pod dies, and waits until it has stopped
// serving (idempotent).
func (b *Backend) Stop() {
	b.Server.Stop()
	<-b.done
}

// Dialer maps fake pod IPs (192.0.2.x) to real backend addresses. The port of the dialled
// address (the EndpointSlice port) is ignored: the IP alone picks the backend. Unknown
// addresses fail: a test never dials a 192.0.2.x address itself.
type Dialer struct {
	mu sync.Mutex
	m  map[string]string
	// Dials counts dials per fake IP.
	dials map[string]int
}

// NewDialer returns an empty Dialer.
func NewDialer() *Dialer { return &Dialer{m: make(map[string]string), dials: make(map[string]int)} }

// Map routes fakeIP to real (host:port).
func (d *Dialer) Map(fakeIP, real string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[fakeIP] = real
}

// Dial is a grpc.WithContextDialer function.
func (d *Dialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	real, ok := d.m[host]
	d.dials[host]++
	d.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("echotest: no backend mapped for %s (refusing to dial it)", addr)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", real)
}

// Option returns the grpc.DialOption that installs the dialer.
func (d *Dialer) Option() grpc.DialOption { return grpc.WithContextDialer(d.Dial) }

// FakeIP returns the i-th documentation address, i in 1..762: 192.0.2.1–254, then
// 198.51.100.1–254, then 203.0.113.1–254 (TEST-NET-1, 2 and 3: never routed).
func FakeIP(i int) string {
	nets := []string{"192.0.2.", "198.51.100.", "203.0.113."}
	if i < 1 || i > 254*len(nets) {
		panic("echotest: FakeIP index out of 1..762: " + strconv.Itoa(i))
	}
	return nets[(i-1)/254] + strconv.Itoa((i-1)%254+1)
}

// Dialed returns how many distinct fake IPs have been dialled.
func (d *Dialer) Dialed() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.dials)
}
