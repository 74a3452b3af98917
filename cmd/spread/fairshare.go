package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/endpointslice"
	"github.com/spread-grpc/spread/fairshare"
)

// fairSharePeerClient, if set, is the HTTP client backends ask their peers with (tests map the
// EndpointSlices' 192.0.2.x addresses to loopback with it); nil is fairshare's default.
var fairSharePeerClient *http.Client

// fairShareConfig is spread backend's --fair-share-* flags.
type fairShareConfig struct {
	Service    string // <svc>.<ns>:<port>: peers from its EndpointSlices
	Peers      string // or a fixed comma-separated list of peer IPs
	Kubeconfig string
	Interval   time.Duration
	Policy     fairshare.Policy
}

func (c *fairShareConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.Service, "fair-share-service", "", "shed connections above this backend's fair share of the Service <svc>.<ns>:<port>; peers are its ready EndpointSlice endpoints, asked for their counts on the --admin-addr port (needs list+watch on endpointslices)")
	fs.StringVar(&c.Peers, "fair-share-peers", "", "fair share over a fixed list of peer IPs (comma-separated, this backend's included or not) instead of --fair-share-service")
	fs.StringVar(&c.Kubeconfig, "fair-share-kubeconfig", "", "kubeconfig for --fair-share-service outside a cluster (default: in-cluster)")
	d := fairshare.DefaultPolicy()
	fs.DurationVar(&c.Interval, "fair-share-interval", 5*time.Second, "time between balancing rounds (±20% jitter)")
	fs.Float64Var(&c.Policy.Tolerance, "fair-share-tolerance", d.Tolerance, "shed nothing while every pod holds between mean/(1+t) and mean×(1+t) connections")
	fs.Float64Var(&c.Policy.MaxFraction, "fair-share-max-fraction", d.MaxFraction, "shed at most max(1, fraction × own connections) per round")
	fs.IntVar(&c.Policy.MaxPerRound, "fair-share-max-per-round", d.MaxPerRound, "shed at most this many connections per round")
	fs.DurationVar(&c.Policy.MinAge, "fair-share-min-age", d.MinAge, "never shed a connection younger than this")
}

func (c *fairShareConfig) enabled() bool { return c.Service != "" || c.Peers != "" }

func (c *fairShareConfig) validate(adminAddr string) error {
	if !c.enabled() {
		return nil
	}
	switch {
	case c.Service != "" && c.Peers != "":
		return errors.New("--fair-share-service and --fair-share-peers are exclusive")
	case adminAddr == "-":
		return errors.New("fair share needs the admin port (--admin-addr): peers read each other's counts there")
	case c.Interval <= 0:
		return fmt.Errorf("--fair-share-interval %v must be positive", c.Interval)
	case c.Policy.Tolerance <= 0 || c.Policy.MaxFraction <= 0 || c.Policy.MaxFraction > 1 || c.Policy.MaxPerRound <= 0 || c.Policy.MinAge < 0:
		return errors.New("--fair-share-tolerance and --fair-share-max-per-round must be positive, --fair-share-max-fraction in (0, 1], --fair-share-min-age not negative")
	}
	if c.Service != "" {
		if _, err := endpoint.ParseKey(c.Service); err != nil {
			return fmt.Errorf("--fair-share-service: %w", err)
		}
	}
	for _, ip := range splitList(c.Peers) {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("--fair-share-peers: %q is not an IP address", ip)
		}
	}
	if _, err := adminPort(adminAddr); err != nil {
		return err
	}
	return nil
}

func adminPort(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("--admin-addr %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		return 0, fmt.Errorf("--admin-addr %q: fair share needs a fixed port, shared by every pod", addr)
	}
	return port, nil
}

// options builds the fairshare options and starts following the peers until ctx is done;
// stop waits for that.
func (c *fairShareConfig) options(ctx context.Context, adminAddr string, log *slog.Logger, reg prometheus.Registerer) (opts []fairshare.Option, stop func(), err error) {
	port, err := adminPort(adminAddr)
	if err != nil {
		return nil, nil, err
	}
	peers, err := fairshare.NewHTTPPeers(port, fairSharePeerClient)
	if err != nil {
		return nil, nil, err
	}
	stop = func() {}
	if c.Peers != "" {
		var eps []endpoint.Endpoint
		for _, ip := range splitList(c.Peers) {
			eps = append(eps, endpoint.Endpoint{Address: ip, Ready: true, Serving: true})
		}
		peers.Update(endpoint.NewSet(eps))
	} else {
		key, _ := endpoint.ParseKey(c.Service)
		var rc *rest.Config
		if c.Kubeconfig != "" {
			rc, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
		} else {
			rc, err = rest.InClusterConfig()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("fair share: client configuration (use --fair-share-kubeconfig outside a cluster): %w", err)
		}
		rc.UserAgent = "spread-backend-fairshare"
		client, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, nil, fmt.Errorf("fair share: client: %w", err)
		}
		src := endpointslice.New(client, endpointslice.WithLogger(log), endpointslice.WithRegisterer(reg))
		wait, err := src.Subscribe(ctx, key, peers.Update)
		if err != nil {
			src.Close()
			return nil, nil, fmt.Errorf("fair share: %w", err)
		}
		stop = func() { wait(); src.Close() }
	}
	return []fairshare.Option{fairshare.WithPeers(peers), fairshare.WithInterval(c.Interval, 0.2), fairshare.WithPolicy(c.Policy)}, stop, nil
}
