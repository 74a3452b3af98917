package tlsfiles

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reloads         *prometheus.CounterVec
	expiry          *prometheus.GaugeVec
	handshakeErrors *prometheus.CounterVec
}

// newMetrics creates the collectors, or reuses those another Store registered with r.
func newMetrics(r prometheus.Registerer, name string) (*metrics, error) {
	m := &metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "spread", Subsystem: "tls", Name: "reloads_total",
			Help: "Loads of changed TLS files, by result (success, error: the previous files stay in use).",
		}, []string{"name", "result"}),
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "spread", Subsystem: "tls", Name: "cert_expiry_timestamp_seconds",
			Help: "NotAfter of the certificate in use, as a Unix time.",
		}, []string{"name"}),
		handshakeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "spread", Subsystem: "tls", Name: "handshake_errors_total",
			Help: "Handshakes refused because the peer's certificate did not verify, by reason (no_certificate, unknown_authority, name_mismatch, expired, wrong_usage, invalid).",
		}, []string{"name", "reason"}),
	}
	if r != nil {
		var err error
		if m.reloads, err = register(r, m.reloads); err != nil {
			return nil, err
		}
		if m.expiry, err = register(r, m.expiry); err != nil {
			return nil, err
		}
		if m.handshakeErrors, err = register(r, m.handshakeErrors); err != nil {
			return nil, err
		}
	}
	// Make the series exist from the start, so dashboards and alerts see zeros.
	for _, res := range []string{"success", "error"} {
		m.reloads.WithLabelValues(name, res)
	}
	return m, nil
}

func register[C prometheus.Collector](r prometheus.Registerer, c C) (C, error) {
	err := r.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}
