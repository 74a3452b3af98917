// Package admin serves the operational HTTP endpoints every Spread server exposes on its own
// address: Prometheus /metrics, /healthz (the process is alive) and /readyz (it can do its
// job right now, as reported by a readiness function), plus optional extra handlers.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
)

// NewRegistry returns the registry a binary's /metrics serves: its own (no global state),
// with the Go runtime and process collectors every Spread binary exposes.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Server is an admin HTTP server. Create it with New; open its address with Listen and run it
// with Start (or Serve, which blocks). Every Spread command runs its admin server this way.
type Server struct {
	mux    *http.ServeMux
	http   *http.Server
	ready  func() error
	readyH http.Handler
	grpc   *grpc.Server
	limits Limits
	wrap   func(http.Handler) http.Handler
}

// Option configures a Server.
type Option func(*Server)

// WithReadiness sets the readiness check behind /readyz: nil error means ready. Without it,
// /readyz follows /healthz.
func WithReadiness(ready func() error) Option { return func(s *Server) { s.ready = ready } }

// WithReadyHandler serves /readyz with h instead of a readiness function (for a component
// that already has its own readiness handler, such as the xDS control plane's).
func WithReadyHandler(h http.Handler) Option { return func(s *Server) { s.readyH = h } }

// WithGRPC also serves g on the admin address: HTTP/2 requests (unencrypted, with prior
// knowledge, as gRPC tools dial) whose content type is application/grpc go to g, the rest
// to the HTTP endpoints. Meant for grpc-go's admin services (google.golang.org/grpc/admin:
// channelz, and CSDS when the xDS package is linked), so that `grpcdebug <addr> channelz` and
// `grpcdebug <addr> xds status` work against the admin port. The caller stops g.
func WithGRPC(g *grpc.Server) Option { return func(s *Server) { s.grpc = g } }

// WithLimits sets the server's limits (default DefaultLimits).
func WithLimits(l Limits) Option { return func(s *Server) { s.limits = l } }

// WithWrap wraps the whole handler (for example in a guard.Guard).
func WithWrap(wrap func(http.Handler) http.Handler) Option { return func(s *Server) { s.wrap = wrap } }

// WithHandler mounts an extra handler (for example a debug dump) on pattern.
func WithHandler(pattern string, h http.Handler) Option {
	return func(s *Server) { s.mux.Handle(pattern, h) }
}

// New returns an admin server exposing the metrics gathered by g.
func New(g prometheus.Gatherer, opts ...Option) *Server {
	s := &Server{mux: http.NewServeMux(), limits: DefaultLimits()}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	for _, o := range opts {
		o(s)
	}
	if s.readyH != nil {
		s.mux.Handle("GET /readyz", s.readyH)
	} else {
		s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			if s.ready != nil {
				if err := s.ready(); err != nil {
					http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
					return
				}
			}
			fmt.Fprintln(w, "ok")
		})
	}
	s.http = NewHTTPServer(s.Handler(), s.limits)
	if s.grpc != nil {
		s.http.Protocols = new(http.Protocols)
		s.http.Protocols.SetHTTP1(true)
		s.http.Protocols.SetUnencryptedHTTP2(true)
	}
	return s
}

// Handler returns the server's handler (for tests and embedding).
func (s *Server) Handler() http.Handler {
	var h http.Handler = s.mux
	if s.grpc != nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				s.grpc.ServeHTTP(w, r)
				return
			}
			s.mux.ServeHTTP(w, r)
		})
	}
	if s.wrap != nil {
		h = s.wrap(h)
	}
	return h
}

// Disabled is the address value that turns an admin server off, in every command's
// --admin-addr.
const Disabled = "-"

// Listen opens addr for an admin server. Disabled ("-") and "" mean no admin server: Listen
// returns a nil listener and no error, and Start with it serves nothing.
func Listen(addr string) (net.Listener, error) {
	if addr == "" || addr == Disabled {
		return nil, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", addr, err)
	}
	return lis, nil
}

// Running is an admin server started by Start.
type Running struct {
	addr net.Addr
	done chan struct{}
	err  error
}

// Start serves s on lis in the background until ctx is done, then shuts it down within grace
// (see ServeHTTP). With a nil lis (a disabled admin server) it serves nothing. The caller
// waits for the end with Wait; the context is what stops it, so a command can keep its admin
// server up after its main work (a backend's /readyz reports the drain) by giving it a
// context of its own.
func (s *Server) Start(ctx context.Context, lis net.Listener, grace time.Duration, log *slog.Logger) *Running {
	if lis == nil {
		return &Running{}
	}
	return StartHTTP(ctx, s.http, lis, grace, log)
}

// StartHTTP is Start for any HTTP server (a command's main server): it runs ServeHTTP in the
// background.
func StartHTTP(ctx context.Context, srv *http.Server, lis net.Listener, grace time.Duration, log *slog.Logger) *Running {
	r := &Running{addr: lis.Addr(), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = ServeHTTP(ctx, srv, lis, grace, log)
	}()
	return r
}

// Addr is the address served, or nil when the admin server is disabled.
func (r *Running) Addr() net.Addr { return r.addr }

// Done is closed when the server has stopped: after its shutdown, or early if serving failed.
// A disabled server's Done is nil, so a select on it wakes only for a server that ran.
func (r *Running) Done() <-chan struct{} { return r.done }

// Wait waits for the server to stop and returns why: nil after a clean shutdown (or at once
// when disabled), an error if serving failed or the shutdown was not clean within the grace.
func (r *Running) Wait() error {
	if r.done == nil {
		return nil
	}
	<-r.done
	return r.err
}

// Serve serves on lis until ctx is done, then shuts down within grace.
func (s *Server) Serve(ctx context.Context, lis net.Listener, grace time.Duration, log *slog.Logger) error {
	return ServeHTTP(ctx, s.http, lis, grace, log)
}

// ServeHTTP runs srv on lis until ctx is done, then shuts it down gracefully within grace and
// closes what is left. It returns nil after a clean shutdown: every request answered. A
// connection that never sent a byte of a request (one a client's pool dialed and kept unused;
// http.Server waits up to 5 s for those) is closed at the grace without making it unclean,
// since nothing on it is lost.
func ServeHTTP(ctx context.Context, srv *http.Server, lis net.Listener, grace time.Duration, log *slog.Logger) error {
	states := &connStates{next: srv.ConnState, state: map[net.Conn]http.ConnState{}}
	srv.ConnState = states.track
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(readListener{lis}) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// An unclean shutdown (requests cut after grace) is an error, not exit 0.
	var unclean error
	if err := srv.Shutdown(sctx); err != nil {
		active := states.active()
		srv.Close()
		if active > 0 {
			if log != nil {
				log.Warn("http shutdown not clean, closing", "addr", lis.Addr().String(), "active", active, "err", err)
			}
			unclean = fmt.Errorf("http %s: shutdown not clean within %v: %d connections with a request: %w", lis.Addr(), grace, active, err)
		} else if log != nil {
			log.Debug("http shutdown: closed connections that sent no request", "addr", lis.Addr().String())
		}
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http %s: %w", lis.Addr(), err)
	}
	return unclean
}

// readListener's connections remember whether they have read anything.
type readListener struct{ net.Listener }

func (l readListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &readConn{Conn: c}, nil
}

type readConn struct {
	net.Conn
	read atomic.Bool
}

func (c *readConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.read.Store(true)
	}
	return n, err
}

// connStates follows each connection's state for ServeHTTP, then calls the server's own
// ConnState hook (NewHTTPServer's connection cap).
type connStates struct {
	next  func(net.Conn, http.ConnState)
	mu    sync.Mutex
	state map[net.Conn]http.ConnState
}

func (c *connStates) track(conn net.Conn, st http.ConnState) {
	c.mu.Lock()
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(c.state, conn)
	default:
		c.state[conn] = st
	}
	c.mu.Unlock()
	if c.next != nil {
		c.next(conn, st)
	}
}

// active counts the open connections that are serving a request or have sent part of one:
// all but the idle ones and those that never sent a byte (net/http reports a connection
// reading its first request's headers as new until they are complete).
func (c *connStates) active() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for conn, st := range c.state {
		rc, ok := conn.(*readConn)
		if st == http.StateActive || st == http.StateNew && (!ok || rc.read.Load()) {
			n++
		}
	}
	return n
}
