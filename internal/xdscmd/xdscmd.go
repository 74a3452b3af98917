// Package xdscmd is `spread xds` and `spread xds bootstrap` as library functions: flags into
// a Config, then Run (the control plane with its admin server) or Bootstrap (a client's
// bootstrap JSON). cmd/spread only parses arguments and calls these.
package xdscmd

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/spread-grpc/spread/controlplane"
	"github.com/spread-grpc/spread/internal/admin"
	"github.com/spread-grpc/spread/internal/flagalias"
	"github.com/spread-grpc/spread/internal/tlsfiles"
	"github.com/spread-grpc/spread/internal/xds"
)

// Config is `spread xds`'s configuration.
type Config struct {
	// Listen is the ADS (gRPC) address.
	Listen string
	// AdminListen serves /metrics, /healthz, /readyz and /debug/xds ("-" or "": none).
	AdminListen string
	// Kubeconfig is a kubeconfig path; empty means in-cluster configuration.
	Kubeconfig string
	// Namespace limits the Service and EndpointSlice watches to one namespace (empty: all).
	Namespace string
	// AllServices serves every Service, not only those annotated spread.dev/lb-policy or
	// spread.dev/xds: "true".
	AllServices bool
	// GRPCRoutes applies Gateway API GRPCRoutes whose parent is a served Service (GAMMA)
	// and writes their status; off, or when the GRPCRoute CRD is not installed, every
	// Service gets its default routing.
	GRPCRoutes bool
	// ZoneMinHealthy is how many healthy endpoints a client's zone needs to be preferred;
	// 0 turns zone preference off.
	ZoneMinHealthy int
	// TLSCert and TLSKey serve ADS over TLS; the files are re-read when they change.
	TLSCert, TLSKey string
	// TLSClientCA, with TLSCert, requires client certificates signed by it (mTLS).
	TLSClientCA string
	// NoDebugXDS leaves /debug/xds (every Service's endpoints and policies, unauthenticated)
	// off the admin server.
	NoDebugXDS bool
	// ShutdownGrace bounds the shutdown.
	ShutdownGrace time.Duration

	// Sources other than Kubernetes, set only by this package's tests (the demo embeds the
	// control plane through package controlplane, not through Run): when Endpoints is set,
	// Services must be too and no Kubernetes client is made.
	Endpoints xds.EndpointSource
	Services  xds.ServiceSource
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Started, if set, is called with the bound ADS and admin addresses once both listen.
	Started func(ads, admin net.Addr)
}

// DefaultConfig returns the defaults RegisterFlags uses.
func DefaultConfig() Config {
	return Config{Listen: ":18000", AdminListen: ":9090", ZoneMinHealthy: 1, ShutdownGrace: 10 * time.Second, GRPCRoutes: true}
}

// RegisterFlags binds c's fields to flags in fs, with c's current values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "addr", c.Listen, "ADS (gRPC) listen address")
	fs.StringVar(&c.AdminListen, "admin-addr", c.AdminListen, `admin HTTP address: /metrics /healthz /readyz /debug/xds ("-": none)`)
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig path (default: in-cluster configuration)")
	fs.StringVar(&c.Namespace, "namespace", c.Namespace, "watch only this namespace (default: all)")
	fs.BoolVar(&c.AllServices, "all-services", c.AllServices, "serve every Service, not only annotated ones ("+xds.AnnotationLBPolicy+" or "+xds.AnnotationXDS+"=true)")
	fs.BoolVar(&c.GRPCRoutes, "grpcroutes", c.GRPCRoutes, "apply Gateway API GRPCRoutes attached to served Services and write their status (skipped if the CRD is not installed)")
	fs.IntVar(&c.ZoneMinHealthy, "zone-min-healthy", c.ZoneMinHealthy, "healthy endpoints a client's zone needs to be preferred (0: no zone preference)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "serve ADS over TLS with this certificate (PEM)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "private key for --tls-cert (PEM)")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", c.TLSClientCA, "require client certificates signed by this CA bundle (mTLS, PEM); files are re-read when they change")
	fs.BoolVar(&c.NoDebugXDS, "no-debug-xds", c.NoDebugXDS, "do not serve /debug/xds and /debug/xds/clients on the admin address (they show every served Service's endpoints and clients, without authentication)")
	fs.DurationVar(&c.ShutdownGrace, "grace", c.ShutdownGrace, "bound on the graceful shutdown")
	// The names before every command used the same ones.
	flagalias.Deprecated(fs, "listen", "addr")
	flagalias.Deprecated(fs, "admin-listen", "admin-addr")
	flagalias.Deprecated(fs, "shutdown-grace", "grace")
}

// Validate checks c.
func (c *Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("--addr is required"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("--tls-client-ca needs --tls-cert and --tls-key"))
	}
	if c.ZoneMinHealthy < 0 {
		errs = append(errs, errors.New("--zone-min-healthy must be ≥ 0"))
	}
	if c.ShutdownGrace <= 0 {
		errs = append(errs, errors.New("--grace must be > 0"))
	}
	if (c.Endpoints == nil) != (c.Services == nil) {
		errs = append(errs, errors.New("Endpoints and Services are set together"))
	}
	return errors.Join(errs...)
}

// Run serves the control plane until ctx is done, then shuts down within ShutdownGrace:
// ADS streams end (clients keep their last configuration and reconnect), the gRPC and admin
// servers stop.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("xds: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	reg := admin.NewRegistry()
	endpoints, services := cfg.Endpoints, cfg.Services
	opts := []xds.Option{xds.WithLogger(log), xds.WithRegisterer(reg), xds.WithZonePreference(cfg.ZoneMinHealthy)}
	if endpoints == nil {
		eps, svcs, events, closeKube, err := kubeSources(cfg, log, reg)
		if err != nil {
			return fmt.Errorf("xds: kubernetes sources: %w", err)
		}
		defer closeKube()
		endpoints, services = eps, svcs
		opts = append(opts, xds.WithConfigErrorHandler(events.Report))
	}
	srv, err := xds.New(endpoints, services, opts...)
	if err != nil {
		return err
	}

	var tlsConf *tls.Config
	if cfg.TLSCert != "" {
		store, err := tlsfiles.New(tlsfiles.Files{Cert: cfg.TLSCert, Key: cfg.TLSKey, CA: cfg.TLSClientCA},
			tlsfiles.WithName("xds"), tlsfiles.WithLogger(log), tlsfiles.WithRegisterer(reg))
		if err != nil {
			return fmt.Errorf("xds: %w", err)
		}
		if tlsConf, err = store.ServerConfig(); err != nil {
			return fmt.Errorf("xds: %w", err)
		}
	}

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("xds: listen %s: %w", cfg.Listen, err)
	}
	adminLis, err := admin.Listen(cfg.AdminListen)
	if err != nil {
		lis.Close()
		return fmt.Errorf("xds: %w", err)
	}
	aopts := []admin.Option{admin.WithReadyHandler(srv.ReadyHandler())}
	if !cfg.NoDebugXDS {
		aopts = append(aopts, admin.WithHandler("GET /debug/xds", srv.DebugHandler()),
			admin.WithHandler("GET /debug/xds/clients", srv.StatusHandler()))
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	// The admin server stops after the ADS streams have ended, so /readyz and /debug/xds
	// answer during the drain.
	actx, stopAdmin := context.WithCancel(context.Background())
	defer stopAdmin()
	running := admin.New(reg, aopts...).Start(actx, adminLis, cfg.ShutdownGrace, log)
	go func() { // an admin server that fails stops the control plane
		select {
		case <-running.Done():
			stopRun()
		case <-runCtx.Done():
		}
	}()
	adminAddr := running.Addr()
	log.Info("xds: control plane listening", "ads", lis.Addr().String(), "admin", fmt.Sprint(adminAddr))
	if cfg.Started != nil {
		cfg.Started(lis.Addr(), adminAddr)
	}
	// The gRPC server, keepalive, TLS and the bounded shutdown of the ADS streams are the
	// library's (controlplane.Serve), as in every program that embeds the control plane.
	runErr := controlplane.Serve(runCtx, controlplane.ServeConfig{
		Server: srv, Listener: lis, TLS: tlsConf, Grace: cfg.ShutdownGrace, Logger: log,
	})
	stopAdmin()
	if err := running.Wait(); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("xds: admin: %w", err))
	}
	return runErr
}

// BootstrapConfig is `spread xds bootstrap`'s configuration.
type BootstrapConfig struct {
	// Servers are the control planes in gRFC A71 fallback order (--server, repeatable).
	Servers                 []string
	NodeID                  string
	Zone                    string
	CAFile                  string
	CertFile                string
	KeyFile                 string
	KeepResourcesOnDeletion bool
}

// RegisterFlags binds c's fields to flags in fs.
func (c *BootstrapConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.Func("server", "control plane address host:port (e.g. spread-xds.spread-system.svc:18000); repeat for gRFC A71 fallback servers, in order", func(v string) error {
		c.Servers = append(c.Servers, v)
		return nil
	})
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "client node id (default: spread-client)")
	fs.StringVar(&c.Zone, "zone", c.Zone, "client zone, for zone preference (e.g. from topology.kubernetes.io/zone)")
	fs.StringVar(&c.CAFile, "tls-ca", c.CAFile, "use TLS to the control plane, trusting this CA bundle (PEM)")
	fs.StringVar(&c.CertFile, "tls-cert", c.CertFile, "client certificate for mTLS (PEM)")
	fs.StringVar(&c.KeyFile, "tls-key", c.KeyFile, "client key for mTLS (PEM)")
	flagalias.Deprecated(fs, "ca-file", "tls-ca")
	flagalias.Deprecated(fs, "cert-file", "tls-cert")
	flagalias.Deprecated(fs, "key-file", "tls-key")
	fs.BoolVar(&c.KeepResourcesOnDeletion, "keep-resources-on-deletion", c.KeepResourcesOnDeletion, "add server feature ignore_resource_deletion")
}

// Bootstrap writes a grpc-go bootstrap JSON for c to w. The files it names must exist: a
// client given a bootstrap naming a missing CA would fail only when it first connects.
func Bootstrap(w io.Writer, c BootstrapConfig) error {
	for _, f := range []struct{ flag, path string }{{"tls-ca", c.CAFile}, {"tls-cert", c.CertFile}, {"tls-key", c.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("--%s: %w", f.flag, err)
		}
	}
	var first string
	var fallback []string
	if len(c.Servers) > 0 {
		first, fallback = c.Servers[0], c.Servers[1:]
	}
	b, err := xds.Bootstrap(xds.BootstrapConfig{
		ServerURI: first, FallbackURIs: fallback, NodeID: c.NodeID, Zone: c.Zone,
		CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
		KeepResourcesOnDeletion: c.KeepResourcesOnDeletion,
	})
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
