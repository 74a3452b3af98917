// Package backend is Spread's echo gRPC server: the "pod" every balancing mode spreads calls
// over. It answers echo.EchoServer calls with its identity (pod name, IP, zone), serves
// grpc.health.v1.Health with a real Watch, server reflection, and drains gracefully: health
// flips to NOT_SERVING first, then GracefulStop bounded by a grace period, then Stop.
package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/fairshare"
	"github.com/spread-grpc/spread/internal/tlsfiles"
)

// Limits of SayHelloStream requests.
const (
	DefaultStreamCount = 5
	MaxStreamCount     = 100000
	MaxStreamInterval  = 10 * time.Second
	// MaxStreamBytes bounds the name bytes one SayHelloStream echoes (the name's length
	// times the messages it asks for): a large name times a large count is refused up front
	// with InvalidArgument instead of sending gigabytes.
	MaxStreamBytes = 16 << 20
)

// DefaultConfig returns the values New gives zero fields, declared once: `spread backend`'s
// flags show them.
func DefaultConfig() Config { return Config{Grace: 10 * time.Second} }

// Config describes one backend. The zero value of every optional field is a sensible default.
type Config struct {
	// Pod is the backend's identity, echoed in every reply. Required.
	Pod string
	// Zone is the topology zone echoed in replies (optional).
	Zone string
	// PodIP overrides the address echoed in replies; by default the listener's IP.
	PodIP string
	// Grace bounds the graceful drain on shutdown (default 10s); after it, Stop.
	Grace time.Duration
	// MaxConnectionAge, if set, makes clients reconnect (and so re-resolve) periodically.
	MaxConnectionAge time.Duration
	// MaxConnectionAgeGrace bounds how long calls may run on a connection past its age.
	MaxConnectionAgeGrace time.Duration
	// MaxStreamAge, if set, ends each SayHelloStream after this age, jittered by ±10% so
	// streams opened together do not all re-open together. The stream ends with the
	// stream-age status (see echo.IsStreamAgeEnd): clients re-open it with resume_after and
	// so re-balance, like MaxConnectionAge does for connections.
	MaxStreamAge time.Duration
	// TLSCert and TLSKey are PEM file paths; both or neither. Plaintext when empty. The files
	// are re-read when they change (see internal/tlsfiles), so rotation needs no restart.
	TLSCert, TLSKey string
	// TLSClientCA, with TLSCert, turns on mTLS: clients must present a certificate signed by
	// a CA in this PEM bundle (also re-read when it changes).
	TLSClientCA string
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.Pod == "":
		return errors.New("backend: pod name is empty")
	case c.Grace < 0:
		return fmt.Errorf("backend: grace %v is negative", c.Grace)
	case c.MaxConnectionAge < 0 || c.MaxConnectionAgeGrace < 0:
		return errors.New("backend: max connection age and its grace must not be negative")
	case c.MaxStreamAge < 0:
		return fmt.Errorf("backend: max stream age %v is negative", c.MaxStreamAge)
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("backend: TLS needs both a certificate and a key file")
	case c.TLSClientCA != "" && c.TLSCert == "":
		return errors.New("backend: a client CA (mTLS) needs a certificate and key too")
	}
	return nil
}

// Option configures a Server beyond its Config.
type Option func(*options)

type options struct {
	log        *slog.Logger
	registerer prometheus.Registerer
	serverOpts []grpc.ServerOption
	register   []func(*grpc.Server)
	fairShare  []fairshare.Option
	fair       bool
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithRegisterer registers the backend's metrics with r (default: none).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithServerOptions adds grpc.ServerOptions (interceptors, stats handlers, ...).
func WithServerOptions(so ...grpc.ServerOption) Option {
	return func(o *options) { o.serverOpts = append(o.serverOpts, so...) }
}

// WithService registers an extra service on the gRPC server before it serves (for example
// ORCA load reporting).
func WithService(register func(*grpc.Server)) Option {
	return func(o *options) { o.register = append(o.register, register) }
}

// WithFairShare serves every connection on its own grpc.Server under a fairshare.Server,
// which sheds connections above the backend's fair share (see package fairshare). Its name
// defaults to the pod's; its metrics go to the backend's registerer.
func WithFairShare(opts ...fairshare.Option) Option {
	return func(o *options) { o.fair = true; o.fairShare = append(o.fairShare, opts...) }
}

// DefaultPodName is the identity a backend takes when none is given: $POD_NAME (the Kubernetes
// downward API), else the hostname.
func DefaultPodName() string {
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}

// Server is one echo backend.
type Server struct {
	cfg     Config
	log     *slog.Logger
	grpc    *grpc.Server
	srv     grpcServer        // grpc, or fair when fair-share is on
	fair    *fairshare.Server // nil unless WithFairShare
	health  *drainingHealth
	metrics *metrics

	mu       sync.Mutex
	draining bool
	podIP    string
	delay    time.Duration
}

// SetDelay makes every echo call wait d before answering (0 restores full speed): a slow pod.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// wait applies the configured delay, or returns early with the context's error.
func (s *Server) wait(ctx context.Context) error {
	s.mu.Lock()
	d := s.delay
	s.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// New validates cfg and builds a Server; it does not listen yet.
func New(cfg Config, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultConfig().Grace
	}
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	m, err := newMetrics(o.registerer)
	if err != nil {
		return nil, err
	}
	so := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.unary),
		grpc.ChainStreamInterceptor(m.stream),
		grpc.StatsHandler(m),
		// Let clients keep connections alive with pings every 5 s or more, even while idle,
		// so that client keepalive (which detects frozen pods) never earns a GOAWAY.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	if cfg.MaxConnectionAge > 0 {
		so = append(so, grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: cfg.MaxConnectionAgeGrace,
		}))
	}
	if cfg.TLSCert != "" {
		store, err := tlsfiles.New(tlsfiles.Files{Cert: cfg.TLSCert, Key: cfg.TLSKey, CA: cfg.TLSClientCA},
			tlsfiles.WithName("backend"), tlsfiles.WithLogger(o.log), tlsfiles.WithRegisterer(o.registerer))
		if err != nil {
			return nil, fmt.Errorf("backend: %w", err)
		}
		tc, err := store.ServerConfig()
		if err != nil {
			return nil, fmt.Errorf("backend: %w", err)
		}
		so = append(so, grpc.Creds(credentials.NewTLS(tc)))
	}
	so = append(so, o.serverOpts...)

	s := &Server{cfg: cfg, log: o.log, health: newDrainingHealth(), metrics: m}
	build := func(extra ...grpc.ServerOption) *grpc.Server {
		g := grpc.NewServer(append(slices.Clone(so), extra...)...)
		echo.RegisterEchoServerServer(g, &echoService{s: s})
		healthpb.RegisterHealthServer(g, s.health)
		reflection.Register(g)
		for _, r := range o.register {
			r(g)
		}
		return g
	}
	s.health.SetServingStatus("echo.EchoServer", healthpb.HealthCheckResponse_SERVING)
	s.grpc = build()
	s.srv = s.grpc
	if o.fair {
		fo := append([]fairshare.Option{fairshare.WithName(cfg.Pod), fairshare.WithLogger(o.log),
			fairshare.WithRegisterer(o.registerer), fairshare.WithGrace(cfg.Grace)}, o.fairShare...)
		if s.fair, err = fairshare.NewServer(build, fo...); err != nil {
			return nil, fmt.Errorf("backend: %w", err)
		}
		s.srv = s.fair
	}
	return s, nil
}

// grpcServer is what Serve, Drain and Stop need of a *grpc.Server (or a fairshare.Server).
type grpcServer interface {
	Serve(net.Listener) error
	GracefulStop()
	Stop()
}

// FairShare returns the fair-share server (for its admin handler), or nil when off.
func (s *Server) FairShare() *fairshare.Server { return s.fair }

// Conns returns the client connections the backend holds now: with WithFairShare the ones
// it counts toward its share (not those shed or turned away that still drain), else every
// open one.
func (s *Server) Conns() int {
	if s.fair != nil {
		return s.fair.Conns()
	}
	return int(s.metrics.conns.Load())
}

// Served returns the calls the backend has answered (any status) since it was built.
func (s *Server) Served() uint64 { return s.metrics.served.Load() }

// Pod returns the backend's identity.
func (s *Server) Pod() string { return s.cfg.Pod }

// RegisterHealth registers the backend's health service (the same statuses, NOT_SERVING once
// draining) on another server: a plaintext health-only port for kubelet gRPC probes, which
// cannot present client certificates when the main port requires mTLS.
func (s *Server) RegisterHealth(g *grpc.Server) { healthpb.RegisterHealthServer(g, s.health) }

// Ready reports nil while the backend takes new calls, an error once it drains.
func (s *Server) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return errors.New("draining")
	}
	return nil
}

// Serve serves gRPC on lis until ctx is done, then drains (see Drain) and returns nil. It
// returns an error only if serving fails.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	s.mu.Lock()
	if s.podIP == "" {
		s.podIP = s.cfg.PodIP
		if s.podIP == "" {
			if host, _, err := net.SplitHostPort(lis.Addr().String()); err == nil {
				s.podIP = host
			}
		}
	}
	s.mu.Unlock()
	s.metrics.setMethods(s.grpc) // every service is registered by now
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(lis) }()
	select {
	case err := <-errc:
		if err == nil { // stopped by Stop (a hard kill)
			return nil
		}
		return fmt.Errorf("backend %s: serve: %w", s.cfg.Pod, err)
	case <-ctx.Done():
	}
	s.Drain()
	<-errc // Serve returns once Stop/GracefulStop ran
	return nil
}

// Drain flips health to NOT_SERVING (watchers see it at once, so health-checking clients
// stop sending new calls), then stops gracefully: in-flight calls finish, bounded by the
// grace period, after which remaining calls are cancelled. It blocks until stopped and is
// safe to call more than once.
func (s *Server) Drain() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	s.metrics.draining.Set(1)
	s.health.drain() // every service NOT_SERVING, Watch streams end once they said so
	start := time.Now()
	t := time.AfterFunc(s.cfg.Grace, func() {
		s.log.Warn("grace period over, stopping with calls in flight", "pod", s.cfg.Pod, "grace", s.cfg.Grace)
		s.srv.Stop()
	})
	defer t.Stop()
	s.srv.GracefulStop()
	s.log.Info("drained", "pod", s.cfg.Pod, "took", time.Since(start).Round(time.Millisecond))
}

// Stop closes every connection at once, failing in-flight calls (a hard kill).
func (s *Server) Stop() { s.srv.Stop() }

func (s *Server) ip() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.podIP
}

type echoService struct {
	echo.UnimplementedEchoServerServer
	s *Server
}

func (e *echoService) reply(name string, seq uint64) *echo.EchoReply {
	return &echo.EchoReply{
		Message: fmt.Sprintf("Hello %s from hostname %s", name, e.s.cfg.Pod),
		Pod:     e.s.cfg.Pod,
		PodIp:   e.s.ip(),
		Zone:    e.s.cfg.Zone,
		Seq:     seq,
	}
}

func (e *echoService) SayHello(ctx context.Context, req *echo.EchoRequest) (*echo.EchoReply, error) {
	if err := e.s.wait(ctx); err != nil {
		return nil, err
	}
	return e.reply(req.GetName(), 1), nil
}

func (e *echoService) SayHelloStream(req *echo.EchoRequest, stream grpc.ServerStreamingServer[echo.EchoReply]) error {
	count := uint64(req.GetCount())
	if count == 0 {
		count = DefaultStreamCount
	}
	if count > MaxStreamCount {
		return status.Errorf(codes.InvalidArgument, "count %d is over the maximum %d", count, MaxStreamCount)
	}
	if req.GetResumeAfter() > count { // also keeps seq from wrapping at 2^64-1
		return status.Errorf(codes.InvalidArgument, "resume_after %d is beyond count %d", req.GetResumeAfter(), count)
	}
	if n := uint64(len(req.GetName())) * (count - req.GetResumeAfter()); n > MaxStreamBytes {
		return status.Errorf(codes.InvalidArgument, "a name of %d bytes in %d messages is %d bytes, over the maximum %d per stream: send a shorter name or fewer messages",
			len(req.GetName()), count-req.GetResumeAfter(), n, MaxStreamBytes)
	}
	interval := time.Duration(req.GetIntervalMs()) * time.Millisecond
	if interval > MaxStreamInterval {
		return status.Errorf(codes.InvalidArgument, "interval %v is over the maximum %v", interval, MaxStreamInterval)
	}
	var aged <-chan time.Time
	var age time.Duration
	if e.s.cfg.MaxStreamAge > 0 {
		age = jitter(e.s.cfg.MaxStreamAge)
		t := time.NewTimer(age)
		defer t.Stop()
		aged = t.C
	}
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	if err := e.s.wait(stream.Context()); err != nil {
		return err
	}
	for seq := req.GetResumeAfter() + 1; seq <= count; seq++ {
		if tick != nil && seq > req.GetResumeAfter()+1 {
			select {
			case <-tick:
			case <-aged:
				return e.streamAgeEnd(stream, age, seq-1)
			case <-stream.Context().Done():
				return status.FromContextError(stream.Context().Err()).Err()
			}
		}
		select {
		case <-aged:
			return e.streamAgeEnd(stream, age, seq-1)
		default:
		}
		if err := stream.Send(e.reply(req.GetName(), seq)); err != nil {
			return err
		}
	}
	return nil
}

// jitter spreads d by ±10%.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((mrand.Float64()*0.2-0.1)*float64(d))
}

// streamAgeEnd ends a stream that reached its age with the stream-age status and trailer.
func (e *echoService) streamAgeEnd(stream grpc.ServerStreamingServer[echo.EchoReply], age time.Duration, last uint64) error {
	stream.SetTrailer(metadata.Pairs(echo.StreamAgeTrailer, age.Round(time.Millisecond).String()))
	e.s.metrics.streamAgeEnds.Inc()
	return status.Errorf(codes.Unavailable, "%s: stream reached its maximum age %v after seq %d; re-open with resume_after=%d",
		echo.StreamAgePrefix, age.Round(time.Millisecond), last, last)
}
