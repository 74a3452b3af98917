package demo

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	grpcxds "google.golang.org/grpc/xds" // the grpc-go xDS client: xds:/// resolver and balancers

	"github.com/spread-grpc/spread/controlplane"
	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/frontend"
)

// xdsControlPlane is the demo's proxyless xDS control plane: Spread's ADS server fed by the
// cluster's endpoint model, as `spread xds` is fed by EndpointSlices in a real cluster. Both
// run it with controlplane.Serve.
type xdsControlPlane struct {
	addr   string
	cancel context.CancelFunc
	done   chan struct{}
}

// xdsKey is the Service port the demo's control plane serves: clients dial
// xds:///be-srv.default:grpc, or xds:///be-srv.default:50051 (the port's number).
var xdsKey = endpoint.Key{Namespace: Namespace, Service: ClusterIPService, Port: PortName}

// xdsTunedKey is a second Service over the same pods (same selector, as two Services can be
// in Kubernetes) whose annotations ask the control plane for outlier detection and a call
// deadline on SayHello: the xDS counterpart of tunedServiceConfig. Clients dial
// xds:///be-srv-tuned.default:grpc.
var xdsTunedKey = endpoint.Key{Namespace: Namespace, Service: TunedService, Port: PortName}

// xdsTunedAnnotations are TunedService's annotations: failure-percentage outlier detection
// (its defaults are tunedServiceConfig's settings) and TunedCallTimeout on SayHello only, so
// long-lived streams are not cut.
var xdsTunedAnnotations = map[string]string{
	controlplane.AnnotationOutlierDetection:   controlplane.OutlierFailurePercentage,
	controlplane.AnnotationODInterval:         TunedEjectionInterval.String(),
	controlplane.AnnotationCallTimeout:        TunedCallTimeout.String(),
	controlplane.AnnotationCallTimeoutMethods: "echo.EchoServer/SayHello",
}

func startXDS(c *Cluster, addr string) (*xdsControlPlane, error) {
	// Each port is also served under its number, as `spread xds` serves a named Service port:
	// grpc-js and other non-Go clients cannot dial a named port (see docs/xds.md).
	num := []string{strconv.Itoa(c.Port())}
	svcs := controlplane.StaticServices{{Key: xdsKey, Aliases: num}, {Key: xdsTunedKey, Aliases: num, Annotations: xdsTunedAnnotations}}
	log := c.log.With("component", "xds")
	srv, err := controlplane.New(c, svcs, controlplane.WithLogger(log))
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo: xds control plane: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cp := &xdsControlPlane{addr: lis.Addr().String(), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(cp.done)
		if err := controlplane.Serve(ctx, controlplane.ServeConfig{Server: srv, Listener: lis, Grace: xdsGrace, Logger: log}); err != nil {
			c.log.Error("xds control plane stopped", "err", err)
		}
	}()
	return cp, nil
}

// xdsGrace bounds the demo control plane's shutdown.
const xdsGrace = time.Second

// stop ends the ADS streams and the server (within xdsGrace). It reports ctx ending first,
// but still waits for the server, which xdsGrace bounds.
func (cp *xdsControlPlane) stop(ctx context.Context) error {
	cp.cancel()
	select {
	case <-cp.done:
		return nil
	case <-ctx.Done():
		<-cp.done
		return fmt.Errorf("demo: xds control plane: %w", ctx.Err())
	}
}

// XDSAddr is the demo's xDS control plane address ("" when disabled).
func (c *Cluster) XDSAddr() string {
	if c.xds == nil {
		return ""
	}
	return c.xds.addr
}

func buildXDSMode(c *Cluster, _ ModeOptions) (frontend.Mode, error) {
	return xdsMode(c, xdsKey)
}

// buildXDSTunedMode dials the annotated Service: the control plane sends outlier detection
// and the call deadline; the client adds only keepalive (a dial option; no service config,
// which an xDS channel would ignore anyway).
func buildXDSTunedMode(c *Cluster, _ ModeOptions) (frontend.Mode, error) {
	m, err := xdsMode(c, xdsTunedKey)
	if err != nil {
		return m, err
	}
	m.DialOptions = append(m.DialOptions, grpc.WithKeepaliveParams(keepalive.ClientParameters{
		Time: TunedKeepaliveTime, Timeout: TunedKeepaliveTimeout,
	}))
	return m, nil
}

func xdsMode(c *Cluster, key endpoint.Key) (frontend.Mode, error) {
	if c.XDSAddr() == "" {
		return frontend.Mode{}, fmt.Errorf("the xDS control plane is disabled (demo --xds-addr -): %w", ErrClusterLacks)
	}
	// No zone in the node: the client gets every zone's endpoints at one priority.
	bs, err := controlplane.Bootstrap(controlplane.BootstrapConfig{ServerURI: c.XDSAddr(), NodeID: "fe-demo"})
	if err != nil {
		return frontend.Mode{}, err
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
		return frontend.Mode{}, fmt.Errorf("xds resolver: %w", err)
	}
	return frontend.Mode{Target: "xds:///" + key.String(), Resolvers: []resolver.Builder{rb}}, nil
}
