package demo

import (
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/resolver"

	"github.com/spread-grpc/spread/internal/frontend"
	"github.com/spread-grpc/spread/resolver/dnsrefresh"
	kuberesolver "github.com/spread-grpc/spread/resolver/kubernetes"
)

// ModeFactory builds one frontend mode wired to the demo cluster. Modes plug into the demo,
// the dashboard and the comparison by name: add a factory to the registry below.
type ModeFactory struct {
	Name        string
	Description string
	Build       func(c *Cluster, o ModeOptions) (frontend.Mode, error)
}

// ModeOptions tunes how modes are built.
type ModeOptions struct {
	// DNSRefreshInterval is the dns-refresh mode's interval (default 5s).
	DNSRefreshInterval time.Duration
}

// modeRegistry lists every mode the demo knows, in display order.
var modeRegistry = []ModeFactory{
	{
		Name:        "clusterip",
		Description: "ClusterIP Service: one connection through the L4 VIP, so every call lands on one pod",
		Build: func(c *Cluster, _ ModeOptions) (frontend.Mode, error) {
			return frontend.Mode{Target: c.Target(ClusterIPService), Policy: frontend.PickFirst}, nil
		},
	},
	{
		Name:        "headless",
		Description: "headless Service + dns:/// + round_robin: every pod IP, one call each in turn (DNS read once)",
		Build: func(c *Cluster, _ ModeOptions) (frontend.Mode, error) {
			return frontend.Mode{Target: c.Target(HeadlessService), Policy: frontend.RoundRobin}, nil
		},
	},
	{
		Name:        "dns-refresh",
		Description: "headless Service + dns+refresh:/// + round_robin: DNS re-read on an interval, its TTL and connection loss",
		Build: func(c *Cluster, o ModeOptions) (frontend.Mode, error) {
			iv := o.DNSRefreshInterval
			if iv == 0 {
				iv = dnsrefresh.DefaultInterval
			}
			minIv := min(dnsrefresh.DefaultMinInterval, iv)
			b, err := dnsrefresh.NewBuilder(dnsrefresh.WithInterval(iv), dnsrefresh.WithMinInterval(minIv))
			if err != nil {
				return frontend.Mode{}, err
			}
			return frontend.Mode{
				Target:    fmt.Sprintf("%s://%s/%s.:%d", dnsrefresh.Scheme, c.DNSAddr(), c.ServiceName(HeadlessService), c.Port()),
				Policy:    frontend.RoundRobin,
				Resolvers: []resolver.Builder{b},
			}, nil
		},
	},
	{
		Name:        "kube",
		Description: "kubernetes:/// resolver: follows the Service's endpoints as they change (here the demo's endpoint model stands in for the EndpointSlice watch)",
		Build: func(c *Cluster, _ ModeOptions) (frontend.Mode, error) {
			b, err := kuberesolver.NewBuilder(kuberesolver.WithSource(c), kuberesolver.WithLogger(c.log))
			if err != nil {
				return frontend.Mode{}, err
			}
			return frontend.Mode{
				Target:    fmt.Sprintf("%s:///%s.%s:%s", kuberesolver.Scheme, HeadlessService, Namespace, PortName),
				Resolvers: []resolver.Builder{b},
			}, nil
		},
	},
	{
		Name:        "xds",
		Description: "proxyless xDS: the demo's control plane pushes endpoint changes to the grpc-go xDS client (round_robin)",
		Build:       buildXDSMode,
	},
}

// ModeNames lists the modes the demo knows, in display order.
func ModeNames() []string {
	names := make([]string, len(modeRegistry))
	for i, f := range modeRegistry {
		names[i] = f.Name
	}
	return names
}

// BuildModes builds the named modes (all of them when names is empty) for cluster c.
func BuildModes(c *Cluster, o ModeOptions, names ...string) ([]frontend.Mode, error) {
	if len(names) == 0 {
		names = ModeNames()
	}
	var out []frontend.Mode
	for _, n := range names {
		i := slices.IndexFunc(modeRegistry, func(f ModeFactory) bool { return f.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("demo: unknown mode %q (have %v)", n, ModeNames())
		}
		m, err := modeRegistry[i].Build(c, o)
		if err != nil {
			return nil, fmt.Errorf("demo: mode %s: %w", n, err)
		}
		m.Name, m.Description = n, modeRegistry[i].Description
		out = append(out, m)
	}
	return out, nil
}
