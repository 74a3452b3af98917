// Package demo is `spread demo` as a library: it starts a simulated cluster (package cluster)
// and the frontend (package frontend) in front of it with the registry's modes (package
// modes), serves the dashboard (package dashboard) beside it with the cluster's admin API as
// the page's controls, serves /metrics on an admin address, and stops it all within one grace.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/spread-grpc/spread/internal/admin"
	"github.com/spread-grpc/spread/internal/certgen"
	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/dashboard"
	"github.com/spread-grpc/spread/internal/frontend"
	"github.com/spread-grpc/spread/internal/guard"
	"github.com/spread-grpc/spread/internal/modes"
	"github.com/spread-grpc/spread/internal/tlsfiles"
)

// Config is the whole demo: the cluster plus the frontend in front of it.
type Config struct {
	Cluster cluster.Config
	// FrontendAddr is the frontend's HTTP address (default 127.0.0.1:8081).
	FrontendAddr string
	// AdminAddr serves /metrics, /healthz and /readyz (default 127.0.0.1:9081; "-" disables).
	AdminAddr string
	// Grace bounds the whole shutdown (default 10s).
	Grace time.Duration
	// Modes names the frontend's modes (default: every mode in the registry).
	Modes []string
	// ModeOptions tunes the modes.
	ModeOptions modes.Options
	// TLS turns on mTLS between the frontend and every pod, with an ephemeral CA and
	// certificates written to a temporary folder that Stop removes.
	TLS bool
	// Clients, if N > 0, runs that many ClusterIP clients (one connection each through the
	// VIP), the clients a fair-share cluster balances.
	Clients ClientsConfig
}

// DefaultConfig returns the values Start gives zero fields, declared once: `spread demo`'s
// flags show them. The cluster's are cluster.DefaultConfig's, the modes' modes.DefaultOptions.
func DefaultConfig() Config {
	return Config{
		Cluster:      cluster.DefaultConfig(),
		FrontendAddr: "127.0.0.1:8081",
		AdminAddr:    "127.0.0.1:9081",
		Grace:        10 * time.Second,
		ModeOptions:  modes.DefaultOptions(),
	}
}

// Demo is a running demo.
type Demo struct {
	Cluster  *cluster.Cluster
	Frontend *frontend.Frontend
	// FrontendURL and AdminURL are the bound HTTP addresses, as URLs.
	FrontendURL, AdminURL string

	// Clients are the ClusterIP clients of Config.Clients (nil without).
	Clients *ClusterIPClients

	dash   *dashboard.Dashboard // served beside Frontend on FrontendURL
	cfg    Config
	log    *slog.Logger
	cancel context.CancelFunc
	// servers are the frontend's and the admin HTTP servers (the admin one may be disabled).
	servers [2]*admin.Running
	// interrupt holds the frontend's interrupt timer once its server's shutdown has begun.
	interrupt chan *time.Timer
	tlsDir    string
}

// ephemeralTLS creates a CA and certificates in a new temporary folder, points the
// cluster's pods at them and returns the folder and the frontend's credentials.
func ephemeralTLS(cc *cluster.Config) (string, credentials.TransportCredentials, error) {
	dir, err := os.MkdirTemp("", "spread-demo-tls-")
	if err != nil {
		return "", nil, fmt.Errorf("demo: tls: %w", err)
	}
	ca, err := certgen.NewCA("spread-demo-ca", 7*24*time.Hour)
	if err == nil {
		err = ca.Write(certgen.Bundle{Dir: dir, Namespace: cluster.Namespace, ClusterDomain: "cluster.local", ValidFor: 7 * 24 * time.Hour})
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("demo: tls: %w", err)
	}
	f := func(n string) string { return filepath.Join(dir, n) }
	cc.TLSCert, cc.TLSKey, cc.TLSClientCA = f("backend.crt"), f("backend.key"), f("ca.crt")
	store, err := tlsfiles.New(tlsfiles.Files{Cert: f("frontend.crt"), Key: f("frontend.key"), CA: f("ca.crt")}, tlsfiles.WithName("frontend"))
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("demo: tls: %w", err)
	}
	// Every mode's target names a different host (DNS names, VIP): verify the Service name
	// the backend certificate carries.
	tc, err := store.ClientConfig("be-srv")
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("demo: tls: %w", err)
	}
	return dir, credentials.NewTLS(tc), nil
}

// Start starts the cluster, the frontend and the admin server.
func Start(cfg Config, log *slog.Logger) (*Demo, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dflt := DefaultConfig()
	if cfg.FrontendAddr == "" {
		cfg.FrontendAddr = dflt.FrontendAddr
	}
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = dflt.AdminAddr
	}
	if cfg.Grace <= 0 {
		cfg.Grace = dflt.Grace
	}
	if err := cfg.Clients.Validate(); err != nil {
		return nil, err
	}
	var undo []func()
	fail := func(err error) (*Demo, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, err
	}
	// The frontend and admin servers carry the unauthenticated cluster controls: like every
	// other demo address they must be loopback.
	for _, a := range []struct{ flag, addr string }{{"frontend", cfg.FrontendAddr}, {"admin", cfg.AdminAddr}} {
		if a.addr == "-" && a.flag == "admin" {
			continue
		}
		if err := cluster.LoopbackHostPort(a.addr); err != nil {
			return nil, fmt.Errorf("demo: %s: %w", a.flag, err)
		}
	}
	// Bind the HTTP addresses first: a taken address is the likeliest error, so fail before
	// starting anything else.
	feLis, err := net.Listen("tcp", cfg.FrontendAddr)
	if err != nil {
		return nil, fmt.Errorf("demo: frontend: %w", err)
	}
	undo = append(undo, func() { feLis.Close() })
	adminLis, err := admin.Listen(cfg.AdminAddr)
	if err != nil {
		return fail(fmt.Errorf("demo: %w", err))
	}
	if adminLis != nil {
		undo = append(undo, func() { adminLis.Close() })
	}
	var creds credentials.TransportCredentials
	if cfg.TLS {
		dir, c, err := ephemeralTLS(&cfg.Cluster)
		if err != nil {
			return fail(err)
		}
		undo = append(undo, func() { os.RemoveAll(dir) })
		creds = c
	}
	cl, err := cluster.Start(cfg.Cluster, log)
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { cl.Stop(context.Background()) })
	ms, err := modes.Build(cl, cfg.ModeOptions, cfg.Modes...)
	if err != nil {
		return fail(err)
	}
	var clients *ClusterIPClients
	if cfg.Clients.N > 0 {
		if clients, err = StartClusterIPClients(cl, cfg.Clients, creds); err != nil {
			return fail(err)
		}
		undo = append(undo, func() { clients.Close() })
	}
	reg := admin.NewRegistry()
	flog := log.With("component", "frontend")
	win := dashboard.NewWindow(dashboard.DefaultWindow, nil)
	fe, err := frontend.New(frontend.Config{Name: "fe-demo", Modes: ms, Creds: creds},
		frontend.WithLogger(flog), frontend.WithRegisterer(reg), frontend.WithObserver(win))
	if err != nil {
		return fail(err)
	}
	// The dashboard shows the cluster's pods and drives it through its admin API (the one
	// `spread ctl` uses), served same-origin under /cluster, and may start a steady load.
	dash := dashboard.New(fe, win, dashboard.WithLogger(flog), dashboard.WithCluster(cl, cl.Handler()))
	// Both servers answer only to their own addresses (DNS rebinding) and refuse cross-site
	// state-changing requests.
	g := guard.New()
	g.Allow(feLis.Addr())
	if adminLis != nil {
		g.Allow(adminLis.Addr())
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Demo{Cluster: cl, Frontend: fe, dash: dash, Clients: clients, cfg: cfg, log: log, cancel: cancel,
		FrontendURL: "http://" + feLis.Addr().String()}
	if cfg.TLS {
		d.tlsDir = filepath.Dir(cfg.Cluster.TLSCert)
	}
	srv := admin.NewHTTPServer(g.Wrap(dashboard.Handler(fe, dash)), admin.LimitsFor(frontend.DefaultRequestTimeout))
	srv.RegisterOnShutdown(dash.EndStreams) // the dashboard's event streams would hold Shutdown
	// As in `spread frontend`: requests still running halfway through the server's grace are
	// cut and answer with what they have (partial JSON, "interrupted": true), so Shutdown
	// ends cleanly instead of closing their connections with no answer.
	interrupt := make(chan *time.Timer, 1)
	srv.RegisterOnShutdown(func() { interrupt <- time.AfterFunc(cfg.Grace/4, fe.Interrupt) })
	d.interrupt = interrupt
	d.servers[0] = admin.StartHTTP(ctx, srv, feLis, cfg.Grace/2, log)
	if adminLis != nil {
		d.AdminURL = "http://" + adminLis.Addr().String()
	}
	d.servers[1] = admin.New(reg, admin.WithReadiness(func() error {
		if ctx.Err() != nil {
			return errors.New("shutting down")
		}
		return nil
	}), admin.WithHandler("/cluster", cl.Handler()), admin.WithHandler("/cluster/", cl.Handler()),
		admin.WithWrap(g.Wrap)).Start(ctx, adminLis, cfg.Grace/2, log)
	return d, nil
}

// Stop shuts everything down within the demo's grace period: HTTP servers first (in-flight
// requests finish), then the frontend's connections, then the pods drain.
func (d *Demo) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Grace)
	defer cancel()
	d.cancel()
	var errs []error
	for _, r := range d.servers {
		errs = append(errs, r.Wait())
	}
	select {
	case t := <-d.interrupt: // not needed any more once the server is down
		t.Stop()
	default:
	}
	d.dash.Close() // the page's loads stop before the connections they use close
	errs = append(errs, d.Frontend.Close())
	if d.Clients != nil {
		errs = append(errs, d.Clients.Close())
	}
	errs = append(errs, d.Cluster.Stop(ctx))
	if d.tlsDir != "" {
		errs = append(errs, os.RemoveAll(d.tlsDir))
	}
	return errors.Join(errs...)
}

// Run starts the demo, prints what it started and what to try to out, and runs until ctx is
// done; then it stops everything and returns.
func Run(ctx context.Context, cfg Config, log *slog.Logger, out io.Writer) error {
	d, err := Start(cfg, log)
	if err != nil {
		return err
	}
	d.PrintIntro(out)
	select {
	case <-ctx.Done():
	case <-d.servers[0].Done(): // a server failed: stop the rest
		log.Error("server failed", "err", d.servers[0].Wait())
	case <-d.servers[1].Done():
		log.Error("server failed", "err", d.servers[1].Wait())
	}
	fmt.Fprintln(out, "\nshutting down...")
	return d.Stop()
}

// PrintIntro tells a newcomer what runs and what to try.
func (d *Demo) PrintIntro(out io.Writer) {
	c := d.Cluster
	fmt.Fprintf(out, "Spread demo: a simulated cluster on loopback\n\n")
	fmt.Fprintf(out, "  deployment/%s  %d pods:\n", cluster.Deployment, len(c.Pods()))
	for _, p := range c.Pods() {
		fmt.Fprintf(out, "    %-36s %s  %s\n", p.Pod, p.HostPort(), p.Zone)
	}
	fmt.Fprintf(out, "  service/%-10s ClusterIP %s (kube-proxy-like L4 VIP)\n", cluster.ClusterIPService, c.VIPAddr())
	fmt.Fprintf(out, "  service/%-10s headless  (DNS answers every ready pod IP)\n", cluster.HeadlessService)
	fmt.Fprintf(out, "  cluster DNS      %s  (%s, %s)\n", c.DNSAddr(), c.ServiceName(cluster.ClusterIPService), c.ServiceName(cluster.HeadlessService))
	if c.XDSAddr() != "" {
		fmt.Fprintf(out, "  xDS control plane %s (xds:///%s, or xds:///%s.%s:%d for non-Go clients)\n", c.XDSAddr(), cluster.XDSKey, cluster.XDSKey.Service, cluster.XDSKey.Namespace, c.Port())
	}
	if d.Clients != nil {
		fmt.Fprintf(out, "  clients          %d ClusterIP clients, one connection each through the VIP\n", d.cfg.Clients.N)
	}
	if iv := c.Config().FairShareInterval; iv > 0 {
		fmt.Fprintf(out, "  fair share       pods shed connections above their fair share every %v (see the dashboard's pod table)\n", iv)
	}
	fmt.Fprintf(out, "  frontend         %s\n", d.FrontendURL)
	if d.tlsDir != "" {
		fmt.Fprintf(out, "  mTLS             frontend -> pods, ephemeral CA and certificates in %s\n", d.tlsDir)
	}
	fmt.Fprintf(out, "  dashboard        %s/  (open it in a browser: live calls per pod, load, scale, kill, freeze)\n", d.FrontendURL)
	if d.AdminURL != "" {
		fmt.Fprintf(out, "  metrics          %s/metrics\n", d.AdminURL)
	}
	fmt.Fprintf(out, "\nTry:\n")
	fmt.Fprintf(out, "  curl -s %s/backend | jq        # ClusterIP: all 10 calls from one pod\n", d.FrontendURL)
	fmt.Fprintf(out, "  curl -s %s/backendlb | jq      # headless + round_robin: 2 calls per pod\n", d.FrontendURL)
	fmt.Fprintf(out, "  curl -s '%s/call/headless?n=1000' | jq .counts\n", d.FrontendURL)
	fmt.Fprintf(out, "  curl -s '%s/call/headless?n=10&stream=true' | jq .counts   # a stream stays on one pod\n", d.FrontendURL)
	fmt.Fprintf(out, "  dig @%s -p %s %s +short\n", hostOf(c.DNSAddr()), portOf(c.DNSAddr()), c.ServiceName(cluster.HeadlessService))
	fmt.Fprintf(out, "\nCtrl-C stops everything.\n")
}

func hostOf(hp string) string { h, _, _ := net.SplitHostPort(hp); return h }
func portOf(hp string) string { _, p, _ := net.SplitHostPort(hp); return p }
