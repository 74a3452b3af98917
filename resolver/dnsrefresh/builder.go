package dnsrefresh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
)

// Scheme is the target scheme this package resolves: dns+refresh:///host:port, or
// dns+refresh://dns-server-ip:port/host:port to ask one DNS server.
const Scheme = "dns+refresh"

// defaultPort is used when a target names no port, as grpc's dns resolver does.
const defaultPort = 443

var _ resolver.Builder = (*Builder)(nil)

// Builder builds dns+refresh resolvers. Pass it to one client with grpc.WithResolvers (the
// preferred way), or register it for the whole process with Register. One Builder may serve
// any number of ClientConns; they share its options and metrics. Its methods may be called
// concurrently.
type Builder struct {
	cfg     config
	metrics *metrics
}

// NewBuilder returns a Builder with the given options. It fails on an invalid option value or
// when the metrics cannot be registered.
func NewBuilder(opts ...Option) (*Builder, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.registerer)
	if err != nil {
		return nil, err
	}
	return &Builder{cfg: cfg, metrics: m}, nil
}

// Register builds a Builder and registers it with gRPC for the whole process, so that any
// client may dial dns+refresh:/// targets without options. Like resolver.Register, call it
// only at initialization time (from main or an init function), not concurrently with dialing.
// Prefer grpc.WithResolvers(b) in libraries and tests.
func Register(opts ...Option) error {
	b, err := NewBuilder(opts...)
	if err != nil {
		return err
	}
	resolver.Register(b)
	return nil
}

// Scheme returns "dns+refresh".
func (b *Builder) Scheme() string { return Scheme }

// Build starts a resolver for target: it resolves at once, then again on the interval, when
// the TTL expires and when gRPC asks (ResolveNow), until Close. An IP address target is
// handed to cc once, without DNS.
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, opts resolver.BuildOptions) (resolver.Resolver, error) {
	endpoint := target.Endpoint()
	host, port, err := parseTarget(endpoint)
	if err != nil {
		return nil, err
	}

	var sc *serviceconfig.ParseResult
	if b.cfg.serviceConfig != "" && !opts.DisableServiceConfig {
		sc = cc.ParseServiceConfig(b.cfg.serviceConfig)
		if sc.Err != nil {
			return nil, fmt.Errorf("dnsrefresh: service config: %w", sc.Err)
		}
	}

	if ip, err := netip.ParseAddr(host); err == nil {
		addrs := hostPorts([]netip.Addr{ip.Unmap()}, port)
		if err := cc.UpdateState(state(addrs, sc)); err != nil {
			return nil, fmt.Errorf("dnsrefresh: %s: %w", endpoint, err)
		}
		return nopResolver{}, nil
	}

	lk, err := b.lookuper(target.URL.Host)
	if err != nil {
		return nil, fmt.Errorf("dnsrefresh: %s: %w", target, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	r := &dnsResolver{
		host:    host,
		port:    port,
		target:  endpoint,
		lk:      lk,
		cc:      cc,
		sc:      sc,
		clock:   b.cfg.clock,
		timeout: b.cfg.timeout,
		metrics: b.metrics,
		log:     b.cfg.logger.With("resolver", Scheme, "target", endpoint),
		track: tracker{timing: timing{
			interval:       b.cfg.interval,
			minInterval:    b.cfg.minInterval,
			emptyThreshold: b.cfg.emptyThreshold,
		}},
		rn:     make(chan struct{}, 1),
		ctx:    ctx,
		cancel: cancel,
	}
	b.metrics.acquire(endpoint)
	r.wg.Add(1)
	go r.watch()
	return r, nil
}

// lookuper picks the DNS servers: the target's authority, else WithServer, else resolv.conf
// (whose search domains and ndots then apply too).
func (b *Builder) lookuper(authority string) (*lookuper, error) {
	if authority != "" {
		srv, err := serverAddr(authority)
		if err != nil {
			return nil, err
		}
		return newLookuper([]string{srv}, nil, b.cfg.network, b.cfg.timeout), nil
	}
	if b.cfg.server != "" {
		return newLookuper([]string{b.cfg.server}, nil, b.cfg.network, b.cfg.timeout), nil
	}
	cc, err := dns.ClientConfigFromFile(b.cfg.resolvConf)
	if err != nil {
		return nil, fmt.Errorf("read DNS servers: %w", err)
	}
	var servers []string
	for _, s := range cc.Servers {
		if ap, err := netip.ParseAddrPort(s); err == nil { // extension: "ip:port"
			servers = append(servers, ap.String())
			continue
		}
		servers = append(servers, net.JoinHostPort(s, cc.Port))
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("no nameserver in %s", b.cfg.resolvConf)
	}
	return newLookuper(servers, cc, b.cfg.network, b.cfg.timeout), nil
}

// parseTarget splits "host:port" (port defaults to 443; IPv6 literals in brackets).
func parseTarget(endpoint string) (host string, port uint16, err error) {
	if endpoint == "" {
		return "", 0, errors.New("dnsrefresh: target has no host (want dns+refresh:///host:port)")
	}
	if a, err := netip.ParseAddr(endpoint); err == nil {
		return a.String(), defaultPort, nil
	}
	h, p := strings.TrimSuffix(strings.TrimPrefix(endpoint, "["), "]"), ""
	if strings.Contains(endpoint, ":") && !strings.HasSuffix(endpoint, "]") {
		if h, p, err = net.SplitHostPort(endpoint); err != nil {
			return "", 0, fmt.Errorf("dnsrefresh: target %q: %w", endpoint, err)
		}
		if p == "" {
			return "", 0, fmt.Errorf("dnsrefresh: target %q: empty port", endpoint)
		}
	}
	if h == "" {
		return "", 0, fmt.Errorf("dnsrefresh: target %q has no host", endpoint)
	}
	n := uint64(defaultPort)
	if p != "" {
		if n, err = strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return "", 0, fmt.Errorf("dnsrefresh: target %q: bad port %q", endpoint, p)
		}
	}
	return h, uint16(n), nil
}

// nopResolver serves IP address targets: nothing to re-resolve.
type nopResolver struct{}

func (nopResolver) ResolveNow(resolver.ResolveNowOptions) {}
func (nopResolver) Close()                                {}
