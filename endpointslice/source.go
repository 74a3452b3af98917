// Package endpointslice is Spread's Kubernetes endpoint source: it watches the
// discovery.k8s.io/v1 EndpointSlices of Services with client-go informers, merges all slices of
// a Service, resolves the wanted port in each slice and publishes one endpoint.Set per
// Service port (endpoint.Key).
//
// One informer (one API-server watch, label selector kubernetes.io/service-name=<service>)
// serves every subscriber of a Service, whatever port they ask for; it starts with the first
// subscriber and stops when the last one leaves. A Source needs exactly list and watch on
// endpointslices in the namespaces it is asked about (see deploy/rbac/resolver-role.yaml).
//
// Subscribers get the current set first (once the informer has synced), then every change,
// including the empty set when a Service has no endpoints left.
package endpointslice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/listwatch"
)

var _ endpoint.Source = (*Source)(nil)

// ErrClosed is returned by Subscribe after Close.
var ErrClosed = errors.New("endpointslice: source closed")

// Option configures a Source.
type Option func(*config)

type config struct {
	log    *slog.Logger
	reg    prometheus.Registerer
	resync time.Duration
	now    func() time.Time

	errEvery time.Duration
}

// WithLogger sets the logger for watch errors and restarts (default: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.log = l
		}
	}
}

// WithRegisterer registers the Source's metrics (spread_endpointslice_*) with reg. Without
// it, no metric is exported. Several Sources may share one Registerer: they then share the
// collectors too.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(c *config) { c.reg = reg }
}

// WithErrorLogEvery sets the least interval between two Warn lines about failing list or
// watch calls, over all the Source's Services (default 30 s); every failure is logged at
// Debug, and the first success after a Warn at Info.
func WithErrorLogEvery(d time.Duration) Option {
	return func(c *config) { c.errEvery = d }
}

// WithResync sets the informers' resync period (default 0: none; the watch alone keeps the
// cache current, and every set is recomputed from the whole cache anyway).
func WithResync(d time.Duration) Option {
	return func(c *config) { c.resync = d }
}

// Source watches EndpointSlices and publishes endpoint sets; it implements endpoint.Source.
// Its methods may be called concurrently. Create it with New; stop it with Close.
type Source struct {
	client kubernetes.Interface
	log    *slog.Logger
	resync time.Duration
	now    func() time.Time
	m      *metrics
	errors *listwatch.Reporter // of every watch: one Warn line per interval, whatever the Service

	ctx    context.Context // done after Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the Source started

	mu      sync.Mutex
	closed  bool
	watches map[serviceID]*serviceWatch
}

// New returns a Source reading EndpointSlices through client. It starts nothing until the
// first Subscribe.
func New(client kubernetes.Interface, opts ...Option) *Source {
	cfg := config{log: slog.Default(), now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Source{
		client:  client,
		log:     cfg.log,
		resync:  cfg.resync,
		now:     cfg.now,
		m:       newMetrics(cfg.reg),
		errors:  listwatch.NewReporter(cfg.log, "endpointslices", listwatch.WithEvery(cfg.errEvery)),
		ctx:     ctx,
		cancel:  cancel,
		watches: make(map[serviceID]*serviceWatch),
	}
}

// Subscribe calls fn with the current endpoint set of key, then with each change, from one
// goroutine, until ctx is done or the Source is closed. fn must not modify the set.
//
// Subscribe blocks until the Service's EndpointSlices have been listed, so that the first set
// fn gets is the real current state (possibly empty). It returns an error, and no
// subscription, when that first list fails (for example Forbidden when RBAC does not allow
// list+watch on endpointslices, or a refused connection), or when ctx ends first. After that
// first list, watch errors are retried by the informer with backoff and the last known set
// stays current. Failing calls are logged: a Warn line at most every 30 s
// (WithErrorLogEvery), each at Debug.
//
// wait blocks until delivery has stopped (after ctx is done) and the Service's watch is
// released.
func (s *Source) Subscribe(ctx context.Context, key endpoint.Key, fn func(endpoint.Set)) (wait func(), err error) {
	if key.Namespace == "" || key.Service == "" || key.Port == "" {
		return nil, fmt.Errorf("endpointslice: subscribe %q: namespace, service and port are required", key)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("endpointslice: watch %s: %w", key, context.Cause(ctx))
	}
	id := serviceID{namespace: key.Namespace, service: key.Service}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	w := s.watches[id]
	if w == nil {
		w = s.startWatch(id)
		s.watches[id] = w
	}
	w.refs++
	s.wg.Add(1) // the subscription's goroutine below, or the early return
	s.mu.Unlock()

	fail := func(err error) (func(), error) {
		s.release(w)
		s.wg.Done()
		return nil, fmt.Errorf("endpointslice: watch %s: %w", key, err)
	}
	select {
	case <-w.synced:
		if w.err != nil {
			return fail(w.err)
		}
	case <-ctx.Done():
		return fail(context.Cause(ctx))
	case <-s.ctx.Done():
		return fail(ErrClosed)
	}

	subCtx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(s.ctx, cancel)
	waitPub, err := w.subscribe(subCtx, key, fn)
	if err != nil {
		stopOnClose()
		cancel()
		if s.ctx.Err() != nil {
			err = ErrClosed
		}
		return fail(err)
	}
	done := make(chan struct{})
	go func() {
		defer s.wg.Done()
		defer close(done)
		waitPub()
		stopOnClose()
		cancel()
		w.unsubscribe(key.Port)
		s.release(w)
	}()
	return func() { <-done }, nil
}

// release drops one reference to w and stops its informer (waiting for it) with the last one.
func (s *Source) release(w *serviceWatch) {
	s.mu.Lock()
	w.refs--
	last := w.refs == 0
	if last && s.watches[w.id] == w {
		delete(s.watches, w.id)
	}
	s.mu.Unlock()
	if last {
		w.stop()
	}
}

// Close stops every watch and subscription and waits for all of the Source's goroutines.
func (s *Source) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// activeWatches counts the Services watched right now.
func (s *Source) activeWatches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.watches)
}
