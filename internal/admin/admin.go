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

// Server is an admin HTTP server. Create it with New, start it with Serve.
type Server struct {
	mux    *http.ServeMux
	http   *http.Server
	ready  func() error
	grpc   *grpc.Server
	limits Limits
	wrap   func(http.Handler) http.Handler
}

// Option configures a Server.
type Option func(*Server)

// WithReadiness sets the readiness check behind /readyz: nil error means ready. Without it,
// /readyz follows /healthz.
func WithReadiness(ready func() error) Option { return func(s *Server) { s.ready = ready } }

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
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.ready != nil {
			if err := s.ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	for _, o := range opts {
		o(s)
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

// Serve serves on lis until ctx is done, then shuts down within grace.
func (s *Server) Serve(ctx context.Context, lis net.Listener, grace time.Duration, log *slog.Logger) error {
	return ServeHTTP(ctx, s.http, lis, grace, log)
}

// ServeHTTP runs srv on lis until ctx is done, then shuts it down gracefully within grace and
// closes what is left. It returns nil after a clean shutdown.
func ServeHTTP(ctx context.Context, srv *http.Server, lis net.Listener, grace time.Duration, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	// An unclean shutdown (connections cut after grace) is an error, not exit 0.
	var unclean error
	if err := srv.Shutdown(sctx); err != nil {
		if log != nil {
			log.Warn("http shutdown not clean, closing", "addr", lis.Addr().String(), "err", err)
		}
		srv.Close()
		unclean = fmt.Errorf("http %s: shutdown not clean within %v: %w", lis.Addr(), grace, err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http %s: %w", lis.Addr(), err)
	}
	return unclean
}
