package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// DefaultGrace bounds Serve's shutdown when ServeConfig.Grace is zero.
const DefaultGrace = 10 * time.Second

// ServeConfig is what Serve needs. Server and one of Addr or Listener are required.
type ServeConfig struct {
	// Server is the control plane to serve.
	Server *Server
	// Addr is the ADS (gRPC) listen address, used when Listener is nil.
	Addr string
	// Listener, if set, is served instead of listening on Addr. Serve closes it.
	Listener net.Listener
	// TLS, if set, serves ADS over TLS (with client certificates, if it asks for them).
	TLS *tls.Config
	// Grace bounds the shutdown (default DefaultGrace).
	Grace time.Duration
	// ServerOptions are added after Serve's own (keepalive, TLS, Server.ServerOptions).
	ServerOptions []grpc.ServerOption
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Started, if set, is called with the bound address once Serve listens.
	Started func(addr net.Addr)
}

// Serve serves cfg.Server over gRPC until ctx is done, then shuts down within cfg.Grace: the
// ADS streams end (clients keep their last configuration and reconnect), then the gRPC server
// stops gracefully, forcibly at the end of the grace period. It returns nil after a shutdown
// that ctx asked for, else the error that stopped it (a source that cannot be watched, a
// listener that fails).
//
// The gRPC server pings idle clients every 30 s (10 s timeout), so dead peers of long-lived
// ADS streams are noticed, and lets clients ping every 10 s, even without a stream.
func Serve(ctx context.Context, cfg ServeConfig) error {
	if cfg.Server == nil {
		return errors.New("controlplane: Serve: no Server")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	grace := cfg.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	lis := cfg.Listener
	if lis == nil {
		if cfg.Addr == "" {
			return errors.New("controlplane: Serve: no Addr or Listener")
		}
		var err error
		if lis, err = net.Listen("tcp", cfg.Addr); err != nil {
			return fmt.Errorf("controlplane: listen %s: %w", cfg.Addr, err)
		}
	}
	opts := []grpc.ServerOption{
		// Clients keep one ADS stream for hours; ping idle ones so dead peers are noticed.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	// The ADS codec: every stream's response shares the resources' encoded bytes.
	opts = append(opts, cfg.Server.ServerOptions()...)
	g := grpc.NewServer(append(opts, cfg.ServerOptions...)...)
	cfg.Server.Register(g)

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	errc := make(chan error, 2)
	runDone := make(chan struct{})
	go func() { defer close(runDone); errc <- cfg.Server.Run(runCtx) }()
	go func() {
		if err := g.Serve(lis); err != nil {
			errc <- fmt.Errorf("controlplane: serve ADS: %w", err)
		}
	}()
	if cfg.Started != nil {
		cfg.Started(lis.Addr())
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	// End the ADS streams (Run does when its context ends), then stop the server, all
	// bounded by the grace period.
	stopRun()
	timer := time.AfterFunc(grace, g.Stop)
	defer timer.Stop()
	wait := time.NewTimer(grace)
	defer wait.Stop()
	select {
	case <-runDone:
	case <-wait.C:
		log.Warn("controlplane: sources did not stop within the grace period")
	}
	g.GracefulStop()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
