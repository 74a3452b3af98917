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
	"github.com/spread-grpc/spread/internal/connect"
	"github.com/spread-grpc/spread/internal/dashboard"
	"github.com/spread-grpc/spread/internal/frontend"
	"github.com/spread-grpc/spread/internal/tlsfiles"
	"github.com/spread-grpc/spread/resolver/dnsrefresh"
	kuberesolver "github.com/spread-grpc/spread/resolver/kubernetes"
)

// modeFlags collects repeated --mode NAME=TARGET[,lb=POLICY][,health=true] flags.
type modeFlags struct {
	modes []connect.Mode
	set   bool
}

func (m *modeFlags) String() string {
	parts := make([]string, len(m.modes))
	for i, md := range m.modes {
		parts[i] = md.Name + "=" + md.Target
	}
	return strings.Join(parts, " ")
}

func (m *modeFlags) Set(v string) error {
	md, err := parseMode(v)
	if err != nil {
		return err
	}
	if !m.set { // the first --mode replaces the defaults
		m.modes, m.set = nil, true
	}
	m.modes = append(m.modes, md)
	return nil
}

// parseMode parses NAME=TARGET[,lb=POLICY][,health=BOOL]. Without lb, "clusterip" uses
// pick_first (one connection, like the sample's plain Dial) and every other mode round_robin.
func parseMode(v string) (connect.Mode, error) {
	name, rest, ok := strings.Cut(v, "=")
	if !ok || name == "" || rest == "" {
		return connect.Mode{}, fmt.Errorf("%q: want NAME=TARGET[,lb=pick_first|round_robin][,health=true]", v)
	}
	fields := strings.Split(rest, ",")
	md := connect.Mode{Name: name, Target: fields[0], Policy: connect.RoundRobin}
	if name == "clusterip" {
		md.Policy = connect.PickFirst
	}
	for _, f := range fields[1:] {
		k, val, _ := strings.Cut(f, "=")
		switch k {
		case "lb":
			if val != connect.PickFirst && val != connect.RoundRobin {
				return md, fmt.Errorf("%q: lb=%q: want pick_first or round_robin", v, val)
			}
			md.Policy = val
		case "health":
			switch val {
			case "true":
				md.HealthCheck = true
			case "false":
			default:
				return md, fmt.Errorf("%q: health=%q: want true or false", v, val)
			}
		default:
			return md, fmt.Errorf("%q: unknown option %q (have lb, health)", v, k)
		}
	}
	return md, nil
}

func runFrontend(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("frontend", e)
	setUsage(fs, e, frontendUsage)
	addr := fs.String("addr", ":8081", "HTTP listen address")
	adminAddr := fs.String("admin-addr", ":9091", `admin HTTP address for /metrics, /healthz, /readyz ("-" disables)`)
	cfg := frontend.DefaultConfig()
	fs.StringVar(&cfg.Name, "name", cfg.Name, "frontend identity in replies (default $POD_NAME, else the hostname)")
	fs.DurationVar(&cfg.CallTimeout, "call-timeout", cfg.CallTimeout, "deadline of each gRPC call")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", cfg.RequestTimeout, "bound on one HTTP request's work")
	grace := fs.Duration("grace", 10*time.Second, "bound on the graceful shutdown")
	tlsCA := fs.String("tls-ca", "", "PEM CA file: talk TLS to the backends, verifying them against it (plaintext by default)")
	tlsServerName := fs.String("tls-server-name", "", "server name to verify in backend certificates (default: from the target)")
	tlsCert := fs.String("tls-cert", "", "PEM client certificate presented to the backends (mTLS; needs --tls-ca and --tls-key)")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig for kubernetes:/// modes (default: the pod's service account)")
	modes := &modeFlags{modes: []connect.Mode{
		{Name: "clusterip", Target: "dns:///be-srv.default.svc.cluster.local:50051", Policy: connect.PickFirst,
			Description: "ClusterIP Service: one connection, all calls on one pod"},
		{Name: "headless", Target: "dns:///be-srv-lb.default.svc.cluster.local:50051", Policy: connect.RoundRobin,
			Description: "headless Service + round_robin: calls spread over every pod IP"},
	}}
	fs.Var(modes, "mode", "a balancing mode NAME=TARGET[,lb=pick_first|round_robin][,health=true]; repeat for more (default: the sample's clusterip and headless)")
	newLog := logFlags(fs, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := errors.Join(checkAddr("addr", *addr, false), checkAddr("admin-addr", *adminAddr, true)); err != nil {
		return usageError{err}
	}
	if *grace <= 0 || cfg.CallTimeout <= 0 || cfg.RequestTimeout <= 0 {
		return usageError{errors.New("--grace, --call-timeout and --request-timeout must be positive")}
	}
	log, err := newLog()
	if err != nil {
		return err
	}
	cfg.Modes = modes.modes
	// An xds:/// mode without a bootstrap could never make a call (grpc-go reads it from the
	// environment only): refuse to start rather than serve a mode that always fails.
	for _, m := range cfg.Modes {
		if strings.HasPrefix(m.Target, "xds:") && e.getenv("GRPC_XDS_BOOTSTRAP") == "" && e.getenv("GRPC_XDS_BOOTSTRAP_CONFIG") == "" {
			return usageError{fmt.Errorf("--mode %s=%s: xds:/// needs a bootstrap: set GRPC_XDS_BOOTSTRAP (a file, see spread xds bootstrap) or GRPC_XDS_BOOTSTRAP_CONFIG (its JSON)", m.Name, m.Target)}
		}
	}
	reg := admin.NewRegistry()
	if *tlsCA == "" && *tlsCert != "" {
		return usageError{errors.New("--tls-cert needs --tls-ca")}
	}
	if *tlsCA != "" {
		// Files are re-read when they change: a rotated Secret needs no restart.
		store, err := tlsfiles.New(tlsfiles.Files{Cert: *tlsCert, Key: *tlsKey, CA: *tlsCA},
			tlsfiles.WithName("frontend"), tlsfiles.WithLogger(log), tlsfiles.WithRegisterer(reg))
		if err != nil {
			return usageError{fmt.Errorf("--tls-ca/--tls-cert/--tls-key: %w", err)}
		}
		tc, err := store.ClientConfig(*tlsServerName)
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
			if *kubeconfig != "" {
				opts = append(opts, kuberesolver.WithKubeconfig(*kubeconfig))
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
	fe, err := frontend.New(cfg, frontend.WithLogger(log), frontend.WithRegisterer(reg), frontend.WithObserver(win))
	if err != nil {
		return usageError{err}
	}
	defer fe.Close()
	dash := dashboard.New(fe, win, dashboard.WithLogger(log))
	defer dash.Close() // before fe.Close: the page's loads stop, then the connections close
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	adminLis, err := admin.Listen(*adminAddr)
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
	running := admin.New(reg, aopts...).Start(ctx, adminLis, *grace, log)
	srv := admin.NewHTTPServer(dashboard.Handler(fe, dash), admin.LimitsFor(cfg.RequestTimeout))
	srv.RegisterOnShutdown(dash.EndStreams) // the dashboard's event streams would hold Shutdown
	// Requests still running at half the grace are cut and answer with what they have, so
	// Shutdown ends cleanly instead of closing their connections with no answer.
	srv.RegisterOnShutdown(func() { time.AfterFunc(*grace/2, fe.Interrupt) })
	log.Info("frontend serving", "addr", lis.Addr().String(), "modes", fe.Modes())
	// Both servers stop when ctx is done, each within the grace.
	err = admin.ServeHTTP(ctx, srv, lis, *grace, log)
	return errors.Join(err, running.Wait())
}
