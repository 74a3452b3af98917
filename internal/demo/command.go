package demo

import (
	"flag"
	"fmt"
	"net/netip"

	"github.com/spread-grpc/spread/internal/cluster"
)

// CommandConfig is `spread demo`'s configuration: the demo's Config as the command line gives
// it (the first pod's address as text, --canary-weight 0 for none); DemoConfig turns it into
// the Config Run takes.
type CommandConfig struct {
	Config
	// FirstPodIP is Cluster.FirstPodIP as given on the command line.
	FirstPodIP string
}

// DefaultCommandConfig returns `spread demo`'s defaults: DefaultConfig's, except that the
// command serves xDS on the well-known port (the library on a free one).
func DefaultCommandConfig() CommandConfig {
	c := CommandConfig{Config: DefaultConfig()}
	c.Cluster.XDSAddr = "127.0.0.1:18000"
	c.Clients.Rate, c.Clients.For = DefaultClusterIPRate, DefaultClusterIPFor
	c.FirstPodIP = c.Cluster.FirstPodIP.String()
	return c
}

// RegisterFlags binds c's fields to flags in fs, with c's current values as defaults.
func (c *CommandConfig) RegisterFlags(fs *flag.FlagSet) {
	cl := &c.Cluster
	fs.IntVar(&cl.Replicas, "replicas", cl.Replicas, fmt.Sprintf("backend pods, 1 to %d", cluster.MaxReplicas))
	fs.StringVar(&c.FirstPodIP, "first-pod-ip", c.FirstPodIP, "first pod's address; pod i listens on first+i (loopback only)")
	fs.IntVar(&cl.PodPort, "pod-port", cl.PodPort, "gRPC port of every pod and of the Services (0 picks a free one)")
	fs.StringVar(&cl.VIP, "vip", cl.VIP, "ClusterIP VIP ip:port (default 127.96.0.10:<pod-port>)")
	fs.StringVar(&cl.DNSAddr, "dns-addr", cl.DNSAddr, "cluster DNS address (UDP and TCP)")
	fs.StringVar(&cl.XDSAddr, "xds-addr", cl.XDSAddr, `the demo's xDS control plane address ("-" disables it and the xds mode)`)
	fs.DurationVar(&cl.DNSTTL, "dns-ttl", cl.DNSTTL, "TTL of the cluster DNS answers")
	fs.DurationVar(&cl.Grace, "pod-grace", cl.Grace, "bound on each pod's drain")
	fs.DurationVar(&cl.EndpointDelay, "endpoint-delay", cl.EndpointDelay, "how long pod changes take to reach endpoints, DNS and resolvers (EndpointSlice propagation)")
	fs.DurationVar(&cl.PreStop, "prestop", cl.PreStop, "how long a deleted pod serves before draining (default: --endpoint-delay)")
	fs.DurationVar(&cl.RestartDelay, "restart-delay", cl.RestartDelay, "how long a killed pod takes to restart")
	fs.DurationVar(&cl.MaxConnectionAge, "max-connection-age", cl.MaxConnectionAge, "every pod's server-side MaxConnectionAge (adds the headless-mca mode); 0 = never")
	fs.DurationVar(&cl.MaxStreamAge, "max-stream-age", cl.MaxStreamAge, "end every pod's streams after this age (±10%) so resuming clients re-balance; 0 = never")
	fs.DurationVar(&cl.FairShareInterval, "fair-share-interval", cl.FairShareInterval, "pods shed client connections above their fair share in rounds this long (as spread backend --fair-share-*; try with --clusterip-clients 40, then scale up); 0 = off")
	fs.IntVar(&c.Clients.N, "clusterip-clients", c.Clients.N, fmt.Sprintf("run this many separate ClusterIP clients, one long-lived connection each through the VIP (0 to %d); the dashboard's pod table shows their connections per pod", MaxClusterIPClients))
	fs.Float64Var(&c.Clients.Rate, "clusterip-client-rate", c.Clients.Rate, fmt.Sprintf("calls per second of each --clusterip-clients client (at most %v)", MaxClusterIPClientRate))
	fs.DurationVar(&c.Clients.For, "clusterip-clients-for", c.Clients.For, fmt.Sprintf("how long the --clusterip-clients run, then stop (at most %v)", MaxClusterIPClientsFor))
	fs.IntVar(&cl.CanaryWeight, "canary-weight", cl.CanaryWeight, "% of the xds-canary mode's calls the canary GRPCRoute sends to the be-v2 Deployment, 0 to 100 (0: no be-v2, no route)")
	fs.BoolVar(&c.ModeOptions.Tuned, "tuned", c.ModeOptions.Tuned, "give every mode the tuned client settings (keepalive, health checks, outlier detection, call deadline)")
	fs.DurationVar(&c.ModeOptions.DNSRefreshInterval, "dns-refresh-interval", c.ModeOptions.DNSRefreshInterval, "interval of the dns-refresh mode's resolver")
	fs.StringVar(&c.FrontendAddr, "frontend-addr", c.FrontendAddr, "frontend HTTP address")
	fs.StringVar(&c.AdminAddr, "admin-addr", c.AdminAddr, `admin HTTP address for /metrics, /healthz, /readyz ("-" disables)`)
	fs.DurationVar(&c.Grace, "grace", c.Grace, "bound on the whole shutdown")
	fs.BoolVar(&c.TLS, "tls", c.TLS, "mTLS between the frontend and every pod, with an ephemeral CA (certificates in a temporary folder, removed at exit)")
}

// Validate reports c's first invalid setting, naming its flag.
func (c CommandConfig) Validate() error {
	_, err := c.DemoConfig()
	return err
}

// DemoConfig returns the Config c describes, for Run, or c's first invalid setting.
func (c CommandConfig) DemoConfig() (Config, error) {
	cfg := c.Config
	ip, err := netip.ParseAddr(c.FirstPodIP)
	if err != nil {
		return cfg, fmt.Errorf("--first-pod-ip %q: %v", c.FirstPodIP, err)
	}
	cfg.Cluster.FirstPodIP = ip
	if cfg.Cluster.Replicas < 1 || cfg.Cluster.Replicas > cluster.MaxReplicas {
		return cfg, fmt.Errorf("--replicas %d: want 1 to %d", cfg.Cluster.Replicas, cluster.MaxReplicas)
	}
	switch w := cfg.Cluster.CanaryWeight; {
	case w < 0 || w > 100:
		return cfg, fmt.Errorf("--canary-weight %d: want 0 to 100", w)
	case w == 0:
		cfg.Cluster.CanaryWeight = -1 // the library's "none"
	}
	if cfg.Grace <= 0 || cfg.Cluster.Grace <= 0 || cfg.Cluster.DNSTTL < 0 {
		return cfg, fmt.Errorf("--grace and --pod-grace must be positive, --dns-ttl not negative")
	}
	if err := cfg.Cluster.Validate(); err != nil {
		return cfg, err
	}
	if err := cfg.Clients.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}
