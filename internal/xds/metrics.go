package xds

import (
	"context"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/peer"
)

type metrics struct {
	clients        prometheus.Gauge
	pushes         *prometheus.CounterVec
	pushLatency    prometheus.Histogram
	resources      *prometheus.GaugeVec
	configErrors   *prometheus.CounterVec
	nacks          *prometheus.CounterVec
	nacking        *prometheus.GaugeVec
	snapshots      prometheus.Counter
	snapshotErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spread_xds_connected_clients", Help: "ADS streams currently open.",
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spread_xds_pushes_total", Help: "Discovery responses sent, by resource type.",
		}, []string{"type"}),
		pushLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spread_xds_push_latency_seconds",
			Help:    "Time from an endpoint change reaching the control plane to the snapshot that carries it being set (responses queued to every waiting client).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spread_xds_resources", Help: "Resources in the zone-less snapshot, by type (endpoint counts endpoints).",
		}, []string{"type"}),
		configErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spread_xds_config_errors_total", Help: "Service configurations rejected (the last good one is kept), by service and reason.",
		}, []string{"service", "reason"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spread_xds_nacks_total", Help: "Discovery requests that rejected the previous response, by type.",
		}, []string{"type"}),
		nacking: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spread_xds_nacking_clients", Help: "Connected clients whose latest answer for a type is a rejection (until they ACK again), by type.",
		}, []string{"type"}),
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spread_xds_snapshots_total", Help: "Per-zone snapshots set.",
		}),
		snapshotErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spread_xds_snapshot_errors_total", Help: "Snapshots refused by the consistency check (never sent).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.clients, m.pushes, m.pushLatency, m.resources, m.configErrors, m.nacks, m.nacking, m.snapshots, m.snapshotErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// shortType names a type URL for metrics, logs and ClientStatus: listener, route, cluster,
// endpoint; any other type by its lower-cased message name.
func shortType(url string) string {
	for t, u := range typeURLs {
		if u == url {
			return typeNames[t]
		}
	}
	i := strings.LastIndex(url, ".")
	return strings.ToLower(url[i+1:])
}

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(ctx context.Context, id int64, _ string) error {
			s.m.clients.Inc()
			s.clients.open(id)
			if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
				s.peers.set(id, p.Addr.String())
			}
			return nil
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) {
			s.m.clients.Dec()
			s.clients.closed(id)
			s.peers.drop(id)
			s.updateNacking()
		},
		StreamRequestFunc: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			if n, ok := s.clients.request(id, req); ok {
				s.m.nacks.WithLabelValues(n.Type).Inc()
				s.log.Warn("xds: client rejected a response (NACK)", "node", n.NodeID, "zone", n.Zone, "user_agent", n.UserAgent,
					"type", n.Type, "version", n.Version, "resources", n.Resources, "err", n.Error)
				s.updateNacking()
			} else if req.GetResponseNonce() != "" {
				s.updateNacking() // an ACK may end a rejection
			}
			s.admitZone(req.GetNode().GetLocality().GetZone())
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			s.m.pushes.WithLabelValues(shortType(resp.GetTypeUrl())).Inc()
			s.clients.response(id, resp)
		},
	}
}

// updateNacking sets spread_xds_nacking_clients from the tracker.
func (s *Server) updateNacking() {
	by := s.clients.nackingByType()
	for _, t := range []string{"listener", "route", "cluster", "endpoint"} {
		s.m.nacking.WithLabelValues(t).Set(float64(by[t]))
	}
}
