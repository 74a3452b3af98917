package hedge

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Client's Prometheus collectors, labelled by gRPC method.
type metrics struct {
	calls     *prometheus.CounterVec
	attempts  *prometheus.CounterVec
	wins      *prometheus.CounterVec
	exhausted *prometheus.CounterVec
}

func newMetrics() metrics {
	return metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "spread", Subsystem: "hedge", Name: "calls_total",
			Help: "Calls handled by the hedging interceptors.",
		}, []string{"method"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "spread", Subsystem: "hedge", Name: "attempts_total",
			Help: "Attempts sent, by kind (first, hedge, retry).",
		}, []string{"method", "kind"}),
		wins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "spread", Subsystem: "hedge", Name: "wins_total",
			Help: "Calls answered, by the kind of the attempt that answered (first, hedge, retry).",
		}, []string{"method", "kind"}),
		exhausted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "spread", Subsystem: "hedge", Name: "budget_exhausted_total",
			Help: "Calls that wanted an extra attempt (hedge, retry) the budget had no token for.",
		}, []string{"method"}),
	}
}

func (m metrics) register(r prometheus.Registerer) error {
	var errs []error
	for _, c := range []prometheus.Collector{m.calls, m.attempts, m.wins, m.exhausted} {
		errs = append(errs, r.Register(c))
	}
	return errors.Join(errs...)
}
