package fairshare

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	conns, share, mean                  prometheus.Gauge
	sheds, refusals, rounds, peerErrors prometheus.Counter
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "spread", Subsystem: "fairshare", Name: name, Help: help})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "spread", Subsystem: "fairshare", Name: name, Help: help})
	}
	m := &metrics{
		conns:      g("connections", "Client connections held (not counting shed ones that drain)."),
		share:      g("share_connections", "This backend's fair share of connections, from the last round."),
		mean:       g("mean_connections", "Mean connections per backend of the Service, from the last round."),
		sheds:      c("sheds_total", "Connections shed (GOAWAY) because this backend was above its share."),
		refusals:   c("refusals_total", "New connections turned away (GOAWAY before any call) while another pod was below its share."),
		rounds:     c("rounds_total", "Balancing rounds run."),
		peerErrors: c("peer_errors_total", "Rounds skipped because the peers' counts could not be read."),
	}
	if r != nil {
		for _, col := range []prometheus.Collector{m.conns, m.share, m.mean, m.sheds, m.refusals, m.rounds, m.peerErrors} {
			if err := r.Register(col); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
