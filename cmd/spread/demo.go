package main

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/demo"
)

func runDemo(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("demo", e)
	setUsage(fs, e, demoUsage)
	// The defaults are the library's, declared once there; only the xDS address differs: the
	// command serves on the well-known port, the library on a free one.
	cfg := demo.DefaultConfig()
	cfg.Cluster.XDSAddr = "127.0.0.1:18000"
	fs.IntVar(&cfg.Cluster.Replicas, "replicas", cfg.Cluster.Replicas, fmt.Sprintf("backend pods, 1 to %d", cluster.MaxReplicas))
	firstIP := fs.String("first-pod-ip", cfg.Cluster.FirstPodIP.String(), "first pod's address; pod i listens on first+i (loopback only)")
	fs.IntVar(&cfg.Cluster.PodPort, "pod-port", cfg.Cluster.PodPort, "gRPC port of every pod and of the Services (0 picks a free one)")
	fs.StringVar(&cfg.Cluster.VIP, "vip", cfg.Cluster.VIP, "ClusterIP VIP ip:port (default 127.96.0.10:<pod-port>)")
	fs.StringVar(&cfg.Cluster.DNSAddr, "dns-addr", cfg.Cluster.DNSAddr, "cluster DNS address (UDP and TCP)")
	fs.StringVar(&cfg.Cluster.XDSAddr, "xds-addr", cfg.Cluster.XDSAddr, `the demo's xDS control plane address ("-" disables it and the xds mode)`)
	fs.DurationVar(&cfg.Cluster.DNSTTL, "dns-ttl", cfg.Cluster.DNSTTL, "TTL of the cluster DNS answers")
	fs.DurationVar(&cfg.Cluster.Grace, "pod-grace", cfg.Cluster.Grace, "bound on each pod's drain")
	fs.DurationVar(&cfg.Cluster.EndpointDelay, "endpoint-delay", 0, "how long pod changes take to reach endpoints, DNS and resolvers (EndpointSlice propagation)")
	fs.DurationVar(&cfg.Cluster.PreStop, "prestop", 0, "how long a deleted pod serves before draining (default: --endpoint-delay)")
	fs.DurationVar(&cfg.Cluster.RestartDelay, "restart-delay", cfg.Cluster.RestartDelay, "how long a killed pod takes to restart")
	fs.DurationVar(&cfg.Cluster.MaxConnectionAge, "max-connection-age", 0, "every pod's server-side MaxConnectionAge (adds the headless-mca mode); 0 = never")
	fs.DurationVar(&cfg.Cluster.MaxStreamAge, "max-stream-age", 0, "end every pod's streams after this age (±10%) so resuming clients re-balance; 0 = never")
	fs.DurationVar(&cfg.Cluster.FairShareInterval, "fair-share-interval", 0, "pods shed client connections above their fair share in rounds this long (as spread backend --fair-share-*; try with --clusterip-clients 40, then scale up); 0 = off")
	fs.IntVar(&cfg.Clients.N, "clusterip-clients", 0, fmt.Sprintf("run this many separate ClusterIP clients, one long-lived connection each through the VIP (0 to %d); the dashboard's pod table shows their connections per pod", demo.MaxClusterIPClients))
	fs.Float64Var(&cfg.Clients.Rate, "clusterip-client-rate", demo.DefaultClusterIPRate, fmt.Sprintf("calls per second of each --clusterip-clients client (at most %v)", demo.MaxClusterIPClientRate))
	fs.DurationVar(&cfg.Clients.For, "clusterip-clients-for", demo.DefaultClusterIPFor, fmt.Sprintf("how long the --clusterip-clients run, then stop (at most %v)", demo.MaxClusterIPClientsFor))
	fs.IntVar(&cfg.Cluster.CanaryWeight, "canary-weight", cfg.Cluster.CanaryWeight, "% of the xds-canary mode's calls the canary GRPCRoute sends to the be-v2 Deployment, 0 to 100 (0: no be-v2, no route)")
	fs.BoolVar(&cfg.ModeOptions.Tuned, "tuned", false, "give every mode the tuned client settings (keepalive, health checks, outlier detection, call deadline)")
	fs.DurationVar(&cfg.ModeOptions.DNSRefreshInterval, "dns-refresh-interval", cfg.ModeOptions.DNSRefreshInterval, "interval of the dns-refresh mode's resolver")
	fs.StringVar(&cfg.FrontendAddr, "frontend-addr", cfg.FrontendAddr, "frontend HTTP address")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", cfg.AdminAddr, `admin HTTP address for /metrics, /healthz, /readyz ("-" disables)`)
	fs.DurationVar(&cfg.Grace, "grace", cfg.Grace, "bound on the whole shutdown")
	fs.BoolVar(&cfg.TLS, "tls", false, "mTLS between the frontend and every pod, with an ephemeral CA (certificates in a temporary folder, removed at exit)")
	newLog := logFlags(fs, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	ip, err := netip.ParseAddr(*firstIP)
	if err != nil {
		return usageError{fmt.Errorf("--first-pod-ip %q: %v", *firstIP, err)}
	}
	cfg.Cluster.FirstPodIP = ip
	if cfg.Cluster.Replicas < 1 || cfg.Cluster.Replicas > cluster.MaxReplicas {
		return usageError{fmt.Errorf("--replicas %d: want 1 to %d", cfg.Cluster.Replicas, cluster.MaxReplicas)}
	}
	switch w := cfg.Cluster.CanaryWeight; {
	case w < 0 || w > 100:
		return usageError{fmt.Errorf("--canary-weight %d: want 0 to 100", w)}
	case w == 0:
		cfg.Cluster.CanaryWeight = -1 // the library's "none"
	}
	if cfg.Grace <= 0 || cfg.Cluster.Grace <= 0 || cfg.Cluster.DNSTTL < 0 {
		return usageError{fmt.Errorf("--grace and --pod-grace must be positive, --dns-ttl not negative")}
	}
	if err := cfg.Cluster.Validate(); err != nil {
		return usageError{err}
	}
	if err := cfg.Clients.Validate(); err != nil {
		return usageError{err}
	}
	log, err := newLog()
	if err != nil {
		return err
	}
	return demo.Run(ctx, cfg, log, e.stdout)
}
