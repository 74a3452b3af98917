package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"

	"github.com/spread-grpc/spread/internal/admin"
	"github.com/spread-grpc/spread/internal/backend"
	"github.com/spread-grpc/spread/internal/orcaload"
)

func runBackend(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("backend", e)
	setUsage(fs, e, backendUsage)
	cfg := backend.DefaultCommandConfig()
	cfg.Pod, cfg.Zone, cfg.PodIP = backend.DefaultPodName(), e.getenv("POD_ZONE"), e.getenv("POD_IP")
	cfg.RegisterFlags(fs)
	newLog := logFlags(fs, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	log, err := newLog()
	if err != nil {
		return err
	}
	reg := admin.NewRegistry()
	opts := []backend.Option{backend.WithLogger(log), backend.WithRegisterer(reg)}
	if cfg.ORCACapacity > 0 {
		r, err := orcaload.New(orcaload.WithCapacity(cfg.ORCACapacity))
		if err != nil {
			return usageError{err}
		}
		opts = append(opts, backend.WithServerOptions(r.ServerOptions()...),
			backend.WithService(func(s *grpc.Server) {
				if err := r.Register(s); err != nil {
					log.Error("ORCA service not registered", "err", err)
				}
			}))
	}
	if cfg.FairShare.Enabled() {
		fctx, stopPeers := context.WithCancel(context.Background())
		fopts, wait, err := fairShareOptions(fctx, cfg, log, reg)
		if err != nil {
			stopPeers()
			return err
		}
		defer func() { stopPeers(); wait() }()
		opts = append(opts, backend.WithFairShare(fopts...))
	}
	srv, err := backend.New(cfg.Config, opts...)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	adminLis, err := admin.Listen(cfg.AdminAddr)
	if err != nil {
		lis.Close()
		return err
	}
	var healthLis net.Listener
	if cfg.HealthAddr != "-" {
		if healthLis, err = net.Listen("tcp", cfg.HealthAddr); err != nil {
			lis.Close()
			if adminLis != nil {
				adminLis.Close()
			}
			return fmt.Errorf("health listen: %w", err)
		}
		hs := grpc.NewServer()
		srv.RegisterHealth(hs)
		go hs.Serve(healthLis) //nolint:errcheck // returns when stopped below
		defer hs.Stop()        // after the drain: probes see NOT_SERVING while it runs
	}
	log.Info("backend serving", "pod", cfg.Pod, "addr", lis.Addr().String(), "admin", addrOf(adminLis),
		"health", addrOf(healthLis), "tls", cfg.TLSCert != "", "mtls", cfg.TLSClientCA != "")
	// The admin server outlives the drain, so /readyz reports it; it stops after the backend.
	actx, stopAdmin := context.WithCancel(context.Background())
	aopts := []admin.Option{admin.WithReadiness(srv.Ready)}
	if f := srv.FairShare(); f != nil {
		aopts = append(aopts, admin.WithHandler("GET /fairshare", f.Handler()))
	}
	running := admin.New(reg, aopts...).Start(actx, adminLis, time.Second, log)
	err = srv.Serve(ctx, lis) // returns after the drain once ctx is done
	stopAdmin()
	if err = errors.Join(err, running.Wait()); err != nil {
		return err
	}
	log.Info("backend stopped", "pod", cfg.Pod)
	return nil
}

func addrOf(l net.Listener) string {
	if l == nil {
		return "-"
	}
	return l.Addr().String()
}
