package modes

import (
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"

	"github.com/spread-grpc/spread/hedge"
	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/connect"
	kuberesolver "github.com/spread-grpc/spread/resolver/kubernetes"
)

// The demo's *-hedged modes need the spread_hedge policy in grpc-go's registry before any
// channel parses a service config naming it; the demo, like grpc-go's own policies
// (imported for their registration in modes.go), registers it when the package loads.
func init() { hedge.RegisterBalancer() }

// Hedging settings of the *-hedged modes: the echo methods are idempotent.
const (
	// HedgedFirstDelay is the hedge delay until a method's observed p95 takes over.
	HedgedFirstDelay = 50 * time.Millisecond
	// HedgedMaxDelay bounds the adaptive hedge delay.
	HedgedMaxDelay = 100 * time.Millisecond
	// HedgedAttemptTimeout abandons an attempt (and retries on another pod) after it.
	HedgedAttemptTimeout = 300 * time.Millisecond
	// HedgedBudget is the share of calls that may get an extra attempt, HedgedBurst the
	// bucket's size.
	HedgedBudget = 0.1
	HedgedBurst  = 20
)

var hedgedSummary = fmt.Sprintf("hedging after the observed p95 (%v at first, at most %v), %v per-attempt timeout, "+
	"never the same pod twice, extra attempts ≤ %g %% of calls (+%d)",
	HedgedFirstDelay, HedgedMaxDelay, HedgedAttemptTimeout, HedgedBudget*100, HedgedBurst)

// hedgedPolicy is the policy of the echo methods in the hedged modes.
func hedgedPolicy() hedge.Policy {
	return hedge.Policy{
		Idempotent: true, MaxAttempts: 3, PerAttemptTimeout: HedgedAttemptTimeout,
		HedgeDelay: HedgedFirstDelay, AdaptiveHedge: true, MaxHedgeDelay: HedgedMaxDelay,
	}
}

// hedgedServiceConfig is the tuned service config with spread_hedge on top: outlier
// detection over child (a pod whose attempts keep losing to hedges, or time out, is
// ejected), health checking, and the echo methods' hedging policy. It has no method
// timeout: the per-attempt timeout replaces it.
func hedgedServiceConfig(child string) (string, error) {
	lb, err := hedge.LoadBalancingConfig(outlierDetectionJSON(child), map[string]hedge.Policy{"echo.EchoServer": hedgedPolicy()})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf(`{"loadBalancingConfig": [%s], "healthCheckConfig": {"serviceName": ""}}`, lb), nil
}

// hedgeMode adds the interceptors and keepalive to m. With goPolicy the echo methods'
// policy comes from Go options (for channels whose service config Spread does not write).
func hedgeMode(m connect.Mode, goPolicy bool) (connect.Mode, error) {
	opts := []hedge.Option{hedge.WithBudget(hedge.Budget{Ratio: HedgedBudget, Burst: HedgedBurst})}
	if goPolicy {
		opts = append(opts, hedge.WithPolicy("echo.EchoServer", hedgedPolicy()))
	}
	h, err := hedge.New(opts...)
	if err != nil {
		return m, err
	}
	m.DialOptions = append(slices.Clip(m.DialOptions), h.DialOptions()...)
	m.DialOptions = append(m.DialOptions, grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time: TunedKeepaliveTime, Timeout: TunedKeepaliveTimeout,
	}))
	return m, nil
}

// buildHedged makes a registry entry's builder return the hedged variant, the policy in the
// channel's default service config.
func buildHedged(build func(*cluster.Cluster, Options) (connect.Mode, error)) func(*cluster.Cluster, Options) (connect.Mode, error) {
	return func(c *cluster.Cluster, o Options) (connect.Mode, error) {
		m, err := build(c, o)
		if err != nil {
			return m, err
		}
		policy := m.Policy
		if policy == "" {
			policy = connect.RoundRobin
		}
		if m.ServiceConfigJSON, err = hedgedServiceConfig(policy); err != nil {
			return m, err
		}
		m.HealthCheck = true
		return hedgeMode(m, false)
	}
}

// buildKubeHedged is kube with the hedged service config pushed by the resolver itself.
func buildKubeHedged(c *cluster.Cluster, _ Options) (connect.Mode, error) {
	sc, err := hedgedServiceConfig(connect.RoundRobin)
	if err != nil {
		return connect.Mode{}, err
	}
	b, err := kuberesolver.NewBuilder(kuberesolver.WithSource(c), kuberesolver.WithLogger(c.Logger()), kuberesolver.WithServiceConfig(sc))
	if err != nil {
		return connect.Mode{}, err
	}
	m := connect.Mode{
		Target:    fmt.Sprintf("%s:///%s.%s:%s", kuberesolver.Scheme, cluster.HeadlessService, cluster.Namespace, cluster.PortName),
		Resolvers: []resolver.Builder{b}, HealthCheck: true, ServiceConfigJSON: sc,
	}
	return hedgeMode(m, false)
}

// buildXDSHedged is xds-tuned with the interceptors, the policy from Go options.
func buildXDSHedged(c *cluster.Cluster, o Options) (connect.Mode, error) {
	m, err := buildXDSTunedMode(c, o)
	if err != nil {
		return m, err
	}
	h, err := hedge.New(hedge.WithBudget(hedge.Budget{Ratio: HedgedBudget, Burst: HedgedBurst}),
		hedge.WithPolicy("echo.EchoServer", hedgedPolicy()))
	if err != nil {
		return m, err
	}
	m.DialOptions = append(slices.Clip(m.DialOptions), h.DialOptions()...)
	return m, nil
}
