package modes

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	grpcxds "google.golang.org/grpc/xds" // the grpc-go xDS client: xds:/// resolver and balancers

	"github.com/spread-grpc/spread/controlplane"
	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/connect"
)

func buildXDSMode(c *cluster.Cluster, _ Options) (connect.Mode, error) {
	return xdsMode(c, cluster.XDSKey)
}

// buildXDSTunedMode dials the annotated Service: the control plane sends outlier detection
// and the call deadline; the client adds only keepalive (a dial option; no service config,
// which an xDS channel would ignore anyway).
func buildXDSTunedMode(c *cluster.Cluster, _ Options) (connect.Mode, error) {
	m, err := xdsMode(c, cluster.XDSTunedKey)
	if err != nil {
		return m, err
	}
	m.DialOptions = append(m.DialOptions, grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time: TunedKeepaliveTime, Timeout: TunedKeepaliveTimeout,
	}))
	return m, nil
}

func xdsMode(c *cluster.Cluster, key endpoint.Key) (connect.Mode, error) {
	if c.XDSAddr() == "" {
		return connect.Mode{}, fmt.Errorf("the xDS control plane is disabled (demo --xds-addr -): %w", ErrClusterLacks)
	}
	// No zone in the node: the client gets every zone's endpoints at one priority.
	bs, err := controlplane.Bootstrap(controlplane.BootstrapConfig{ServerURI: c.XDSAddr(), NodeID: "fe-demo"})
	if err != nil {
		return connect.Mode{}, err
	}
	// The bootstrap goes to this one resolver, not to a process-wide environment variable.
	//
	// grpc-go 1.85's supported way to configure its xDS client is process-wide: the
	// GRPC_XDS_BOOTSTRAP (file) or GRPC_XDS_BOOTSTRAP_CONFIG (JSON) environment variable,
	// captured when the package initialises, i.e. before main runs. The demo learns its
	// control plane's address only at run time (a free port by default), in the same process,
	// so that way is closed to it short of re-executing itself; the one per-channel API grpc-go
	// has is NewXDSResolverWithConfigForTesting, labelled testing-only and experimental. The
	// demo is a simulation, so it uses that API, here only. Real clients (examples/go, the
	// frontend's xds mode in a cluster) use GRPC_XDS_BOOTSTRAP; see docs/xds.md.
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(bs)
	if err != nil {
		return connect.Mode{}, fmt.Errorf("xds resolver: %w", err)
	}
	return connect.Mode{Target: "xds:///" + key.String(), Resolvers: []resolver.Builder{rb}}, nil
}

// buildXDSCanaryMode dials cluster.CanaryService: the control plane's route splits its
// calls between be-srv and be-v2 (cluster/canary.go).
func buildXDSCanaryMode(c *cluster.Cluster, _ Options) (connect.Mode, error) {
	if !c.HasCanary() {
		return connect.Mode{}, fmt.Errorf("no canary (demo --canary-weight 0): %w", ErrClusterLacks)
	}
	return xdsMode(c, endpoint.Key{Namespace: cluster.Namespace, Service: cluster.CanaryService, Port: cluster.PortName})
}
