// Package controlplane is Spread's proxyless xDS control plane as a library: an ADS server
// that feeds grpc-go (and other gRPC) `xds:///` clients from Spread's endpoint model, so that
// calls spread evenly over a Service's pods and follow them as they come and go.
//
// A platform team embeds it in three steps: pick the sources, build the Server, Serve it.
//
//	// Endpoints: Kubernetes EndpointSlices (package endpointslice), or any endpoint.Source.
//	eps := endpointslice.New(client)
//	defer eps.Close()
//	// Which Service ports to serve: annotated Services (package controlplane/kubeservices),
//	// or a fixed list.
//	svcs := kubeservices.New(client)
//	srv, err := controlplane.New(eps, svcs, controlplane.WithRegisterer(reg))
//	...
//	err = controlplane.Serve(ctx, controlplane.ServeConfig{Addr: ":18000", Server: srv})
//
// Clients then need a bootstrap naming the control plane (Bootstrap renders one; `spread xds
// bootstrap` writes it to a file for GRPC_XDS_BOOTSTRAP) and dial
// "xds:///<service>.<namespace>:<port>".
//
// # What it serves
//
// For every Service port the ServiceSource announces, the four resources a proxyless client
// needs, all named after the endpoint key "<service>.<namespace>:<port>":
//
//	Listener              "<svc>.<ns>:<port>"  API listener, HttpConnectionManager → RDS, router filter
//	RouteConfiguration    "<svc>.<ns>:<port>"  one virtual host "*", prefix "/" → the cluster
//	Cluster               "<svc>.<ns>:<port>"  EDS over ADS, load_balancing_policy from annotations
//	ClusterLoadAssignment "<svc>.<ns>:<port>"  one locality per zone, explicit non-zero weights
//
// Each Service's annotations (the Annotation* constants, parsed by ParseServiceConfig) choose
// its load-balancing policy, outlier detection and call timeout. A Service whose annotations
// are malformed keeps its last good configuration; the error is logged, counted and passed to
// WithConfigErrorHandler, and no other Service is affected.
//
// # Sources
//
// The control plane reads its input only through two interfaces: EndpointSource (which is
// endpoint.Source: its contract, and the conformance suite every implementation runs, are in
// package endpoint and endpoint/endpointtest) and ServiceSource. StaticServices and
// ServicesFromKeys serve a fixed list; package controlplane/kubeservices watches Services.
//
// # Serving
//
// Serve runs the Server on a gRPC server with the keepalive settings a long-lived ADS stream
// needs, optional TLS, and a bounded graceful shutdown when ctx ends: streams end (clients
// keep their last configuration and reconnect elsewhere), then the gRPC server stops. A
// program that needs its own gRPC server calls Server.Register and Server.Run instead.
//
// The Server's admin views (ReadyHandler for /readyz, DebugHandler for /debug/xds, Clients,
// Nacks, Dump) are for the program's admin HTTP server; `spread xds` serves them.
//
// Everything else — the per-zone snapshot cache, resource building and validation — stays
// internal (internal/xds) and may change without notice; this package is the API that does
// not.
package controlplane

import (
	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/xds"
)

// Server is the control plane: create it with New, run it with Serve (or Register + Run).
type Server = xds.Server

// Option configures a Server (see the With* functions).
type Option = xds.Option

// EndpointSource yields the endpoint sets of Service ports; see endpoint.Source for its
// contract.
type EndpointSource = endpoint.Source

// ServiceSource announces which Service ports to serve.
type ServiceSource = xds.ServiceSource

// Service is one Service port the control plane serves.
type Service = xds.Service

// StaticServices is a ServiceSource with a fixed list.
type StaticServices = xds.StaticServices

// ServiceConfig is a Service's parsed configuration (see ParseServiceConfig).
type ServiceConfig = xds.ServiceConfig

// OutlierDetection is ServiceConfig's outlier detection (gRFC A50).
type OutlierDetection = xds.OutlierDetection

// LBPolicy is a load-balancing policy a Cluster asks for.
type LBPolicy = xds.LBPolicy

// ConfigError is the error ParseServiceConfig returns, naming the annotation at fault.
type ConfigError = xds.ConfigError

// BootstrapConfig describes a client's bootstrap (see Bootstrap).
type BootstrapConfig = xds.BootstrapConfig

// Views of the Server's state, for admin endpoints.
type (
	Dump         = xds.Dump
	ServiceDump  = xds.ServiceDump
	ZoneDump     = xds.ZoneDump
	ClientStatus = xds.ClientStatus
	TypeStatus   = xds.TypeStatus
	Nack         = xds.Nack
)

var (
	// New returns a Server over the two sources.
	New = xds.New
	// WithLogger sets the Server's logger.
	WithLogger = xds.WithLogger
	// WithRegisterer registers the Server's metrics (spread_xds_*) with a Registerer.
	WithRegisterer = xds.WithRegisterer
	// WithZonePreference makes a client's own zone preferred while it has at least this many
	// healthy endpoints (0: no zone preference).
	WithZonePreference = xds.WithZonePreference
	// WithMaxZones bounds how many client zones get a snapshot of their own.
	WithMaxZones = xds.WithMaxZones
	// WithUnknownVersionHold sets how long a client that reports a version this Server never
	// sent (after a failover) is held before it gets the current one.
	WithUnknownVersionHold = xds.WithUnknownVersionHold
	// WithConfigErrorHandler is called for every rejected Service configuration.
	WithConfigErrorHandler = xds.WithConfigErrorHandler

	// ServicesFromKeys serves keys with the default (round_robin) configuration.
	ServicesFromKeys = xds.ServicesFromKeys
	// ParseServiceConfig parses a Service's annotations.
	ParseServiceConfig = xds.ParseServiceConfig
	// DefaultServiceConfig is the configuration of a Service without annotations.
	DefaultServiceConfig = xds.DefaultServiceConfig
	// DefaultOutlierDetection is outlier detection's configuration when only turned on.
	DefaultOutlierDetection = xds.DefaultOutlierDetection
	// Bootstrap renders a client's bootstrap JSON.
	Bootstrap = xds.Bootstrap
)

// The load-balancing policies.
const (
	RoundRobin         = xds.RoundRobin
	LeastRequest       = xds.LeastRequest
	RingHash           = xds.RingHash
	WeightedRoundRobin = xds.WeightedRoundRobin
	PickFirst          = xds.PickFirst
)

// The Service annotations the control plane reads (see internal/xds for each one's range).
const (
	AnnotationPrefix               = xds.AnnotationPrefix
	AnnotationLBPolicy             = xds.AnnotationLBPolicy
	AnnotationHashHeader           = xds.AnnotationHashHeader
	AnnotationChoiceCount          = xds.AnnotationChoiceCount
	AnnotationWRRBlackout          = xds.AnnotationWRRBlackout
	AnnotationWRRUpdate            = xds.AnnotationWRRUpdate
	AnnotationWRRExpiration        = xds.AnnotationWRRExpiration
	AnnotationWRROOB               = xds.AnnotationWRROOB
	AnnotationXDS                  = xds.AnnotationXDS
	AnnotationOutlierDetection     = xds.AnnotationOutlierDetection
	AnnotationODThreshold          = xds.AnnotationODThreshold
	AnnotationODMinimumHosts       = xds.AnnotationODMinimumHosts
	AnnotationODRequestVolume      = xds.AnnotationODRequestVolume
	AnnotationODInterval           = xds.AnnotationODInterval
	AnnotationODBaseEjection       = xds.AnnotationODBaseEjection
	AnnotationODMaxEjectionPercent = xds.AnnotationODMaxEjectionPercent
	AnnotationCallTimeout          = xds.AnnotationCallTimeout
	AnnotationCallTimeoutMethods   = xds.AnnotationCallTimeoutMethods
	// OutlierFailurePercentage is the one mode AnnotationOutlierDetection takes.
	OutlierFailurePercentage = xds.OutlierFailurePercentage
)
