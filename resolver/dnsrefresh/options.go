package dnsrefresh

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of a Builder made without options. See docs/dns-refresh.md for the reasoning.
const (
	// DefaultInterval is how often a target is re-resolved when its records carry a longer (or
	// no) TTL. 5 s is the TTL CoreDNS gives Kubernetes service records by default, so polling
	// faster would mostly read caches, and polling slower would leave new pods idle longer.
	DefaultInterval = 5 * time.Second
	// DefaultMinInterval is the least time between two lookups of one target, whatever asks for
	// them (TTL, ResolveNow on connection loss, retries): it bounds the load that a fleet of
	// clients puts on DNS to one query pair per client per second and target.
	DefaultMinInterval = 1 * time.Second
	// DefaultTimeout bounds one DNS exchange with one server (UDP, or TCP after truncation).
	DefaultTimeout = 2 * time.Second
	// DefaultEmptyThreshold is how many consecutive authoritative "no such name / no records"
	// answers it takes to replace a non-empty address list with an empty one.
	DefaultEmptyThreshold = 2
	// DefaultResolvConf is where the DNS servers, search domains and ndots are read from when
	// neither the target nor WithServer names a server.
	DefaultResolvConf = "/etc/resolv.conf"
)

// defaultServiceConfig spreads calls over every address; it is what the sample sets with
// grpc.WithBalancerName(roundrobin.Name), done by the resolver so that clients need no option.
const defaultServiceConfig = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// Option configures a Builder. Options are applied in order; an invalid value makes NewBuilder
// (or Register) return an error.
type Option func(*config) error

// config is the plain, validated settings of a Builder. It is not changed after NewBuilder.
type config struct {
	interval       time.Duration
	minInterval    time.Duration
	timeout        time.Duration
	emptyThreshold int
	server         string // host:port, "" for resolv.conf
	resolvConf     string
	network        string // "ip", "ip4" or "ip6"
	serviceConfig  string // JSON, "" for none
	logger         *slog.Logger
	registerer     prometheus.Registerer
	clock          Clock
}

func defaultConfig() config {
	return config{
		interval:       DefaultInterval,
		minInterval:    DefaultMinInterval,
		timeout:        DefaultTimeout,
		emptyThreshold: DefaultEmptyThreshold,
		resolvConf:     DefaultResolvConf,
		network:        "ip",
		serviceConfig:  defaultServiceConfig,
		logger:         slog.New(slog.DiscardHandler),
		clock:          realClock{},
	}
}

func (c *config) validate() error {
	if c.minInterval <= 0 {
		return fmt.Errorf("dnsrefresh: min interval %v: must be positive", c.minInterval)
	}
	if c.interval < c.minInterval {
		return fmt.Errorf("dnsrefresh: interval %v is below the min interval %v (lower it with WithMinInterval)", c.interval, c.minInterval)
	}
	return nil
}

// WithInterval sets how often each target is re-resolved (default DefaultInterval). A record
// TTL shorter than d brings the next lookup forward, never below the min interval. d must not
// be below the min interval.
func WithInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("dnsrefresh: interval %v: must be positive", d)
		}
		c.interval = d
		return nil
	}
}

// WithMinInterval sets the least time between two lookups of one target (default
// DefaultMinInterval). It is the floor for short or zero TTLs, the rate limit of ResolveNow and
// the first retry delay after a failed lookup.
func WithMinInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("dnsrefresh: min interval %v: must be positive", d)
		}
		c.minInterval = d
		return nil
	}
}

// WithServer queries the DNS server at addr ("ip" or "ip:port", port 53 by default) instead of
// the nameservers of /etc/resolv.conf. Names are then queried as fully qualified: no search
// domains. A target's authority (dns+refresh://10.0.0.10:53/host:port) overrides it.
func WithServer(addr string) Option {
	return func(c *config) error {
		s, err := serverAddr(addr)
		if err != nil {
			return err
		}
		c.server = s
		return nil
	}
}

// WithResolvConf reads nameservers, search domains, ndots and nothing else from path instead of
// /etc/resolv.conf. As an extension, a nameserver may carry a port ("127.0.0.1:5353").
func WithResolvConf(path string) Option {
	return func(c *config) error {
		if path == "" {
			return errors.New("dnsrefresh: resolv.conf path is empty")
		}
		c.resolvConf = path
		return nil
	}
}

// WithTimeout bounds one DNS exchange with one server (default DefaultTimeout). A lookup tries
// each server in turn, so it may take this long once per server and record type round.
func WithTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("dnsrefresh: timeout %v: must be positive", d)
		}
		c.timeout = d
		return nil
	}
}

// WithEmptyThreshold sets how many consecutive authoritative empty answers (NXDOMAIN, or
// NOERROR without A/AAAA records) replace a non-empty address list with an empty one (default
// DefaultEmptyThreshold). 1 pushes the first empty answer. Before the first state, an empty
// answer is pushed at once: there is nothing to keep.
func WithEmptyThreshold(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("dnsrefresh: empty threshold %d: must be at least 1", n)
		}
		c.emptyThreshold = n
		return nil
	}
}

// WithNetwork picks the record types queried: "ip" (A and AAAA, the default), "ip4" (A only)
// or "ip6" (AAAA only). Use "ip4" with DNS servers that mishandle AAAA queries: any failing
// query makes the whole lookup fail, so that a half answer never shrinks the address list.
func WithNetwork(network string) Option {
	return func(c *config) error {
		switch network {
		case "ip", "ip4", "ip6":
			c.network = network
			return nil
		}
		return fmt.Errorf("dnsrefresh: network %q: want ip, ip4 or ip6", network)
	}
}

// WithServiceConfig replaces the default service config
// ({"loadBalancingConfig":[{"round_robin":{}}]}) that the resolver hands to each ClientConn.
// An empty string sends none, leaving the choice to grpc.WithDefaultServiceConfig.
func WithServiceConfig(json string) Option {
	return func(c *config) error {
		c.serviceConfig = json
		return nil
	}
}

// WithHealthCheck adds client-side health checking of serviceName ("" checks the whole
// server) to the default round_robin service config, so that a pod whose health service says
// NOT_SERVING gets no calls. The client program must import google.golang.org/grpc/health to
// enable it, and the backends must serve grpc.health.v1.Health.
func WithHealthCheck(serviceName string) Option {
	return func(c *config) error {
		sc := map[string]any{
			"loadBalancingConfig": []any{map[string]any{"round_robin": map[string]any{}}},
			"healthCheckConfig":   map[string]any{"serviceName": serviceName},
		}
		b, err := json.Marshal(sc)
		if err != nil {
			return fmt.Errorf("dnsrefresh: health check config: %w", err)
		}
		c.serviceConfig = string(b)
		return nil
	}
}

// WithLogger logs lookups that fail or change the address list, and kept stale addresses, to
// l. By default the resolver logs nothing: errors reach gRPC through ReportError and operators
// through metrics.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("dnsrefresh: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithRegisterer registers the resolver's metrics with r (by default there are none):
//
//	spread_dnsrefresh_lookups_total{target,result}          counter
//	spread_dnsrefresh_addresses{target}                      gauge
//	spread_dnsrefresh_last_success_timestamp_seconds{target} gauge
//
// result is one of success, nxdomain, nodata, servfail, timeout, error. Builders that share a
// registerer share the metrics.
func WithRegisterer(r prometheus.Registerer) Option {
	return func(c *config) error {
		c.registerer = r
		return nil
	}
}

// WithClock replaces the real clock, for tests that drive refreshes by moving a fake clock.
func WithClock(clk Clock) Option {
	return func(c *config) error {
		if clk == nil {
			return errors.New("dnsrefresh: nil clock")
		}
		c.clock = clk
		return nil
	}
}

// serverAddr turns "ip" or "ip:port" (IPv6 in brackets when with a port) into "ip:port".
func serverAddr(addr string) (string, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap.String(), nil
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	return "", fmt.Errorf("dnsrefresh: DNS server %q: want ip or ip:port", addr)
}
