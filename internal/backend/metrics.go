package backend

import (
	"context"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

type metrics struct {
	calls    *prometheus.CounterVec
	inFlight prometheus.Gauge
	draining prometheus.Gauge
	// streamAgeEnds counts streams ended by MaxStreamAge.
	streamAgeEnds prometheus.Counter
	known         atomic.Pointer[map[string]bool]
	// conns is the connections open now; served the calls ended (for Server.Conns/Served).
	conns  atomic.Int64
	served atomic.Uint64
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "spread", Subsystem: "backend", Name: "calls_total",
			Help: "gRPC calls handled, by method and status code.",
		}, []string{"method", "code"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "spread", Subsystem: "backend", Name: "in_flight_calls",
			Help: "gRPC calls being handled now.",
		}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "spread", Subsystem: "backend", Name: "draining",
			Help: "1 while the backend drains (health NOT_SERVING), else 0.",
		}),
		streamAgeEnds: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "spread", Subsystem: "backend", Name: "stream_age_ends_total",
			Help: "SayHelloStream streams ended because they reached the maximum stream age.",
		}),
	}
	if r != nil {
		for _, c := range []prometheus.Collector{m.calls, m.inFlight, m.draining, m.streamAgeEnds} {
			if err := r.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	m.inFlight.Inc()
	defer m.inFlight.Dec()
	resp, err := h(ctx, req)
	m.count(ctx, info.FullMethod, err)
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	m.inFlight.Inc()
	defer m.inFlight.Dec()
	err := h(srv, ss)
	m.count(ss.Context(), info.FullMethod, err)
	return err
}

// count counts a call its interceptor saw, before its status is sent.
func (m *metrics) count(ctx context.Context, method string, err error) {
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		c.counted.Store(true)
	}
	m.calls.WithLabelValues(method, status.Code(err).String()).Inc()
}

// The interceptors count the calls their handlers answer. A call refused before its handler
// runs (a request over the size limit: ResourceExhausted) never reaches them, but it ends,
// and the metrics' stats.Handler counts it then.
var _ stats.Handler = (*metrics)(nil)

type callKey struct{}

type call struct {
	method  string
	counted atomic.Bool
}

// setMethods names the methods calls are counted under; any other name (a client may send
// any) is counted as "unknown", so a hostile client cannot grow the label set.
func (m *metrics) setMethods(g *grpc.Server) {
	known := map[string]bool{}
	for svc, info := range g.GetServiceInfo() {
		for _, md := range info.Methods {
			known["/"+svc+"/"+md.Name] = true
		}
	}
	m.known.Store(&known)
}

func (m *metrics) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	c := &call{method: "unknown"}
	if k := m.known.Load(); k != nil && (*k)[info.FullMethodName] {
		c.method = info.FullMethodName
	}
	return context.WithValue(ctx, callKey{}, c)
}

func (m *metrics) HandleRPC(ctx context.Context, s stats.RPCStats) {
	end, ok := s.(*stats.End)
	if !ok {
		return
	}
	m.served.Add(1)
	if c, ok := ctx.Value(callKey{}).(*call); ok && !c.counted.Load() {
		m.calls.WithLabelValues(c.method, status.Code(end.Error).String()).Inc()
	}
}

func (m *metrics) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (m *metrics) HandleConn(_ context.Context, s stats.ConnStats) {
	switch s.(type) {
	case *stats.ConnBegin:
		m.conns.Add(1)
	case *stats.ConnEnd:
		m.conns.Add(-1)
	}
}
