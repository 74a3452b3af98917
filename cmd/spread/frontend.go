package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	grpcadmin "google.golang.org/grpc/admin"
	"google.golang.org/grpc/credentials"
	_ "google.golang.org/grpc/xds" // the xds:/// resolver for xds modes (bootstrap from $GRPC_XDS_BOOTSTRAP)

	"github.com/spread-grpc/spread/internal/admin"
	"github.com/spread-grpc/spread/internal/dashboard"
	"github.com/spread-grpc/spread/internal/frontend"
	"github.com/spread-grpc/spread/internal/tlsfiles"
	"github.com/spread-grpc/spread/resolver/dnsrefresh"
	kuberesolver "github.com/spread-grpc/spread/resolver/kubernetes"
)

func runFrontend(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("frontend", e)
	setUsage(fs, e, frontendUsage)
	cfg := frontend.DefaultCommandConfig()
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
	// An xds:/// mode without a bootstrap could never make a call (grpc-go reads it from the
	// environment only): refuse to start rather than serve a mode that always fails.
	for _, m := range cfg.Modes {
		if strings.HasPrefix(m.Target, "xds:") && e.getenv("GRPC_XDS_BOOTSTRAP") == "" && e.getenv("GRPC_XDS_BOOTSTRAP_CONFIG") == "" {
			return usageError{fmt.Errorf("--mode %s=%s: xds:/// needs a bootstrap: set GRPC_XDS_BOOTSTRAP (a file, see spread xds bootstrap) or GRPC_XDS_BOOTSTRAP_CONFIG (its JSON)", m.Name, m.Target)}
		}
	}
	reg := admin.NewRegistry()
	if cfg.TLSCA != "" {
		// Files are re-read when they change: a rotated Secret needs no restart.
		store, err := tlsfiles.New(tlsfiles.Files{Cert: cfg.TLSCert, Key: cfg.TLSKey, CA: cfg.TLSCA},
			tlsfiles.WithName("frontend"), tlsfiles.WithLogger(log), tlsfiles.WithRegisterer(reg))
		if err != nil {
			return usageError{fmt.Errorf("--tls-ca/--tls-cert/--tls-key: %w", err)}
		}
		tc, err := store.ClientConfig(cfg.TLSServerName)
		if err != nil {
			return usageError{err}
		}
		cfg.Creds = credentials.NewTLS(tc)
	}
	// kubernetes:/// modes share one resolver Builder (one EndpointSlice watch per Service);
	// it is closed after the connections (defers run last-in, first-out).
	var kb *kuberesolver.Builder
	for i := range cfg.Modes {
		if !strings.HasPrefix(cfg.Modes[i].Target, kuberesolver.Scheme+":") {
			continue
		}
		if kb == nil {
			opts := []kuberesolver.Option{kuberesolver.WithLogger(log), kuberesolver.WithRegisterer(reg)}
			if cfg.Kubeconfig != "" {
				opts = append(opts, kuberesolver.WithKubeconfig(cfg.Kubeconfig))
			}
			if kb, err = kuberesolver.NewBuilder(opts...); err != nil {
				return err
			}
			defer kb.Close()
		}
		cfg.Modes[i].Resolvers = append(cfg.Modes[i].Resolvers, kb)
	}
	// dns+refresh:/// modes share one dnsrefresh Builder; it sends no service config, so the
	// mode's lb policy applies.
	var db *dnsrefresh.Builder
	for i := range cfg.Modes {
		if !strings.HasPrefix(cfg.Modes[i].Target, dnsrefresh.Scheme+":") {
			continue
		}
		if db == nil {
			if db, err = dnsrefresh.NewBuilder(dnsrefresh.WithServiceConfig(""), dnsrefresh.WithLogger(log), dnsrefresh.WithRegisterer(reg)); err != nil {
				return err
			}
		}
		cfg.Modes[i].Resolvers = append(cfg.Modes[i].Resolvers, db)
	}
	win := dashboard.NewWindow(dashboard.DefaultWindow, nil)
	fe, err := frontend.New(cfg.Config, frontend.WithLogger(log), frontend.WithRegisterer(reg), frontend.WithObserver(win))
	if err != nil {
		return usageError{err}
	}
	defer fe.Close()
	dash := dashboard.New(fe, win, dashboard.WithLogger(log))
	defer dash.Close() // before fe.Close: the page's loads stop, then the connections close
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	adminLis, err := admin.Listen(cfg.AdminAddr)
	if err != nil {
		lis.Close()
		return err
	}
	aopts := []admin.Option{admin.WithReadiness(func() error { return ctx.Err() })}
	if adminLis != nil {
		// grpc-go's admin services (channelz, CSDS: what each xDS client holds) on the admin
		// port, for grpcdebug.
		g := grpc.NewServer()
		cleanup, err := grpcadmin.Register(g)
		if err != nil {
			lis.Close()
			adminLis.Close()
			return fmt.Errorf("admin services: %w", err)
		}
		defer cleanup()
		defer g.Stop()
		aopts = append(aopts, admin.WithGRPC(g))
	}
	running := admin.New(reg, aopts...).Start(ctx, adminLis, cfg.Grace, log)
	srv := admin.NewHTTPServer(dashboard.Handler(fe, dash), admin.LimitsFor(cfg.RequestTimeout))
	srv.RegisterOnShutdown(dash.EndStreams) // the dashboard's event streams would hold Shutdown
	// Requests still running at half the grace are cut and answer with what they have, so
	// Shutdown ends cleanly instead of closing their connections with no answer.
	srv.RegisterOnShutdown(func() { time.AfterFunc(cfg.Grace/2, fe.Interrupt) })
	log.Info("frontend serving", "addr", lis.Addr().String(), "modes", fe.Modes())
	// Both servers stop when ctx is done, each within the grace.
	err = admin.ServeHTTP(ctx, srv, lis, cfg.Grace, log)
	return errors.Join(err, running.Wait())
}
