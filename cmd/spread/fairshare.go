package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/endpointslice"
	"github.com/spread-grpc/spread/fairshare"
	"github.com/spread-grpc/spread/internal/backend"
)

// fairSharePeerClient, if set, is the HTTP client backends ask their peers with (tests map the
// EndpointSlices' 192.0.2.x addresses to loopback with it); nil is fairshare's default.
var fairSharePeerClient *http.Client

// fairShareOptions builds the fairshare options of cfg.FairShare and starts following the
// peers until ctx is done; stop waits for that.
func fairShareOptions(ctx context.Context, cfg backend.CommandConfig, log *slog.Logger, reg prometheus.Registerer) (opts []fairshare.Option, stop func(), err error) {
	c := cfg.FairShare
	port, err := cfg.FairSharePort()
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
		for _, ip := range c.PeerIPs() {
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
