package frontend

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/status"
)

type metrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "spread", Subsystem: "frontend", Name: "calls_total",
			Help: "gRPC calls made by the frontend, by mode, answering pod and status code.",
		}, []string{"mode", "pod", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "spread", Subsystem: "frontend", Name: "call_duration_seconds",
			Help:    "Latency of the frontend's gRPC calls (stream messages: time to each message).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"mode"}),
	}
	if r != nil {
		for _, c := range []prometheus.Collector{m.calls, m.duration} {
			if err := r.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(mode, pod string, err error, took time.Duration) {
	m.calls.WithLabelValues(mode, pod, status.Code(err).String()).Inc()
	m.duration.WithLabelValues(mode).Observe(took.Seconds())
}
