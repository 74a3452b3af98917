// Package kubeservices is the control plane's Kubernetes ServiceSource: it watches Services
// (one informer) and announces every TCP port of each Service that opts in — with the
// spread.dev/lb-policy annotation or spread.dev/xds: "true" — or of every Service, with
// WithAllServices. A named port is announced by name ("<svc>.<ns>:grpc") with its number as
// an alias, so clients may dial either.
//
// WatchServices blocks until the first list has succeeded and returns its error (Forbidden
// when RBAC lacks list+watch on services) instead of waiting. It needs list and watch on
// services (see deploy/components/xds).
package kubeservices

import (
	"github.com/spread-grpc/spread/controlplane"
	"github.com/spread-grpc/spread/internal/xds/kubeservices"
)

// Source watches Services; it implements controlplane.ServiceSource.
type Source = kubeservices.Source

var _ controlplane.ServiceSource = (*Source)(nil)

// Option configures a Source.
type Option = kubeservices.Option

var (
	// New returns a Source reading Services through a clientset.
	New = kubeservices.New
	// WithNamespace limits the watch to one namespace (default: all).
	WithNamespace = kubeservices.WithNamespace
	// WithAllServices serves every Service, not only the ones that opt in.
	WithAllServices = kubeservices.WithAllServices
	// WithLogger sets the logger.
	WithLogger = kubeservices.WithLogger
	// OptedIn reports whether a Service's annotations ask to be served.
	OptedIn = kubeservices.OptedIn
)
