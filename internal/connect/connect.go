// Package connect is the connection recipe shared by the frontend, `spread load` and
// `spread compare`: a Mode names a gRPC target and how the client balances over it (policy,
// health checking, service config, resolvers, dial options), and Dial turns it into a
// grpc.ClientConn. It knows nothing of HTTP or of the simulated cluster; package modes builds
// the demo's Modes, and a real deployment writes its own.
package connect

import (
	"fmt"
	"net/url"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
)

// Balancing policies a mode may use.
const (
	PickFirst  = "pick_first"
	RoundRobin = "round_robin"
)

// Mode is one way of reaching the backends: a gRPC target and how the client balances over it.
type Mode struct {
	// Name is the mode's URL name (/call/{name}): lowercase letters, digits and dashes.
	Name string
	// Target is the gRPC target, e.g. "dns:///be-srv-lb.default.svc.cluster.local:50051".
	Target string
	// Policy is the load balancing policy (PickFirst or RoundRobin) put in the default service
	// config; empty leaves it to the resolver (for example xDS).
	Policy string
	// HealthCheck turns on client-side health checking (grpc.health.v1 Watch).
	HealthCheck bool
	// Description says in one line what the mode shows.
	Description string
	// Resolvers are resolver builders this mode's target may use besides the globally
	// registered ones (passed with grpc.WithResolvers).
	Resolvers []resolver.Builder
	// DialOptions are extra options for this mode (keepalive, ...).
	DialOptions []grpc.DialOption
	// ServiceConfigJSON, if set, is the whole default service config (outlier detection,
	// method timeouts, ...) instead of the one rendered from Policy and HealthCheck; Policy
	// then only names the policy for display.
	ServiceConfigJSON string
}

// CheckScheme refuses targets whose scheme no resolver serves: grpc.NewClient would quietly
// read such a target as a DNS name, and the mode would fail only at its first call.
func (m Mode) CheckScheme() error {
	u, err := url.Parse(m.Target)
	if err != nil || !strings.Contains(m.Target, "://") {
		return nil // a bare host:port: grpc uses its default scheme (dns)
	}
	if resolver.Get(u.Scheme) != nil {
		return nil
	}
	for _, b := range m.Resolvers {
		if b.Scheme() == u.Scheme {
			return nil
		}
	}
	have := []string{}
	for _, b := range m.Resolvers {
		have = append(have, b.Scheme())
	}
	return fmt.Errorf("no resolver for scheme %q (registered: dns, passthrough, unix%s)", u.Scheme, strings.Join(append([]string{""}, have...), ", "))
}

// ServiceConfig renders the mode's default service config JSON ("" when it sets nothing).
func (m Mode) ServiceConfig() string {
	if m.ServiceConfigJSON != "" {
		return m.ServiceConfigJSON
	}
	var parts []string
	if m.Policy != "" {
		parts = append(parts, fmt.Sprintf(`"loadBalancingConfig":[{%q:{}}]`, m.Policy))
	}
	if m.HealthCheck {
		parts = append(parts, `"healthCheckConfig":{"serviceName":""}`)
	}
	if len(parts) == 0 {
		return ""
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// ClientOptions returns the dial options of the mode's connections: creds (nil: insecure),
// its resolvers, its service config and its extra options.
func (m Mode) ClientOptions(creds credentials.TransportCredentials) []grpc.DialOption {
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	dopts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if len(m.Resolvers) > 0 {
		dopts = append(dopts, grpc.WithResolvers(m.Resolvers...))
	}
	if sc := m.ServiceConfig(); sc != "" {
		dopts = append(dopts, grpc.WithDefaultServiceConfig(sc))
	}
	return append(dopts, m.DialOptions...)
}

// Dial creates a client connection for the mode, as the frontend does for each mode, after
// checking that a resolver serves its target's scheme. The caller closes it.
func Dial(m Mode, creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	if err := m.CheckScheme(); err != nil {
		return nil, fmt.Errorf("frontend: mode %q: target %q: %w", m.Name, m.Target, err)
	}
	conn, err := grpc.NewClient(m.Target, m.ClientOptions(creds)...)
	if err != nil {
		return nil, fmt.Errorf("frontend: mode %q: target %q: %w", m.Name, m.Target, err)
	}
	return conn, nil
}
