package dnsrefresh

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the collectors of one Builder, shared by its resolvers. A nil *metrics records
// nothing.
type metrics struct {
	lookups     *prometheus.CounterVec
	addresses   *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec

	mu   sync.Mutex
	refs map[string]int // live resolvers per target label
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{refs: make(map[string]int)}
	var err error
	if m.lookups, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "spread", Subsystem: "dnsrefresh", Name: "lookups_total",
		Help: "DNS lookups of a dns+refresh target, by result (success, nxdomain, nodata, servfail, timeout, error).",
	}, []string{"target", "result"})); err != nil {
		return nil, err
	}
	if m.addresses, err = register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "spread", Subsystem: "dnsrefresh", Name: "addresses",
		Help: "Addresses of a dns+refresh target last handed to gRPC.",
	}, []string{"target"})); err != nil {
		return nil, err
	}
	if m.lastSuccess, err = register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "spread", Subsystem: "dnsrefresh", Name: "last_success_timestamp_seconds",
		Help: "Unix time of the last lookup of a dns+refresh target that DNS answered (with addresses or an authoritative empty answer).",
	}, []string{"target"})); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the identical collector already registered (by another
// Builder on the same registerer).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		var zero C
		return zero, fmt.Errorf("dnsrefresh: register metrics: %w", err)
	}
	return c, nil
}

// acquire notes a live resolver for target; release undoes it and drops the target's series
// when the last one goes, so that closed clients do not leave stale gauges behind.
func (m *metrics) acquire(target string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refs[target]++
}

func (m *metrics) release(target string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refs[target]--
	if m.refs[target] > 0 {
		return
	}
	delete(m.refs, target)
	m.lookups.DeletePartialMatch(prometheus.Labels{"target": target})
	m.addresses.DeleteLabelValues(target)
	m.lastSuccess.DeleteLabelValues(target)
}

func (m *metrics) lookup(target, result string) {
	if m != nil {
		m.lookups.WithLabelValues(target, result).Inc()
	}
}

func (m *metrics) success(target string, now time.Time) {
	if m != nil {
		m.lastSuccess.WithLabelValues(target).Set(float64(now.UnixNano()) / 1e9)
	}
}

func (m *metrics) setAddresses(target string, n int) {
	if m != nil {
		m.addresses.WithLabelValues(target).Set(float64(n))
	}
}
