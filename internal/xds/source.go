package xds

import (
	"context"

	"github.com/spread-grpc/spread/endpoint"
)

// EndpointSource yields the endpoint sets of Service ports: endpoint.Source, whose contract
// it keeps (the Kubernetes EndpointSlice source and the demo's local cluster both implement
// it). The server subscribes to every served key concurrently; a Subscribe error is logged and
// the key served with no endpoints.
type EndpointSource = endpoint.Source

// Service is one Service port the control plane serves.
type Service struct {
	// Key is subscribed to at the EndpointSource and names the resources.
	Key endpoint.Key
	// Aliases are other spellings of the port (e.g. the number of a named port): each adds
	// a Listener "<svc>.<ns>:<alias>" pointing at the same route, cluster and endpoints.
	Aliases []string
	// Annotations configure the Service (see ParseServiceConfig).
	Annotations map[string]string
	// UID identifies the source object (Kubernetes: the Service's UID), for reports about
	// it such as Events; it may be empty.
	UID string
	// Routes, if not nil, are the Service's route rules (routes.go): its RouteConfiguration
	// then sends calls to the rules' backends instead of to its own cluster.
	Routes []RouteRule
}

// ServiceSource announces which Service ports to serve.
type ServiceSource interface {
	// WatchServices calls fn with the whole list of Service ports to serve: first the
	// complete current list (after the source has synced), then the whole list again after
	// each change, from one goroutine, until ctx is done. As endpoint.Source.Subscribe, it
	// may block until the first sync, and returns an error (Forbidden, say), and no watch,
	// when that fails; wait blocks until delivery has stopped (call it after cancelling
	// ctx). fn must not modify the list.
	WatchServices(ctx context.Context, fn func([]Service)) (wait func(), err error)
}

// StaticServices is a ServiceSource with a fixed list (the demo, or keys given on the
// command line).
type StaticServices []Service

var _ ServiceSource = StaticServices(nil)

// WatchServices delivers the list once.
func (s StaticServices) WatchServices(ctx context.Context, fn func([]Service)) (func(), error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if ctx.Err() == nil {
			fn(s)
		}
	}()
	return func() { <-done }, nil
}

// ServicesFromKeys serves keys with default (round_robin) configuration.
func ServicesFromKeys(keys ...endpoint.Key) StaticServices {
	out := make(StaticServices, len(keys))
	for i, k := range keys {
		out[i] = Service{Key: k}
	}
	return out
}
