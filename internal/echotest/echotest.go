// Package echotest runs small echo backends on loopback for tests, and a dialer that maps the
// documentation addresses used in EndpointSlices (192.0.2.0/24, which the API server accepts
// where it refuses loopback) to those backends. Traffic never goes to a 192.0.2.x address.
package echotest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/spread-grpc/spread/echo"
)

// Backend is one echo server on 127.0.0.1 with a grpc health server, standing for one pod.
type Backend struct {
	// Name is the pod name the backend answers with.
	Name string
	// Zone is the zone it answers with.
	Zone string
	// Addr is the real listening address, 127.0.0.1:port.
	Addr string

	srv    *grpc.Server
	health *health.Server
	calls  atomic.Int64
	active atomic.Int64
	once   sync.Once
	firsts sync.Map // request name → time.Time of its first unary call
}

// Start starts a backend named name and stops it (at once) at the end of the test.
func Start(t testing.TB, name, zone string) *Backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("echotest: listen: %v", err)
	}
	b := &Backend{Name: name, Zone: zone, Addr: lis.Addr().String(), srv: grpc.NewServer(), health: health.NewServer()}
	echo.RegisterEchoServerServer(b.srv, &server{b: b})
	healthpb.RegisterHealthServer(b.srv, b.health)
	go func() { _ = b.srv.Serve(lis) }()
	t.Cleanup(b.Stop)
	return b
}

// Calls counts the calls the backend has started (unary and streaming).
func (b *Backend) Calls() int64 { return b.calls.Load() }

// FirstCall returns when the first unary call with request name arrived, if one did.
func (b *Backend) FirstCall(name string) (time.Time, bool) {
	v, ok := b.firsts.Load(name)
	if !ok {
		return time.Time{}, false
	}
	return v.(time.Time), true
}

// Active counts the calls in progress.
func (b *Backend) Active() int64 { return b.active.Load() }

// SetServing flips the backend's health status (what client-side health checking sees).
func (b *Backend) SetServing(ok bool) {
	st := healthpb.HealthCheckResponse_SERVING
	if !ok {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	b.health.SetServingStatus("", st)
}

// Stop stops the backend at once (idempotent).
func (b *Backend) Stop() {
	b.once.Do(func() {
		b.health.Shutdown()
		b.srv.Stop()
	})
}

// GracefulStop stops the backend after its calls finish, bounded by grace.
func (b *Backend) GracefulStop(grace time.Duration) {
	b.once.Do(func() {
		b.health.Shutdown()
		t := time.AfterFunc(grace, b.srv.Stop)
		defer t.Stop()
		b.srv.GracefulStop()
	})
}

type server struct {
	echo.UnimplementedEchoServerServer
	b *Backend
}

func (s *server) reply(name string, seq uint64) *echo.EchoReply {
	host, _, _ := net.SplitHostPort(s.b.Addr)
	return &echo.EchoReply{
		Message: fmt.Sprintf("Hello %s from hostname %s", name, s.b.Name),
		Pod:     s.b.Name, PodIp: host, Zone: s.b.Zone, Seq: seq,
	}
}

func (s *server) SayHello(_ context.Context, req *echo.EchoRequest) (*echo.EchoReply, error) {
	s.b.calls.Add(1)
	if _, seen := s.b.firsts.Load(req.GetName()); !seen {
		s.b.firsts.LoadOrStore(req.GetName(), time.Now())
	}
	return s.reply(req.GetName(), 1), nil
}

// SayHelloStream sends count replies (default 1), interval_ms apart: a call that stays in
// flight for a known time.
func (s *server) SayHelloStream(req *echo.EchoRequest, stream grpc.ServerStreamingServer[echo.EchoReply]) error {
	s.b.calls.Add(1)
	s.b.active.Add(1)
	defer s.b.active.Add(-1)
	n := max(req.GetCount(), 1)
	for i := range n {
		if i > 0 && req.GetIntervalMs() > 0 {
			select {
			case <-time.After(time.Duration(req.GetIntervalMs()) * time.Millisecond):
			case <-stream.Context().Done():
				return status.FromContextError(stream.Context().Err()).Err()
			}
		}
		if err := stream.Send(s.reply(req.GetName(), req.GetResumeAfter()+uint64(i)+1)); err != nil {
			return status.Errorf(codes.Unavailable, "send: %v", err)
		}
	}
	return nil
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
