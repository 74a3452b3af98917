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
	cfg := backend.DefaultConfig()
	addr := fs.String("addr", ":50051", "gRPC listen address")
	adminAddr := fs.String("admin-addr", ":9090", `admin HTTP address for /metrics, /healthz, /readyz ("-" disables)`)
	fs.StringVar(&cfg.Pod, "pod", backend.DefaultPodName(), "identity echoed in replies (default $POD_NAME, else the hostname)")
	fs.StringVar(&cfg.Zone, "zone", e.getenv("POD_ZONE"), "topology zone echoed in replies (default $POD_ZONE)")
	fs.StringVar(&cfg.PodIP, "pod-ip", e.getenv("POD_IP"), "address echoed in replies (default $POD_IP, else the listener's)")
	fs.DurationVar(&cfg.Grace, "grace", cfg.Grace, "bound on the graceful drain after SIGTERM; then in-flight calls are cancelled")
	fs.DurationVar(&cfg.MaxConnectionAge, "max-connection-age", 0, "close client connections after this age (jittered) so clients re-resolve; 0 = never")
	fs.DurationVar(&cfg.MaxConnectionAgeGrace, "max-connection-age-grace", 0, "how long calls may finish on an aged connection; 0 = unbounded")
	fs.DurationVar(&cfg.MaxStreamAge, "max-stream-age", 0, "end each SayHelloStream after this age (±10% jitter) with the stream-age status, so clients resume it on another pod; 0 = never")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate file; with --tls-key serves TLS (plaintext by default)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key file")
	fs.StringVar(&cfg.TLSClientCA, "tls-client-ca", "", "PEM CA bundle: require client certificates signed by it (mTLS); files are re-read when they change")
	healthAddr := fs.String("health-addr", "-", `plaintext gRPC address serving only grpc.health.v1 (for kubelet gRPC probes when --addr requires mTLS; "-" disables)`)
	orcaCapacity := fs.Float64("orca-capacity", 0, "send ORCA load reports (for weighted_round_robin): calls/s at 100% utilization; 0 = off")
	var fair fairShareConfig
	fair.register(fs)
	newLog := logFlags(fs, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	if err := fair.validate(*adminAddr); err != nil {
		return usageError{err}
	}
	if err := errors.Join(checkAddr("addr", *addr, false), checkAddr("admin-addr", *adminAddr, true), checkAddr("health-addr", *healthAddr, true)); err != nil {
		return usageError{err}
	}
	log, err := newLog()
	if err != nil {
		return err
	}
	reg := admin.NewRegistry()
	opts := []backend.Option{backend.WithLogger(log), backend.WithRegisterer(reg)}
	if *orcaCapacity < 0 {
		return usageError{fmt.Errorf("--orca-capacity %v: must not be negative", *orcaCapacity)}
	}
	if *orcaCapacity > 0 {
		r, err := orcaload.New(orcaload.WithCapacity(*orcaCapacity))
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
	if fair.enabled() {
		fctx, stopPeers := context.WithCancel(context.Background())
		fopts, wait, err := fair.options(fctx, *adminAddr, log, reg)
		if err != nil {
			stopPeers()
			return err
		}
		defer func() { stopPeers(); wait() }()
		opts = append(opts, backend.WithFairShare(fopts...))
	}
	srv, err := backend.New(cfg, opts...)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	adminLis, err := admin.Listen(*adminAddr)
	if err != nil {
		lis.Close()
		return err
	}
	var healthLis net.Listener
	if *healthAddr != "-" {
		if healthLis, err = net.Listen("tcp", *healthAddr); err != nil {
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
