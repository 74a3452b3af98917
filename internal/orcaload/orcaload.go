// Package orcaload makes a gRPC server report its load with ORCA, the way clients using
// weighted_round_robin need: per call in trailers, and out of band on the OpenRcaService.
//
// A backend reports rps_fractional (the calls per second it measures) and
// application_utilization = base + rate/capacity. grpc-go's weighted_round_robin weighs a
// backend by rps/utilization, so at equal base the weight is the capacity: a backend with
// half the capacity (it reports double the utilization at the same rate) gets half the
// share. Utilization has to grow with the rate: a fixed utilization with a measured rate
// feeds back (more calls → higher weight → more calls).
//
//	r, err := orcaload.New(orcaload.WithCapacity(1000))
//	srv := grpc.NewServer(r.ServerOptions()...)
//	if err := r.Register(srv); err != nil { ... }
package orcaload

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/orca"
)

// Option configures a Reporter.
type Option func(*options)

type options struct {
	capacity float64
	base     float64
	window   time.Duration
	interval time.Duration
	now      func() time.Time
}

// WithCapacity sets the calls per second at which the backend is fully utilised (default
// 1000). Must be > 0.
func WithCapacity(callsPerSecond float64) Option {
	return func(o *options) { o.capacity = callsPerSecond }
}

// WithBaseUtilization adds a fixed utilization (load from elsewhere) to the reported one.
func WithBaseUtilization(u float64) Option { return func(o *options) { o.base = u } }

// WithWindow sets the window the call rate is measured over (default 1s).
func WithWindow(d time.Duration) Option { return func(o *options) { o.window = d } }

// WithClock injects time (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

const buckets = 10

// Reporter measures the call rate and serves it as ORCA load reports. It implements
// orca.ServerMetricsProvider. Its methods may be called concurrently.
type Reporter struct {
	o     options
	mu    sync.Mutex
	start time.Time
	slot  int64            // index of the newest bucket (time / bucket width)
	count [buckets]float64 // ring of per-bucket call counts
}

var _ orca.ServerMetricsProvider = (*Reporter)(nil)

// New returns a Reporter.
func New(opts ...Option) (*Reporter, error) {
	o := options{capacity: 1000, window: time.Second, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if o.capacity <= 0 {
		return nil, errors.New("orcaload: capacity must be > 0")
	}
	if o.base < 0 {
		return nil, errors.New("orcaload: base utilization must be ≥ 0")
	}
	if o.window <= 0 {
		return nil, errors.New("orcaload: window must be > 0")
	}
	now := o.now()
	return &Reporter{o: o, start: now, slot: now.UnixNano() / int64(o.window/buckets)}, nil
}

// advanceLocked moves the ring to now, zeroing buckets that fell out of the window.
func (r *Reporter) advanceLocked(now time.Time) {
	slot := now.UnixNano() / int64(r.o.window/buckets)
	for i := r.slot + 1; i <= slot && i <= r.slot+buckets; i++ {
		r.count[i%buckets] = 0
	}
	if slot > r.slot {
		r.slot = slot
	}
}

// Record counts one call.
func (r *Reporter) Record() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advanceLocked(r.o.now())
	r.count[r.slot%buckets]++
}

// Rate returns the calls per second over the last window (or since start, if shorter).
func (r *Reporter) Rate() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.o.now()
	r.advanceLocked(now)
	var n float64
	for _, c := range r.count {
		n += c
	}
	span := min(now.Sub(r.start), r.o.window)
	if span < r.o.window/buckets {
		span = r.o.window / buckets
	}
	return n / span.Seconds()
}

// ServerMetrics is the current load report.
func (r *Reporter) ServerMetrics() *orca.ServerMetrics {
	rate := r.Rate()
	return &orca.ServerMetrics{
		CPUUtilization: -1,
		MemUtilization: -1,
		AppUtilization: r.o.base + rate/r.o.capacity,
		QPS:            rate,
		EPS:            -1,
		Utilization:    map[string]float64{},
		RequestCost:    map[string]float64{},
		NamedMetrics:   map[string]float64{},
	}
}

// ServerOptions make a server count calls and attach the load report to every call's
// trailers. Pass them to grpc.NewServer (after other interceptors is fine).
func (r *Reporter) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		orca.CallMetricsServerOption(r),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			r.touch(ctx)
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			r.touch(ss.Context())
			return h(srv, ss)
		}),
	}
}

// touch counts the call and asks for its recorder: grpc-go only writes the trailer report
// for calls that did.
func (r *Reporter) touch(ctx context.Context) {
	r.Record()
	orca.CallMetricsRecorderFromContext(ctx)
}

// Register adds the out-of-band ORCA service (OpenRcaService) to s.
func (r *Reporter) Register(s grpc.ServiceRegistrar) error {
	if err := orca.Register(s, orca.ServiceOptions{ServerMetricsProvider: r, MinReportingInterval: r.o.interval}); err != nil {
		return fmt.Errorf("orcaload: register ORCA service: %w", err)
	}
	return nil
}
