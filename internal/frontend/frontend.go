// Package frontend is the sample's HTTP app, generalised: for each balancing mode it holds ONE
// long-lived gRPC connection (created with grpc.NewClient at start, closed at shutdown), and
// GET /call/{mode} makes N calls over it and reports which pods answered. /backend and
// /backendlb keep the sample's routes and JSON shape.
//
// The package serves calls only: it does not import the dashboard. The live page
// (internal/dashboard) is composed beside it by the programs that want it (`spread frontend`,
// `spread demo`): it is fed through WithObserver, reads ModeStates and CallOnce, and
// dashboard.Handler serves both on one mux (with Register, ServeIndex and NotFound).
package frontend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/connect"
)

func validName(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// DefaultRequestTimeout is Config.RequestTimeout's default.
const DefaultRequestTimeout = 60 * time.Second

// DefaultConfig returns the values New gives zero fields, declared once: `spread frontend`'s
// flags show them.
func DefaultConfig() Config {
	return Config{CallTimeout: 5 * time.Second, RequestTimeout: DefaultRequestTimeout}
}

// Config configures a frontend.
type Config struct {
	// Name is the frontend's identity in replies (default: $POD_NAME or the hostname).
	Name string
	// Modes are the balancing modes served, in display order.
	Modes []connect.Mode
	// Creds are the transport credentials to the backends (default: insecure).
	Creds credentials.TransportCredentials
	// CallTimeout bounds each gRPC call (default 5s).
	CallTimeout time.Duration
	// RequestTimeout bounds one HTTP request's whole work (default 60s); requests whose
	// n × interval would exceed it are refused up front.
	RequestTimeout time.Duration
}

// Option configures a Frontend beyond its Config.
type Option func(*options)

type options struct {
	log        *slog.Logger
	registerer prometheus.Registerer
	observers  []Observer
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithRegisterer registers the frontend's metrics with r.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// Observer is told about every call the frontend makes (for dashboards). It must be fast and
// may be called concurrently.
type Observer interface {
	ObserveCall(mode, pod string, err error, took time.Duration)
}

// WithObserver adds an Observer.
func WithObserver(ob Observer) Option {
	return func(o *options) { o.observers = append(o.observers, ob) }
}

// Frontend serves the HTTP API. Create with New; Close releases its connections.
type Frontend struct {
	cfg     Config
	log     *slog.Logger
	modes   map[string]*mode
	order   []string
	metrics *metrics
	obs     []Observer
	mux     *http.ServeMux

	closeOnce     sync.Once
	interrupt     chan struct{} // closed by Interrupt
	interruptOnce sync.Once
}

// ErrInterrupted is the cause of a request's context when Interrupt cuts it.
var ErrInterrupted = errors.New("frontend: request interrupted by shutdown")

// Interrupt cuts the calls of every request in flight: each still answers, with what it got
// so far, its cut calls as errors and "interrupted": true. Call it during shutdown, before
// the server's grace runs out (an http.Server cut by Close sends no answer at all).
func (f *Frontend) Interrupt() { f.interruptOnce.Do(func() { close(f.interrupt) }) }

type mode struct {
	connect.Mode
	conn *grpc.ClientConn
	opts []grpc.DialOption
}

// New validates cfg and creates one client connection per mode. Connections start connecting
// at once, so the first request does not pay for it.
func New(cfg Config, opts ...Option) (*Frontend, error) {
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if cfg.Name == "" {
		cfg.Name = defaultName()
	}
	if cfg.Creds == nil {
		cfg.Creds = insecure.NewCredentials()
	}
	d := DefaultConfig()
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = d.CallTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = d.RequestTimeout
	}
	if len(cfg.Modes) == 0 {
		return nil, errors.New("frontend: no modes configured")
	}
	m, err := newMetrics(o.registerer)
	if err != nil {
		return nil, err
	}
	f := &Frontend{cfg: cfg, log: o.log, modes: map[string]*mode{}, metrics: m, obs: slices.Clone(o.observers), interrupt: make(chan struct{})}
	for _, md := range cfg.Modes {
		if !validName(md.Name) {
			f.Close()
			return nil, fmt.Errorf("frontend: mode name %q: use lowercase letters, digits and dashes", md.Name)
		}
		if _, dup := f.modes[md.Name]; dup {
			f.Close()
			return nil, fmt.Errorf("frontend: mode %q given twice", md.Name)
		}
		if md.Policy != "" && md.Policy != connect.PickFirst && md.Policy != connect.RoundRobin {
			f.Close()
			return nil, fmt.Errorf("frontend: mode %q: policy %q: want %s or %s", md.Name, md.Policy, connect.PickFirst, connect.RoundRobin)
		}
		if err := md.CheckScheme(); err != nil {
			f.Close()
			return nil, fmt.Errorf("frontend: mode %q: target %q: %w", md.Name, md.Target, err)
		}
		dopts := md.ClientOptions(cfg.Creds)
		conn, err := grpc.NewClient(md.Target, dopts...)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("frontend: mode %q: target %q: %w", md.Name, md.Target, err)
		}
		conn.Connect()
		f.modes[md.Name] = &mode{Mode: md, conn: conn, opts: dopts}
		f.order = append(f.order, md.Name)
	}
	f.routes()
	return f, nil
}

func defaultName() string {
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "frontend"
}

// Handler returns the HTTP handler of the frontend alone: the JSON index at /, the call
// routes, and 404/405 answers for everything else.
func (f *Frontend) Handler() http.Handler { return f.mux }

// Modes lists the mode names in display order.
func (f *Frontend) Modes() []string { return slices.Clone(f.order) }

// Name is the frontend's identity in replies.
func (f *Frontend) Name() string { return f.cfg.Name }

// Close closes every connection. It is safe to call more than once. Close what uses the
// frontend's connections (a dashboard's loads) first.
func (f *Frontend) Close() error {
	var errs []error
	f.closeOnce.Do(func() {
		for _, m := range f.modes {
			errs = append(errs, m.conn.Close())
		}
	})
	return errors.Join(errs...)
}

func (f *Frontend) observe(mode, pod string, err error, took time.Duration) {
	f.metrics.observe(mode, pod, err, took)
	for _, o := range f.obs {
		o.ObserveCall(mode, pod, err, took)
	}
}

// client returns the mode's long-lived connection, or a fresh one (to be closed by the
// caller) when fresh is set, as the sample's code dialled per request.
func (m *mode) client(fresh bool) (echo.EchoServerClient, func(), error) {
	if !fresh {
		return echo.NewEchoServerClient(m.conn), func() {}, nil
	}
	conn, err := grpc.NewClient(m.Target, m.opts...)
	if err != nil {
		return nil, nil, err
	}
	return echo.NewEchoServerClient(conn), func() { conn.Close() }, nil
}

// callCtx bounds a call by the frontend's call timeout and the request's context.
func (f *Frontend) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, f.cfg.CallTimeout)
}
