package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/spread-grpc/spread/internal/admin"
	"github.com/spread-grpc/spread/internal/backend"
)

func runBackend(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("backend", e)
	var cfg backend.Config
	addr := fs.String("addr", ":50051", "gRPC listen address")
	adminAddr := fs.String("admin-addr", ":9090", `admin HTTP address for /metrics, /healthz, /readyz ("-" disables)`)
	fs.StringVar(&cfg.Pod, "pod", backend.DefaultPodName(), "identity echoed in replies (default $POD_NAME, else the hostname)")
	fs.StringVar(&cfg.Zone, "zone", e.getenv("POD_ZONE"), "topology zone echoed in replies (default $POD_ZONE)")
	fs.StringVar(&cfg.PodIP, "pod-ip", e.getenv("POD_IP"), "address echoed in replies (default $POD_IP, else the listener's)")
	fs.DurationVar(&cfg.Grace, "grace", 10*time.Second, "bound on the graceful drain after SIGTERM; then in-flight calls are cancelled")
	fs.DurationVar(&cfg.MaxConnectionAge, "max-connection-age", 0, "close client connections after this age (jittered) so clients re-resolve; 0 = never")
	fs.DurationVar(&cfg.MaxConnectionAgeGrace, "max-connection-age-grace", 0, "how long calls may finish on an aged connection; 0 = unbounded")
	fs.DurationVar(&cfg.MaxStreamAge, "max-stream-age", 0, "end each SayHelloStream after this age (±10% jitter) with the stream-age status, so clients resume it on another pod; 0 = never")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate file; with --tls-key serves TLS (plaintext by default)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key file")
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
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := backend.New(cfg, backend.WithLogger(log), backend.WithRegisterer(reg))
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var adminLis net.Listener
	if *adminAddr != "-" {
		if adminLis, err = net.Listen("tcp", *adminAddr); err != nil {
			lis.Close()
			return fmt.Errorf("admin listen: %w", err)
		}
	}
	log.Info("backend serving", "pod", cfg.Pod, "addr", lis.Addr().String(), "admin", addrOf(adminLis), "tls", cfg.TLSCert != "")
	// The admin server outlives the drain, so /readyz reports it; it stops after the backend.
	actx, stopAdmin := context.WithCancel(context.Background())
	adminErr := make(chan error, 1)
	if adminLis != nil {
		a := admin.New(reg, admin.WithReadiness(srv.Ready))
		go func() { adminErr <- a.Serve(actx, adminLis, time.Second, log) }()
	} else {
		adminErr <- nil
	}
	err = srv.Serve(ctx, lis) // returns after the drain once ctx is done
	stopAdmin()
	if err = errors.Join(err, <-adminErr); err != nil {
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
