package backend

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/fairshare"
	"github.com/spread-grpc/spread/internal/listenaddr"
)

// CommandConfig is `spread backend`'s whole configuration: the server's Config and what the
// command wires around it (listeners, ORCA, fair share). It is a type of its own rather than
// more fields of Config because New and its callers (the demo's pods, tests) have no
// listeners to name: Config.Validate must keep accepting them.
type CommandConfig struct {
	Config
	// Addr is the gRPC listen address.
	Addr string
	// AdminAddr serves /metrics, /healthz, /readyz (and /fairshare); "-" disables it.
	AdminAddr string
	// HealthAddr serves only grpc.health.v1, in plaintext, for kubelet probes; "-" disables it.
	HealthAddr string
	// ORCACapacity, if positive, sends ORCA load reports: calls/s at 100% utilization.
	ORCACapacity float64
	// FairShare is the --fair-share-* flags.
	FairShare FairShareConfig
}

// FairShareConfig is `spread backend`'s --fair-share-* flags: off unless Service or Peers is set.
type FairShareConfig struct {
	Service    string // <svc>.<ns>:<port>: peers from its EndpointSlices
	Peers      string // or a fixed comma-separated list of peer IPs
	Kubeconfig string
	Interval   time.Duration
	Policy     fairshare.Policy
}

// Enabled reports whether fair share is on.
func (c FairShareConfig) Enabled() bool { return c.Service != "" || c.Peers != "" }

// PeerIPs lists Peers' addresses.
func (c FairShareConfig) PeerIPs() []string {
	var out []string
	for _, p := range strings.Split(c.Peers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// DefaultCommandConfig returns `spread backend`'s defaults, declared once. Pod, Zone and PodIP
// come from the environment, which the command reads.
func DefaultCommandConfig() CommandConfig {
	return CommandConfig{Config: DefaultConfig(), Addr: ":50051", AdminAddr: ":9090", HealthAddr: listenaddr.Off,
		FairShare: FairShareConfig{Interval: 5 * time.Second, Policy: fairshare.DefaultPolicy()}}
}

// RegisterFlags binds c's fields to flags in fs, with c's current values as defaults.
func (c *CommandConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", c.Addr, "gRPC listen address")
	fs.StringVar(&c.AdminAddr, "admin-addr", c.AdminAddr, `admin HTTP address for /metrics, /healthz, /readyz ("-" disables)`)
	fs.StringVar(&c.Pod, "pod", c.Pod, "identity echoed in replies (default $POD_NAME, else the hostname)")
	fs.StringVar(&c.Zone, "zone", c.Zone, "topology zone echoed in replies (default $POD_ZONE)")
	fs.StringVar(&c.PodIP, "pod-ip", c.PodIP, "address echoed in replies (default $POD_IP, else the listener's)")
	fs.DurationVar(&c.Grace, "grace", c.Grace, "bound on the graceful drain after SIGTERM; then in-flight calls are cancelled")
	fs.DurationVar(&c.MaxConnectionAge, "max-connection-age", c.MaxConnectionAge, "close client connections after this age (jittered) so clients re-resolve; 0 = never")
	fs.DurationVar(&c.MaxConnectionAgeGrace, "max-connection-age-grace", c.MaxConnectionAgeGrace, "how long calls may finish on an aged connection; 0 = unbounded")
	fs.DurationVar(&c.MaxStreamAge, "max-stream-age", c.MaxStreamAge, "end each SayHelloStream after this age (±10% jitter) with the stream-age status, so clients resume it on another pod; 0 = never")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate file; with --tls-key serves TLS (plaintext by default)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key file")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", c.TLSClientCA, "PEM CA bundle: require client certificates signed by it (mTLS); files are re-read when they change")
	fs.StringVar(&c.HealthAddr, "health-addr", c.HealthAddr, `plaintext gRPC address serving only grpc.health.v1 (for kubelet gRPC probes when --addr requires mTLS; "-" disables)`)
	fs.Float64Var(&c.ORCACapacity, "orca-capacity", c.ORCACapacity, "send ORCA load reports (for weighted_round_robin): calls/s at 100% utilization; 0 = off")
	f := &c.FairShare
	fs.StringVar(&f.Service, "fair-share-service", f.Service, "shed connections above this backend's fair share of the Service <svc>.<ns>:<port>; peers are its ready EndpointSlice endpoints, asked for their counts on the --admin-addr port (needs list+watch on endpointslices)")
	fs.StringVar(&f.Peers, "fair-share-peers", f.Peers, "fair share over a fixed list of peer IPs (comma-separated, this backend's included or not) instead of --fair-share-service")
	fs.StringVar(&f.Kubeconfig, "fair-share-kubeconfig", f.Kubeconfig, "kubeconfig for --fair-share-service outside a cluster (default: in-cluster)")
	fs.DurationVar(&f.Interval, "fair-share-interval", f.Interval, "time between balancing rounds (±20% jitter)")
	fs.Float64Var(&f.Policy.Tolerance, "fair-share-tolerance", f.Policy.Tolerance, "shed nothing while every pod holds between mean/(1+t) and mean×(1+t) connections")
	fs.Float64Var(&f.Policy.MaxFraction, "fair-share-max-fraction", f.Policy.MaxFraction, "shed at most max(1, fraction × own connections) per round")
	fs.IntVar(&f.Policy.MaxPerRound, "fair-share-max-per-round", f.Policy.MaxPerRound, "shed at most this many connections per round")
	fs.DurationVar(&f.Policy.MinAge, "fair-share-min-age", f.Policy.MinAge, "never shed a connection younger than this")
}

// Validate reports c's first invalid part, naming the flags: the server's Config, fair
// share, the listen addresses (all of them), ORCA.
func (c CommandConfig) Validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	if err := c.validateFairShare(); err != nil {
		return err
	}
	if err := errors.Join(listenaddr.Check("addr", c.Addr, false), listenaddr.Check("admin-addr", c.AdminAddr, true),
		listenaddr.Check("health-addr", c.HealthAddr, true)); err != nil {
		return err
	}
	if c.ORCACapacity < 0 {
		return fmt.Errorf("--orca-capacity %v: must not be negative", c.ORCACapacity)
	}
	return nil
}

func (c CommandConfig) validateFairShare() error {
	f := c.FairShare
	if !f.Enabled() {
		return nil
	}
	switch {
	case f.Service != "" && f.Peers != "":
		return errors.New("--fair-share-service and --fair-share-peers are exclusive")
	case c.AdminAddr == listenaddr.Off:
		return errors.New("fair share needs the admin port (--admin-addr): peers read each other's counts there")
	case f.Interval <= 0:
		return fmt.Errorf("--fair-share-interval %v must be positive", f.Interval)
	case f.Policy.Tolerance <= 0 || f.Policy.MaxFraction <= 0 || f.Policy.MaxFraction > 1 || f.Policy.MaxPerRound <= 0 || f.Policy.MinAge < 0:
		return errors.New("--fair-share-tolerance and --fair-share-max-per-round must be positive, --fair-share-max-fraction in (0, 1], --fair-share-min-age not negative")
	}
	if f.Service != "" {
		if _, err := endpoint.ParseKey(f.Service); err != nil {
			return fmt.Errorf("--fair-share-service: %w", err)
		}
	}
	for _, ip := range f.PeerIPs() {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("--fair-share-peers: %q is not an IP address", ip)
		}
	}
	_, err := c.FairSharePort()
	return err
}

// FairSharePort is the admin port peers ask each other's counts on: AdminAddr's, which must be
// fixed (the same on every pod).
func (c CommandConfig) FairSharePort() (int, error) {
	_, p, err := net.SplitHostPort(c.AdminAddr)
	if err != nil {
		return 0, fmt.Errorf("--admin-addr %q: %w", c.AdminAddr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		return 0, fmt.Errorf("--admin-addr %q: fair share needs a fixed port, shared by every pod", c.AdminAddr)
	}
	return port, nil
}
