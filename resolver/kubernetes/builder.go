// Package kubernetes is a gRPC name resolver for Kubernetes Services that watches their
// EndpointSlices, so that a long-lived client learns about new, leaving and terminating pods
// within milliseconds instead of never (headless DNS) or every 30 s.
//
// Targets name a Service port (see ParseTarget):
//
//	kubernetes:///<service>.<namespace>:<port-or-port-name>
//	kubernetes://<namespace>/<service>:<port-or-port-name>
//
// Use it per client (preferred, no global state):
//
//	b, err := kubernetes.NewBuilder() // in-cluster config; WithKubeconfig(path) outside
//	defer b.Close()
//	conn, err := grpc.NewClient("kubernetes:///be-srv.default:grpc", grpc.WithResolvers(b), creds)
//
// or register it once for the whole process with Register. Importing the package registers
// nothing (it only links grpc's client-side health checking, which its default service config
// uses).
//
// The resolver pushes the Service's usable endpoints (ready ones; serving-but-terminating ones
// only when none is ready) with their zone and pod name as attributes (see EndpointZone,
// EndpointPod), and the default service config round_robin + client-side health checking. A
// Service without usable endpoints yields an empty address list: RPCs fail fast with
// UNAVAILABLE rather than reach a stale pod. Endpoints that leave are closed gracefully by
// grpc-go, so their in-flight calls finish.
//
// The client needs list and watch on endpointslices (discovery.k8s.io) in the target
// namespace: see deploy/rbac/resolver-role.yaml. One watch serves all targets and connections
// of a Builder that name the same Service.
package kubernetes

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/attributes"
	_ "google.golang.org/grpc/health" // client-side health checking, used by the default service config
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/endpointslice"
)

// Scheme is the target scheme this package resolves.
const Scheme = "kubernetes"

const serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// DefaultServiceConfig is pushed with every state unless WithServiceConfig replaces it:
// round_robin over all usable endpoints, with client-side health checking (the backends'
// grpc.health.v1 server, overall status "").
const DefaultServiceConfig = `{"loadBalancingConfig":[{"round_robin":{}}],"healthCheckConfig":{"serviceName":""}}`

var _ resolver.Builder = (*Builder)(nil)

// Option configures a Builder.
type Option func(*options)

type options struct {
	kubeconfig    string
	restConfig    *rest.Config
	client        k8s.Interface
	log           *slog.Logger
	reg           prometheus.Registerer
	serviceConfig string
	namespace     string
	source        endpoint.Source
}

// WithKubeconfig reads the API server address and credentials from a kubeconfig file instead
// of the in-cluster service account.
func WithKubeconfig(path string) Option { return func(o *options) { o.kubeconfig = path } }

// WithRESTConfig uses cfg to reach the API server (it wins over WithKubeconfig).
func WithRESTConfig(cfg *rest.Config) Option { return func(o *options) { o.restConfig = cfg } }

// WithClient uses an existing clientset (it wins over WithRESTConfig and WithKubeconfig).
func WithClient(c k8s.Interface) Option { return func(o *options) { o.client = c } }

// WithLogger sets the logger for watch errors (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithRegisterer registers the resolver's metrics (spread_endpointslice_*) with reg.
func WithRegisterer(reg prometheus.Registerer) Option { return func(o *options) { o.reg = reg } }

// WithNamespace sets the namespace of targets that name none (kubernetes:///<service>:<port>).
// The default is the pod's own namespace in a cluster, the kubeconfig context's namespace
// with WithKubeconfig, else "default" — as for kubectl and cluster DNS.
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithServiceConfig replaces DefaultServiceConfig (JSON, see gRPC's service config doc).
// Note that a resolver's service config overrides grpc.WithDefaultServiceConfig.
func WithServiceConfig(json string) Option { return func(o *options) { o.serviceConfig = json } }

// Source is what a resolver follows: the Kubernetes EndpointSlice watcher (package
// endpointslice) by default. It is endpoint.Source, whose contract it keeps; a Subscribe
// error (Forbidden, say) is reported to gRPC and retried with backoff.
//
// Deprecated: use endpoint.Source; this alias stays for one release.
type Source = endpoint.Source

// WithSource makes the resolver follow src instead of watching the Kubernetes API (for
// example Spread's simulated demo cluster, which publishes the same endpoint model). The
// Kubernetes client options are then unused.
func WithSource(src endpoint.Source) Option { return func(o *options) { o.source = src } }

// Builder builds resolvers for kubernetes targets. One Builder may serve any number of
// ClientConns; it shares one EndpointSlice watch per Service among them. Close it when the
// connections are closed.
type Builder struct {
	src           *endpointslice.Source // nil with WithSource
	sub           endpoint.Source
	log           *slog.Logger
	serviceConfig string
	namespace     string // of targets that name none
	backoff       func(attempt int) time.Duration
}

// NewBuilder returns a Builder for scheme "kubernetes". Without WithClient, WithRESTConfig or
// WithKubeconfig it uses the in-cluster configuration (the pod's service account).
func NewBuilder(opts ...Option) (*Builder, error) {
	o := options{log: slog.Default(), serviceConfig: DefaultServiceConfig}
	for _, opt := range opts {
		opt(&o)
	}
	if o.source != nil {
		ns := "default"
		if o.namespace != "" {
			ns = o.namespace
		}
		return &Builder{sub: o.source, log: o.log, serviceConfig: o.serviceConfig, namespace: ns, backoff: defaultBackoff}, nil
	}
	client, ns := o.client, "default"
	if client == nil {
		cfg := o.restConfig
		var err error
		switch {
		case cfg != nil:
		case o.kubeconfig != "":
			kc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
				&clientcmd.ClientConfigLoadingRules{ExplicitPath: o.kubeconfig}, &clientcmd.ConfigOverrides{})
			if cfg, err = kc.ClientConfig(); err != nil {
				return nil, fmt.Errorf("kubernetes resolver: kubeconfig %s: %w", o.kubeconfig, err)
			}
			if n, _, err := kc.Namespace(); err == nil && n != "" {
				ns = n
			}
		default:
			if cfg, err = rest.InClusterConfig(); err != nil {
				return nil, fmt.Errorf("kubernetes resolver: in-cluster config (use WithKubeconfig outside a cluster): %w", err)
			}
			if b, err := os.ReadFile(serviceAccountNamespaceFile); err == nil && len(strings.TrimSpace(string(b))) > 0 {
				ns = strings.TrimSpace(string(b))
			}
		}
		// Protobuf, as Kubernetes' own controllers use: smaller and faster to decode than
		// JSON for large slices.
		cfg = rest.CopyConfig(cfg)
		cfg.ContentType = "application/vnd.kubernetes.protobuf"
		cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
		if client, err = k8s.NewForConfig(cfg); err != nil {
			return nil, fmt.Errorf("kubernetes resolver: client: %w", err)
		}
	}
	if o.namespace != "" {
		ns = o.namespace
	}
	src := endpointslice.New(client, endpointslice.WithLogger(o.log), endpointslice.WithRegisterer(o.reg))
	return &Builder{
		src:           src,
		sub:           src,
		log:           o.log,
		serviceConfig: o.serviceConfig,
		namespace:     ns,
		backoff:       defaultBackoff,
	}, nil
}

// Register builds a Builder and registers it globally with resolver.Register, for processes
// that dial "kubernetes:///..." targets without grpc.WithResolvers. Call it once, at init
// time, before any dial (resolver.Register is not thread-safe). Prefer grpc.WithResolvers.
func Register(opts ...Option) error {
	b, err := NewBuilder(opts...)
	if err != nil {
		return err
	}
	resolver.Register(b)
	return nil
}

// Scheme returns "kubernetes".
func (b *Builder) Scheme() string { return Scheme }

// Close stops all watches and resolvers of the Builder and waits for them.
func (b *Builder) Close() {
	if b.src != nil {
		b.src.Close()
	}
}

// Build starts watching the target's Service. It returns at once; the first state follows
// when the Service's slices are listed. A malformed target or service config is an error.
func (b *Builder) Build(t resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	key, err := parseTarget(t, b.namespace)
	if err != nil {
		return nil, err
	}
	sc := cc.ParseServiceConfig(b.serviceConfig)
	if sc.Err != nil {
		return nil, fmt.Errorf("kubernetes resolver: service config: %w", sc.Err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &kubeResolver{
		key:     key,
		cc:      cc,
		sc:      sc,
		sub:     b.sub,
		log:     b.log,
		backoff: b.backoff,
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	go r.run(ctx)
	return r, nil
}

func defaultBackoff(attempt int) time.Duration {
	d := time.Second << min(attempt, 5) // 1 s … 32 s
	return d/2 + rand.N(d/2)            // jittered
}

// kubeResolver follows one target. One goroutine (run) owns the subscription; Close cancels
// it and waits.
type kubeResolver struct {
	key     endpoint.Key
	cc      resolver.ClientConn
	sc      *serviceconfig.ParseResult
	sub     endpoint.Source
	log     *slog.Logger
	backoff func(int) time.Duration
	cancel  context.CancelFunc
	done    chan struct{}
}

func (r *kubeResolver) run(ctx context.Context) {
	defer close(r.done)
	for attempt := 0; ; attempt++ {
		wait, err := r.sub.Subscribe(ctx, r.key, r.push)
		if err == nil {
			wait()
			return
		}
		if ctx.Err() != nil {
			return
		}
		// Fail RPCs now with the reason (Forbidden, no such namespace, API server down), and
		// retry: the watch may become possible (a RoleBinding created, the server back).
		err = fmt.Errorf("kubernetes resolver: %w", err)
		r.log.Warn("kubernetes resolver: cannot watch", "target", r.key.String(), "err", err)
		r.cc.ReportError(err)
		t := time.NewTimer(r.backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// push hands the usable endpoints of set to gRPC. An empty set clears the addresses, so that
// round_robin fails RPCs fast instead of using stale ones. The addresses of one pod (a
// dual-stack pod appears in an IPv4 and an IPv6 slice) form one gRPC endpoint, so that every
// pod gets one share of the calls.
func (r *kubeResolver) push(set endpoint.Set) {
	usable := set.Usable()
	addrs := make([]resolver.Address, 0, len(usable))
	eps := make([]resolver.Endpoint, 0, len(usable))
	byPod := make(map[string]int) // pod name → index in eps
	for _, e := range usable {
		attrs := attributes.New(zoneKey{}, e.Zone).WithValue(podKey{}, e.Pod)
		a := resolver.Address{Addr: e.HostPort(), BalancerAttributes: attrs}
		addrs = append(addrs, a)
		if i, ok := byPod[e.Pod]; ok && e.Pod != "" {
			eps[i].Addresses = append(eps[i].Addresses, resolver.Address{Addr: a.Addr})
			continue
		}
		byPod[e.Pod] = len(eps)
		eps = append(eps, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a.Addr}}, Attributes: attrs})
	}
	if err := r.cc.UpdateState(resolver.State{Addresses: addrs, Endpoints: eps, ServiceConfig: r.sc}); err != nil {
		// round_robin rejects an empty list (ErrBadResolverState) after failing its picker:
		// exactly the fail-fast we want. grpc then calls ResolveNow, which has nothing to do.
		r.log.Debug("kubernetes resolver: state not accepted", "target", r.key.String(), "endpoints", len(eps), "err", err)
	}
}

// ResolveNow does nothing: the watch pushes every change as it happens.
func (r *kubeResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops the watch of this target and waits until no more state is pushed.
func (r *kubeResolver) Close() {
	r.cancel()
	<-r.done
}
