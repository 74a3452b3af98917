package backend

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

type metrics struct {
	calls    *prometheus.CounterVec
	inFlight prometheus.Gauge
	draining prometheus.Gauge
	// streamAgeEnds counts streams ended by MaxStreamAge.
	streamAgeEnds prometheus.Counter
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
	m.calls.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	m.inFlight.Inc()
	defer m.inFlight.Dec()
	err := h(srv, ss)
	m.calls.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return err
}
