package xdscmd

import (
	"fmt"
	"log/slog"

	"k8s.io/client-go/rest"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/spread-grpc/spread/internal/grpcroute"
	"github.com/spread-grpc/spread/internal/xds"
)

// withGRPCRoutes wraps svcs so that GRPCRoutes attached to its Services shape their routing,
// if the API server serves GRPCRoutes; otherwise it returns svcs as it is (the CRD is
// looked for once, at start).
func withGRPCRoutes(rc *rest.Config, svcs xds.ServiceSource, cfg Config, log *slog.Logger) (xds.ServiceSource, error) {
	gc, err := gatewayclient.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("gateway api client: %w", err)
	}
	ok, err := grpcroute.CRDInstalled(gc)
	if err != nil {
		return nil, err
	}
	if !ok {
		log.Info("xds: the GRPCRoute CRD (gateway.networking.k8s.io/v1) is not installed; GRPCRoutes are not watched")
		return svcs, nil
	}
	log.Info("xds: watching GRPCRoutes attached to served Services")
	return grpcroute.NewKubernetes(svcs, gc, grpcroute.WithLogger(log), grpcroute.WithNamespace(cfg.Namespace)), nil
}
