// Package modes is the registry of the demo's balancing modes: each Factory turns a running
// simulated cluster (package cluster) into a connect.Mode, the connection recipe the frontend,
// `spread load` and `spread compare` dial. Modes plug in by name: add a Factory to the
// registry and every command offers it. Tune adds the tuned client settings (keepalive,
// health checking, outlier detection, a call deadline) to any mode; the *-hedged modes add
// Spread's hedging (hedged.go) and the xds modes dial the cluster's control plane (xds.go).
package modes

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/health" // client-side health checking, for tuned modes
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	_ "google.golang.org/grpc/xds" // registers the outlier_detection_experimental balancer

	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/connect"
	"github.com/spread-grpc/spread/resolver/dnsrefresh"
	kuberesolver "github.com/spread-grpc/spread/resolver/kubernetes"
)

// Factory builds one frontend mode wired to the demo cluster. Modes plug into the demo,
// the dashboard, `spread load` and `spread compare` by name: add a factory to the registry
// below and every one of them offers it.
type Factory struct {
	Name        string
	Description string
	Build       func(c *cluster.Cluster, o Options) (connect.Mode, error)
	// Cluster, if set, adjusts the configuration of a cluster started for this mode alone
	// (as `spread compare` does), e.g. a server-side MaxConnectionAge. On a shared cluster
	// that lacks what the mode needs, Build returns an error wrapping ErrClusterLacks.
	Cluster func(*cluster.Config)
}

// ErrClusterLacks marks a mode that needs a cluster setting the running cluster does not have.
var ErrClusterLacks = errors.New("the cluster lacks a setting this mode needs")

// DefaultOptions returns the values Build gives zero fields, declared once: the commands'
// flags show them.
func DefaultOptions() Options { return Options{DNSRefreshInterval: dnsrefresh.DefaultInterval} }

// Options tunes how modes are built.
type Options struct {
	// DNSRefreshInterval is the dns-refresh mode's interval (default dnsrefresh.DefaultInterval, 5s).
	DNSRefreshInterval time.Duration
	// Tuned applies the tuned client settings (see Tune) to every mode built.
	Tuned bool
}

// Tuned client settings, so that a frozen pod (TCP open, nothing answers) is ejected quickly.
const (
	// TunedKeepaliveTime is the client keepalive ping interval: 10 s is the least grpc-go
	// allows (it raises anything lower to 10 s); the backends permit pings every 5 s.
	TunedKeepaliveTime = 10 * time.Second
	// TunedKeepaliveTimeout closes a connection whose ping is not answered within it.
	TunedKeepaliveTimeout = time.Second
	// TunedCallTimeout is the per-call deadline: cluster.TunedCallTimeout, declared there
	// because the cluster's tuned Service carries it as an xDS annotation too.
	TunedCallTimeout = cluster.TunedCallTimeout
	// TunedEjectionInterval is how often outlier detection looks at the counts:
	// cluster.TunedEjectionInterval, for the same reason.
	TunedEjectionInterval = cluster.TunedEjectionInterval
)

// tunedServiceConfig wraps a child policy in outlier detection (failure-percentage
// ejection: a pod failing at least half of its calls, with 5 or more calls in an interval,
// is ejected for 30 s, then for longer if it fails again; at most half the pods at once),
// turns on client-side health checking (a draining pod is left at once), and bounds unary
// calls by TunedCallTimeout. Streams are not bounded by it.
func tunedServiceConfig(child string) string {
	return fmt.Sprintf(`{
  "loadBalancingConfig": [%s],
  "healthCheckConfig": {"serviceName": ""},
  "methodConfig": [{"name": [{"service": "echo.EchoServer", "method": "SayHello"}], "timeout": "%s"}]
}`, outlierDetectionJSON(child), durationJSON(TunedCallTimeout))
}

// outlierDetectionJSON is the tuned outlier-detection policy over child, as one
// loadBalancingConfig entry.
func outlierDetectionJSON(child string) string {
	return fmt.Sprintf(`{"outlier_detection_experimental": {
    "interval": "%s", "baseEjectionTime": "30s", "maxEjectionTime": "300s", "maxEjectionPercent": 50,
    "failurePercentageEjection": {"threshold": 50, "enforcementPercentage": 100, "minimumHosts": 3, "requestVolume": 5},
    "childPolicy": [{%q: {}}]}}`, durationJSON(TunedEjectionInterval), child)
}

func durationJSON(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s" }

// Tune returns m with the tuned client settings: keepalive (TunedKeepaliveTime and
// TunedKeepaliveTimeout), client-side health checking, outlier detection around its policy
// and a per-call deadline. See tunedServiceConfig.
func Tune(m connect.Mode) connect.Mode {
	policy := m.Policy
	if policy == "" {
		policy = connect.RoundRobin
	}
	m.HealthCheck = true
	m.ServiceConfigJSON = tunedServiceConfig(policy)
	m.DialOptions = append(slices.Clip(m.DialOptions), grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time: TunedKeepaliveTime, Timeout: TunedKeepaliveTimeout,
	}))
	return m
}

// MCAAge is the server-side MaxConnectionAge of the headless-mca mode's cluster, the value
// the baselines measured with.
const MCAAge = 5 * time.Second

func buildHeadless(c *cluster.Cluster, _ Options) (connect.Mode, error) {
	return connect.Mode{Target: c.Target(cluster.HeadlessService), Policy: connect.RoundRobin}, nil
}

func buildDNSRefresh(c *cluster.Cluster, o Options) (connect.Mode, error) {
	iv := o.DNSRefreshInterval
	if iv == 0 {
		iv = dnsrefresh.DefaultInterval
	}
	minIv := min(dnsrefresh.DefaultMinInterval, iv)
	// No resolver-sent service config: the mode's own (default) service config governs, so
	// tuned variants keep their outlier detection and call deadline.
	b, err := dnsrefresh.NewBuilder(dnsrefresh.WithInterval(iv), dnsrefresh.WithMinInterval(minIv), dnsrefresh.WithServiceConfig(""))
	if err != nil {
		return connect.Mode{}, err
	}
	return connect.Mode{
		Target:    fmt.Sprintf("%s://%s/%s.:%d", dnsrefresh.Scheme, c.DNSAddr(), c.ServiceName(cluster.HeadlessService), c.Port()),
		Policy:    connect.RoundRobin,
		Resolvers: []resolver.Builder{b},
	}, nil
}

// buildKube builds the kubernetes:/// mode over the demo's endpoint model. The resolver pushes
// its own service config (round_robin + health checking by default), which overrides the
// mode's default one, so a tuned kube mode hands the tuned config to the resolver itself.
func buildKube(tune bool) func(*cluster.Cluster, Options) (connect.Mode, error) {
	return func(c *cluster.Cluster, o Options) (connect.Mode, error) {
		tune := tune || o.Tuned
		sc := kuberesolver.DefaultServiceConfig
		if tune {
			sc = tunedServiceConfig(connect.RoundRobin)
		}
		b, err := kuberesolver.NewBuilder(kuberesolver.WithSource(c), kuberesolver.WithLogger(c.Logger()), kuberesolver.WithServiceConfig(sc))
		if err != nil {
			return connect.Mode{}, err
		}
		m := connect.Mode{
			Target:    fmt.Sprintf("%s:///%s.%s:%s", kuberesolver.Scheme, cluster.HeadlessService, cluster.Namespace, cluster.PortName),
			Resolvers: []resolver.Builder{b},
		}
		if tune {
			m = Tune(m)
		}
		return m, nil
	}
}

// tuned makes a registry entry's builder return the tuned variant.
func tuned(build func(*cluster.Cluster, Options) (connect.Mode, error)) func(*cluster.Cluster, Options) (connect.Mode, error) {
	return func(c *cluster.Cluster, o Options) (connect.Mode, error) {
		m, err := build(c, o)
		if err != nil {
			return m, err
		}
		return Tune(m), nil
	}
}

// modeRegistry lists every mode the demo knows, in display order.
var modeRegistry = []Factory{
	{
		Name:        "clusterip",
		Description: "ClusterIP Service: one connection through the L4 VIP, so every call lands on one pod",
		Build: func(c *cluster.Cluster, _ Options) (connect.Mode, error) {
			return connect.Mode{Target: c.Target(cluster.ClusterIPService), Policy: connect.PickFirst}, nil
		},
	},
	{
		Name:        "headless",
		Description: "headless Service + dns:/// + round_robin: every pod IP, one call each in turn (DNS read once)",
		Build:       buildHeadless,
	},
	{
		Name:        "dns-refresh",
		Description: "headless Service + dns+refresh:/// + round_robin: DNS re-read on an interval, its TTL and connection loss",
		Build:       buildDNSRefresh,
	},
	{
		Name: "headless-mca",
		Description: fmt.Sprintf("headless + round_robin, pods with server-side MaxConnectionAge %v: "+
			"reconnects make grpc-go re-resolve (at most every 30 s)", MCAAge),
		Build: func(c *cluster.Cluster, o Options) (connect.Mode, error) {
			if c.Config().MaxConnectionAge == 0 {
				return connect.Mode{}, fmt.Errorf("needs pods with MaxConnectionAge (demo --max-connection-age): %w", ErrClusterLacks)
			}
			return buildHeadless(c, o)
		},
		Cluster: func(cfg *cluster.Config) { cfg.MaxConnectionAge = MCAAge },
	},
	{
		Name: "dns-refresh-tuned",
		Description: fmt.Sprintf("dns-refresh + keepalive %v/%v, health checks, outlier detection (%v), %v call deadline: frozen pods ejected fast",
			TunedKeepaliveTime, TunedKeepaliveTimeout, TunedEjectionInterval, TunedCallTimeout),
		Build: tuned(buildDNSRefresh),
	},
	{
		Name:        "kube",
		Description: "kubernetes:/// resolver: follows the Service's endpoints as they change (here the demo's endpoint model stands in for the EndpointSlice watch)",
		Build:       buildKube(false),
	},
	{
		Name: "kube-tuned",
		Description: fmt.Sprintf("kubernetes:/// + keepalive %v/%v, health checks, outlier detection (%v), %v call deadline: frozen pods ejected fast",
			TunedKeepaliveTime, TunedKeepaliveTimeout, TunedEjectionInterval, TunedCallTimeout),
		Build: buildKube(true),
	},
	{
		Name:        "xds",
		Description: "proxyless xDS: the demo's control plane pushes endpoint changes to the grpc-go xDS client (round_robin)",
		Build:       buildXDSMode,
	},
	{
		Name: "xds-tuned",
		Description: fmt.Sprintf("xds, the Service annotated for outlier detection (%v) and a %v deadline on SayHello "+
			"(sent by the control plane), + client keepalive %v/%v: frozen pods ejected fast",
			TunedEjectionInterval, TunedCallTimeout, TunedKeepaliveTime, TunedKeepaliveTimeout),
		Build: buildXDSTunedMode,
	},
	{
		Name:        "xds-canary",
		Description: "xds to be-srv-canary: its Gateway API GRPCRoute sends --canary-weight % of the calls to the be-v2 Deployment, the rest to be-srv (docs/grpcroute.md)",
		Build:       buildXDSCanaryMode,
	},
	{
		Name:        "dns-refresh-hedged",
		Description: "dns-refresh-tuned + " + hedgedSummary + " (policy from the service config)",
		Build:       buildHedged(buildDNSRefresh),
	},
	{
		Name:        "kube-hedged",
		Description: "kube-tuned + " + hedgedSummary + " (policy from the service config the resolver pushes)",
		Build:       buildKubeHedged,
	},
	{
		Name: "xds-hedged",
		Description: "xds-tuned + " + hedgedSummary + " (policy from Go options; an xDS channel keeps the control " +
			"plane's balancer, so a hedge may land on a pod already tried)",
		Build: buildXDSHedged,
	},
}

// Names lists the modes the demo knows, in display order.
func Names() []string {
	names := make([]string, len(modeRegistry))
	for i, f := range modeRegistry {
		names[i] = f.Name
	}
	return names
}

// Lookup returns the registry entry of the named mode.
func Lookup(name string) (Factory, error) {
	i := slices.IndexFunc(modeRegistry, func(f Factory) bool { return f.Name == name })
	if i < 0 {
		return Factory{}, fmt.Errorf("demo: unknown mode %q (have %s)", name, strings.Join(Names(), ", "))
	}
	return modeRegistry[i], nil
}

// Build builds the named modes for cluster c. With no names it builds every mode the
// cluster can serve, skipping those that need a cluster setting it lacks (ErrClusterLacks).
func Build(c *cluster.Cluster, o Options, names ...string) ([]connect.Mode, error) {
	all := len(names) == 0
	if all {
		names = Names()
	}
	var out []connect.Mode
	for _, n := range names {
		f, err := Lookup(n)
		if err != nil {
			return nil, err
		}
		m, err := f.Build(c, o)
		if all && errors.Is(err, ErrClusterLacks) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("demo: mode %s: %w", n, err)
		}
		if o.Tuned && m.ServiceConfigJSON == "" {
			m = Tune(m)
		}
		m.Name, m.Description = n, f.Description
		out = append(out, m)
	}
	return out, nil
}
