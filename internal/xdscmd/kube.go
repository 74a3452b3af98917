package xdscmd

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/endpointslice"
	"github.com/spread-grpc/spread/internal/listwatch"
	"github.com/spread-grpc/spread/internal/xds"
	"github.com/spread-grpc/spread/internal/xds/kubeservices"
)

// kubeSources builds the Kubernetes sources: Services (kubeservices) and their
// EndpointSlices (endpointslice), over one client speaking protobuf, and the recorder of
// Events on Services whose configuration is rejected.
func kubeSources(cfg Config, log *slog.Logger, reg prometheus.Registerer) (xds.EndpointSource, xds.ServiceSource, *ServiceEvents, func(), error) {
	var rc *rest.Config
	var err error
	if cfg.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("client configuration (use --kubeconfig outside a cluster): %w", err)
	}
	eps, svcs, closeSrc, err := KubeSourcesForConfig(rc, cfg, log, reg)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ev, err := NewServiceEventsForConfig(rc)
	if err != nil {
		closeSrc()
		return nil, nil, nil, nil, err
	}
	return eps, svcs, ev, func() { ev.Close(); closeSrc() }, nil
}

// KubeSourcesForConfig builds the Kubernetes sources from a REST configuration (tests use
// it with a test API server). close stops the EndpointSlice watches.
func KubeSourcesForConfig(rc *rest.Config, cfg Config, log *slog.Logger, reg prometheus.Registerer) (xds.EndpointSource, xds.ServiceSource, func(), error) {
	jsonRC := rest.CopyConfig(rc) // custom resources (GRPCRoute) speak JSON only
	rc = rest.CopyConfig(rc)
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	rc.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	rc.UserAgent = "spread-xds"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("client: %w", err)
	}
	eps := endpointslice.New(client, endpointslice.WithLogger(log), endpointslice.WithRegisterer(reg))
	opts := []kubeservices.Option{kubeservices.WithLogger(log), kubeservices.WithNamespace(cfg.Namespace)}
	if cfg.AllServices {
		opts = append(opts, kubeservices.WithAllServices())
	}
	var svcs xds.ServiceSource = kubeservices.New(client, opts...)
	if cfg.GRPCRoutes {
		if svcs, err = withGRPCRoutes(jsonRC, svcs, cfg, log); err != nil {
			return nil, nil, nil, err
		}
	}
	return retrySubscribe{Source: eps, after: time.After}, svcs, eps.Close, nil
}

// retrySubscribe retries a Subscribe that failed for a reason a retry may cure (the API
// server unreachable), with backoff from 1 s to 30 s, until ctx ends: the control plane
// waits for a Service's endpoints, as the informer itself would once synced, instead of
// serving none for it. An error no retry cures (Forbidden, ...) is returned at once. The
// source logs the failures (endpointslice: a Warn line at most every 30 s).
type retrySubscribe struct {
	endpoint.Source
	after func(time.Duration) <-chan time.Time
}

func (r retrySubscribe) Subscribe(ctx context.Context, key endpoint.Key, fn func(endpoint.Set)) (func(), error) {
	delay := time.Second
	for {
		wait, err := r.Source.Subscribe(ctx, key, fn)
		if err == nil || ctx.Err() != nil || listwatch.Permanent(err) {
			return wait, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-r.after(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}
