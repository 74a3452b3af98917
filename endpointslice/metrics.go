package endpointslice

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	metricsNamespace = "spread"
	metricsSubsystem = "endpointslice"
)

// metrics are the Source's collectors. Without a Registerer they are still updated, just not
// exported.
type metrics struct {
	endpoints        *prometheus.GaugeVec     // target, health
	updates          *prometheus.CounterVec   // target
	lastUpdate       *prometheus.GaugeVec     // target
	watchesOpened    *prometheus.CounterVec   // namespace, service
	watchRestarts    *prometheus.CounterVec   // namespace, service
	watchErrors      *prometheus.CounterVec   // namespace, service
	programmingDelay *prometheus.HistogramVec // namespace, service
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		endpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "endpoints",
			Help: "Endpoints of a target (<service>.<namespace>:<port>) by health: healthy, draining or unhealthy.",
		}, []string{"target", "health"}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "updates_total",
			Help: "Endpoint sets published for a target (changes only, the first set included).",
		}, []string{"target"}),
		lastUpdate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "last_update_timestamp_seconds",
			Help: "Unix time of the last endpoint set published for a target.",
		}, []string{"target"}),
		watchesOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "watches_opened_total",
			Help: "EndpointSlice watch requests sent to the API server for a Service.",
		}, []string{"namespace", "service"}),
		watchRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "watch_restarts_total",
			Help: "EndpointSlice watches re-opened after the first one of an informer (timeouts, errors, API server restarts).",
		}, []string{"namespace", "service"}),
		watchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "watch_errors_total",
			Help: "EndpointSlice list or watch errors reported by the informer.",
		}, []string{"namespace", "service"}),
		programmingDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "programming_latency_seconds",
			Help:    "Time from an EndpointSlice's endpoints.kubernetes.io/last-change-trigger-time to the publication of the set it changed.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"namespace", "service"}),
	}
	if reg == nil {
		return m
	}
	m.endpoints = register(reg, m.endpoints)
	m.updates = register(reg, m.updates)
	m.lastUpdate = register(reg, m.lastUpdate)
	m.watchesOpened = register(reg, m.watchesOpened)
	m.watchRestarts = register(reg, m.watchRestarts)
	m.watchErrors = register(reg, m.watchErrors)
	m.programmingDelay = register(reg, m.programmingDelay)
	return m
}

// register registers c, or returns the collector already registered under the same
// description, so that several Sources may share one Registerer.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
