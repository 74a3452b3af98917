package grpcroute

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gatewayinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"

	"github.com/spread-grpc/spread/internal/listwatch"
	"github.com/spread-grpc/spread/internal/xds"
)

// Option configures a Source.
type Option func(*options)

type options struct {
	log       *slog.Logger
	namespace string
	retry     time.Duration
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithNamespace limits the GRPCRoute watch to one namespace (default: all).
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// Source is an xds.ServiceSource that gives the Services of another ServiceSource their
// route rules from GRPCRoutes: each Service port a route attaches to gets the merged rules
// of its routes (Service.Routes); the others keep the default routing. A route that turns
// invalid keeps its last valid translation applied (the Service keeps its last good
// routing) while its status says why the current one is refused.
type Source struct {
	inner xds.ServiceSource
	o     options
	// start begins delivering routes: list returns the current routes once synced; poke is
	// called after every change. static sources return at once.
	start func(ctx context.Context, poke func()) (list func() ([]*gatewayv1.GRPCRoute, error), synced func(context.Context) bool, err error)
	// status writes route status (nil: the routes have no API server, e.g. a file).
	status *statusWriter
}

var _ xds.ServiceSource = (*Source)(nil)

func newOptions(opts []Option) options {
	o := options{log: slog.Default(), retry: 2 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// NewKubernetes watches GRPCRoutes through client and writes their status. The GRPCRoute
// CRD (gateway.networking.k8s.io/v1) must be installed: see CRDInstalled.
func NewKubernetes(inner xds.ServiceSource, client gatewayclient.Interface, opts ...Option) *Source {
	s := &Source{inner: inner, o: newOptions(opts), status: &statusWriter{client: client}}
	s.start = func(ctx context.Context, poke func()) (func() ([]*gatewayv1.GRPCRoute, error), func(context.Context) bool, error) {
		factory := gatewayinformers.NewSharedInformerFactoryWithOptions(client, 0, gatewayinformers.WithNamespace(s.o.namespace))
		// The informer is built over a ListWatch whose failures are logged (client-go
		// retries them silently); the factory's lister then reads it.
		rep := listwatch.NewReporter(s.o.log, "grpcroutes")
		factory.InformerFor(&gatewayv1.GRPCRoute{}, func(c gatewayclient.Interface, resync time.Duration) cache.SharedIndexInformer {
			api := c.GatewayV1().GRPCRoutes(s.o.namespace)
			lw := rep.Wrap(&cache.ListWatch{
				ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
					return api.List(ctx, o)
				},
				WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
					return api.Watch(ctx, o)
				},
			})
			return cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, c), &gatewayv1.GRPCRoute{},
				cache.SharedIndexInformerOptions{ResyncPeriod: resync, Indexers: cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}})
		})
		inf := factory.Gateway().V1().GRPCRoutes()
		_ = inf.Informer().SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) { rep.WatchError(ctx, err) })
		if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { poke() },
			UpdateFunc: func(any, any) { poke() },
			DeleteFunc: func(any) { poke() },
		}); err != nil {
			return nil, nil, fmt.Errorf("grpcroute: add handler: %w", err)
		}
		lister := inf.Lister()
		factory.Start(ctx.Done())
		context.AfterFunc(ctx, factory.Shutdown)
		return func() ([]*gatewayv1.GRPCRoute, error) { return lister.List(labels.Everything()) },
			func(ctx context.Context) bool { return cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) }, nil
	}
	return s
}

// NewStatic applies a fixed list of routes (the demo's, read from a file with ParseRoutes).
// No status is written: the routes have no API server.
func NewStatic(inner xds.ServiceSource, routes []*gatewayv1.GRPCRoute, opts ...Option) *Source {
	s := &Source{inner: inner, o: newOptions(opts)}
	s.start = func(context.Context, func()) (func() ([]*gatewayv1.GRPCRoute, error), func(context.Context) bool, error) {
		return func() ([]*gatewayv1.GRPCRoute, error) { return routes, nil }, func(context.Context) bool { return true }, nil
	}
	return s
}

// WatchServices delivers the inner source's Services, each with its route rules: first once
// both the inner source and the routes have synced, then after every change of either.
func (s *Source) WatchServices(ctx context.Context, fn func([]xds.Service)) (func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	poked := make(chan struct{}, 1)
	poke := func() {
		select {
		case poked <- struct{}{}:
		default:
		}
	}
	var mu sync.Mutex
	var latest []xds.Service
	have := false
	innerWait, err := s.inner.WatchServices(ctx, func(list []xds.Service) {
		mu.Lock()
		latest, have = list, true
		mu.Unlock()
		poke()
	})
	if err != nil {
		cancel()
		return nil, err
	}
	list, synced, err := s.start(ctx, poke)
	if err != nil {
		cancel()
		innerWait()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if !synced(ctx) {
			return
		}
		st := &state{lastGood: map[types.UID]Translation{}}
		var retry <-chan time.Time
		for {
			mu.Lock()
			svcs, ok := latest, have
			mu.Unlock()
			if ok {
				routes, err := list()
				if err != nil {
					s.o.log.Error("grpcroute: list routes from the cache", "err", err)
				} else {
					out, results := st.compute(svcs, routes)
					if st.delivered == nil || !reflect.DeepEqual(out, st.delivered) {
						st.delivered = out
						fn(out)
					}
					retry = nil
					if s.status != nil {
						if err := s.status.write(ctx, routes, results); err != nil && ctx.Err() == nil {
							s.o.log.Warn("grpcroute: route status not written; retrying", "err", err)
							retry = time.After(s.o.retry)
						}
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-poked:
			case <-retry:
			}
		}
	}()
	return func() { cancel(); <-done; innerWait() }, nil
}

// state is what the loop remembers between rounds.
type state struct {
	lastGood  map[types.UID]Translation
	delivered []xds.Service
}

// result is one route's outcome this round, for its status.
type result struct {
	t        Translation
	conflict string // the current generation conflicts with an older route
}

// compute translates routes against svcs, applies the last good translation of routes that
// are now invalid, merges, and returns the Services with their rules and each route's result.
func (st *state) compute(svcs []xds.Service, routes []*gatewayv1.GRPCRoute) ([]xds.Service, map[types.UID]result) {
	idx := IndexServices(svcs)
	results := map[types.UID]result{}
	cand := map[types.UID]Translation{}
	current := map[types.UID]bool{}
	seen := map[types.UID]bool{}
	for _, rt := range routes {
		seen[rt.UID] = true
		t := Translate(rt, idx)
		results[rt.UID] = result{t: t}
		switch {
		case t.Valid():
			cand[rt.UID], current[rt.UID] = t, true
		case len(t.Parents) > 0:
			if lg, ok := st.lastGood[rt.UID]; ok {
				cand[rt.UID] = lg
			}
		}
	}
	for uid := range st.lastGood {
		if !seen[uid] {
			delete(st.lastGood, uid)
		}
	}
	byRoute := func() []Translation {
		out := make([]Translation, 0, len(cand))
		for _, t := range cand {
			out = append(out, t)
		}
		return out
	}
	rules, conflicts := Merge(byRoute())
	uidOf := map[types.NamespacedName]types.UID{}
	for _, rt := range routes {
		uidOf[types.NamespacedName{Namespace: rt.Namespace, Name: rt.Name}] = rt.UID
	}
	// A current generation that conflicts falls back to the route's last good one, if any.
	redo := false
	for n, msg := range conflicts {
		uid := uidOf[n]
		if !current[uid] {
			continue
		}
		r := results[uid]
		r.conflict = msg
		results[uid] = r
		delete(cand, uid)
		current[uid] = false
		if lg, ok := st.lastGood[uid]; ok {
			cand[uid] = lg
		}
		redo = true
	}
	if redo {
		rules, _ = Merge(byRoute())
	}
	for uid, c := range current {
		if c {
			st.lastGood[uid] = cand[uid]
		}
	}
	out := make([]xds.Service, len(svcs))
	for i, svc := range svcs {
		svc.Routes = rules[svc.Key]
		out[i] = svc
	}
	return out, results
}

// CRDInstalled reports whether the API server serves GRPCRoutes in
// gateway.networking.k8s.io/v1.
func CRDInstalled(client gatewayclient.Interface) (bool, error) {
	rl, err := client.Discovery().ServerResourcesForGroupVersion(gatewayv1.GroupVersion.String())
	if err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("grpcroute: discovery: %w", err)
	}
	return slices.ContainsFunc(rl.APIResources, func(r metav1.APIResource) bool { return r.Name == "grpcroutes" }), nil
}
