package frontend

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/spread-grpc/spread/internal/connect"
	"github.com/spread-grpc/spread/internal/listenaddr"
)

// CommandConfig is `spread frontend`'s whole configuration: the frontend's Config and what
// the command wires around it (listeners, shutdown, TLS files, Kubernetes). It is a type of
// its own rather than more fields of Config because New and its other callers (the demo)
// have no listeners or files to name.
type CommandConfig struct {
	Config
	// Addr is the HTTP listen address.
	Addr string
	// AdminAddr serves /metrics, /healthz, /readyz and grpc-go's admin services; "-" disables it.
	AdminAddr string
	// Grace bounds the graceful shutdown.
	Grace time.Duration
	// TLSCA, a PEM CA file, turns on TLS to the backends, verified against it; TLSServerName
	// overrides the name verified; TLSCert and TLSKey are a client certificate (mTLS).
	TLSCA, TLSServerName, TLSCert, TLSKey string
	// Kubeconfig is for kubernetes:/// modes (empty: the pod's service account).
	Kubeconfig string
}

// DefaultModes are the modes `spread frontend` serves without --mode: the sample's.
func DefaultModes() []connect.Mode {
	return []connect.Mode{
		{Name: "clusterip", Target: "dns:///be-srv.default.svc.cluster.local:50051", Policy: connect.PickFirst,
			Description: "ClusterIP Service: one connection, all calls on one pod"},
		{Name: "headless", Target: "dns:///be-srv-lb.default.svc.cluster.local:50051", Policy: connect.RoundRobin,
			Description: "headless Service + round_robin: calls spread over every pod IP"},
	}
}

// DefaultCommandConfig returns `spread frontend`'s defaults, declared once.
func DefaultCommandConfig() CommandConfig {
	cfg := CommandConfig{Config: DefaultConfig(), Addr: ":8081", AdminAddr: ":9091", Grace: 10 * time.Second}
	cfg.Modes = DefaultModes()
	return cfg
}

// RegisterFlags binds c's fields to flags in fs, with c's current values as defaults; the
// first --mode replaces c's modes.
func (c *CommandConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", c.Addr, "HTTP listen address")
	fs.StringVar(&c.AdminAddr, "admin-addr", c.AdminAddr, `admin HTTP address for /metrics, /healthz, /readyz ("-" disables)`)
	fs.StringVar(&c.Name, "name", c.Name, "frontend identity in replies (default $POD_NAME, else the hostname)")
	fs.DurationVar(&c.CallTimeout, "call-timeout", c.CallTimeout, "deadline of each gRPC call")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", c.RequestTimeout, "bound on one HTTP request's work")
	fs.DurationVar(&c.Grace, "grace", c.Grace, "bound on the graceful shutdown")
	fs.StringVar(&c.TLSCA, "tls-ca", c.TLSCA, "PEM CA file: talk TLS to the backends, verifying them against it (plaintext by default)")
	fs.StringVar(&c.TLSServerName, "tls-server-name", c.TLSServerName, "server name to verify in backend certificates (default: from the target)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM client certificate presented to the backends (mTLS; needs --tls-ca and --tls-key)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key of --tls-cert")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig for kubernetes:/// modes (default: the pod's service account)")
	fs.Var(&modesFlag{modes: &c.Modes}, "mode", "a balancing mode NAME=TARGET[,lb=pick_first|round_robin][,health=true]; repeat for more (default: the sample's clusterip and headless)")
}

// Validate reports c's first invalid part, naming the flags. The TLS files themselves are
// read when the command starts.
func (c CommandConfig) Validate() error {
	if err := errors.Join(listenaddr.Check("addr", c.Addr, false), listenaddr.Check("admin-addr", c.AdminAddr, true)); err != nil {
		return err
	}
	if c.Grace <= 0 || c.CallTimeout <= 0 || c.RequestTimeout <= 0 {
		return errors.New("--grace, --call-timeout and --request-timeout must be positive")
	}
	if c.TLSCA == "" && c.TLSCert != "" {
		return errors.New("--tls-cert needs --tls-ca")
	}
	return nil
}

// modesFlag collects repeated --mode NAME=TARGET[,lb=POLICY][,health=true] flags into *modes;
// the first replaces the defaults.
type modesFlag struct {
	modes *[]connect.Mode
	set   bool
}

func (m *modesFlag) String() string {
	if m.modes == nil { // flag's zero-value probe
		return ""
	}
	parts := make([]string, len(*m.modes))
	for i, md := range *m.modes {
		parts[i] = md.Name + "=" + md.Target
	}
	return strings.Join(parts, " ")
}

func (m *modesFlag) Set(v string) error {
	md, err := parseMode(v)
	if err != nil {
		return err
	}
	if !m.set { // the first --mode replaces the defaults
		*m.modes, m.set = nil, true
	}
	*m.modes = append(*m.modes, md)
	return nil
}

// parseMode parses a --mode value, NAME=TARGET[,lb=POLICY][,health=BOOL]. Without lb,
// "clusterip" uses pick_first (one connection, like the sample's plain Dial) and every other
// mode round_robin.
func parseMode(v string) (connect.Mode, error) {
	name, rest, ok := strings.Cut(v, "=")
	if !ok || name == "" || rest == "" {
		return connect.Mode{}, fmt.Errorf("%q: want NAME=TARGET[,lb=pick_first|round_robin][,health=true]", v)
	}
	fields := strings.Split(rest, ",")
	md := connect.Mode{Name: name, Target: fields[0], Policy: connect.RoundRobin}
	if name == "clusterip" {
		md.Policy = connect.PickFirst
	}
	for _, f := range fields[1:] {
		k, val, _ := strings.Cut(f, "=")
		switch k {
		case "lb":
			if val != connect.PickFirst && val != connect.RoundRobin {
				return md, fmt.Errorf("%q: lb=%q: want pick_first or round_robin", v, val)
			}
			md.Policy = val
		case "health":
			switch val {
			case "true":
				md.HealthCheck = true
			case "false":
			default:
				return md, fmt.Errorf("%q: health=%q: want true or false", v, val)
			}
		default:
			return md, fmt.Errorf("%q: unknown option %q (have lb, health)", v, k)
		}
	}
	return md, nil
}
