package cluster

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/spread-grpc/spread/controlplane"
	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/grpcroute"
)

// xdsControlPlane is the demo's proxyless xDS control plane: Spread's ADS server fed by the
// cluster's endpoint model, as `spread xds` is fed by EndpointSlices in a real cluster. Both
// run it with controlplane.Serve.
type xdsControlPlane struct {
	addr   string
	cancel context.CancelFunc
	done   chan struct{}
}

// XDSKey is the Service port the demo's control plane serves: clients dial
// xds:///be-srv.default:grpc, or xds:///be-srv.default:50051 (the port's number).
var XDSKey = endpoint.Key{Namespace: Namespace, Service: ClusterIPService, Port: PortName}

// XDSTunedKey is a second Service over the same pods (same selector, as two Services can be
// in Kubernetes) whose annotations ask the control plane for outlier detection and a call
// deadline on SayHello: the xDS counterpart of the tuned modes' service config (package
// modes). Clients dial xds:///be-srv-tuned.default:grpc.
var XDSTunedKey = endpoint.Key{Namespace: Namespace, Service: TunedService, Port: PortName}

// Settings of TunedService, the same as the tuned client modes use (package modes re-exports
// them), so that a frozen pod (TCP open, nothing answers) is ejected quickly.
const (
	// TunedCallTimeout is the per-call deadline (service config method timeout on SayHello):
	// calls to a frozen pod fail after it, feeding outlier detection.
	TunedCallTimeout = 500 * time.Millisecond
	// TunedEjectionInterval is how often outlier detection looks at the counts.
	TunedEjectionInterval = 500 * time.Millisecond
)

// xdsTunedAnnotations are TunedService's annotations: failure-percentage outlier detection
// (its defaults are the tuned modes' settings) and TunedCallTimeout on SayHello only, so
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
	svcs := controlplane.StaticServices{{Key: XDSKey, Aliases: num}, {Key: XDSTunedKey, Aliases: num, Annotations: xdsTunedAnnotations}}
	log := c.log.With("component", "xds")
	var src controlplane.ServiceSource = svcs
	if c.HasCanary() {
		svcs = append(svcs, controlplane.Service{Key: endpoint.Key{Namespace: Namespace, Service: CanaryService, Port: PortName}, Aliases: num},
			controlplane.Service{Key: endpoint.Key{Namespace: Namespace, Service: V2Service, Port: PortName}, Aliases: num})
		routes, err := CanaryRoutes(c.Port(), c.cfg.CanaryWeight)
		if err != nil {
			return nil, err
		}
		src = grpcroute.NewStatic(svcs, routes, grpcroute.WithLogger(log))
	}
	srv, err := controlplane.New(c, src, controlplane.WithLogger(log))
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
