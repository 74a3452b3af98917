// Package kubeservices tells the xDS control plane which Kubernetes Service ports to serve:
// it watches Services (one informer) and announces every TCP port of each Service that opts
// in — with the spread.dev/lb-policy annotation or spread.dev/xds: "true" — or of every
// Service, if so configured. It implements xds.ServiceSource.
//
// A named port is announced by name ("<svc>.<ns>:grpc") with its number as an alias
// ("<svc>.<ns>:50051"), so clients may dial either; an unnamed port by number.
package kubeservices

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/listwatch"
	"github.com/spread-grpc/spread/internal/xds"
)

// Option configures a Source.
type Option func(*Source)

// WithNamespace limits the watch to one namespace (default: all namespaces).
func WithNamespace(ns string) Option { return func(s *Source) { s.namespace = ns } }

// WithAllServices serves every Service, not only the ones that opt in by annotation.
func WithAllServices() Option { return func(s *Source) { s.all = true } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Source) { s.log = l } }

// WithErrorLogEvery sets the least interval between two Warn lines about failing list or
// watch calls (default listwatch.DefaultEvery, 30 s); every failure is logged at Debug.
func WithErrorLogEvery(d time.Duration) Option { return func(s *Source) { s.errEvery = d } }

// Source watches Services. Create it with New.
type Source struct {
	client    kubernetes.Interface
	namespace string
	all       bool
	log       *slog.Logger
	errEvery  time.Duration
}

var _ xds.ServiceSource = (*Source)(nil)

// New returns a Source reading Services through client.
func New(client kubernetes.Interface, opts ...Option) *Source {
	s := &Source{client: client, log: slog.Default()}
	for _, o := range opts {
		o(s)
	}
	return s
}

// WatchServices starts the Service informer and calls fn with the full list once the
// informer has synced, then again after each change that alters the list.
//
// Like the EndpointSlice source (see endpoint.Source), it blocks until the first list has
// succeeded. A list error no retry cures (Forbidden when RBAC does not allow list+watch on
// services, Unauthorized, ...) is returned at once and starts nothing; ctx's cause is
// returned when ctx ends first. Other failures (the API server is unreachable) are retried
// with backoff and logged, a Warn line at most every 30 s (WithErrorLogEvery). After the
// first sync, watch errors are retried likewise and the last list stays current.
func (s *Source) WatchServices(ctx context.Context, fn func([]xds.Service)) (func(), error) {
	if s.client == nil {
		return nil, errors.New("kubeservices: no Kubernetes client")
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("kubeservices: watch services: %w", context.Cause(ctx))
	}
	watchCtx, cancel := context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactoryWithOptions(s.client, 0, informers.WithNamespace(s.namespace))
	// The Service informer is built over a ListWatch whose failures are reported (client-go
	// retries them silently); the factory's lister then reads it.
	rep := listwatch.NewReporter(s.log, "services", listwatch.WithEvery(s.errEvery))
	factory.InformerFor(&corev1.Service{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		api := c.CoreV1().Services(s.namespace)
		lw := rep.Wrap(&cache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return api.List(ctx, o)
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				return api.Watch(ctx, o)
			},
		})
		return cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, c), &corev1.Service{},
			cache.SharedIndexInformerOptions{ResyncPeriod: resync, Indexers: cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}})
	})
	inf := factory.Core().V1().Services()
	lister := inf.Lister()
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}); err != nil {
		cancel()
		return nil, fmt.Errorf("kubeservices: add handler: %w", err)
	}
	var (
		synced   atomic.Bool
		failOnce sync.Once
		failErr  error
		failed   = make(chan struct{}) // closed on the first list/watch error before sync
	)
	_ = inf.Informer().SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		rep.WatchError(ctx, err)
		// The Reporter logs the failure. Before the first sync, an error no retry cures
		// (Forbidden, Unauthorized, ...) fails the watch; any other (the API server is
		// unreachable, overloaded) is retried, and /readyz stays 503 meanwhile.
		if !synced.Load() && listwatch.Permanent(err) {
			failOnce.Do(func() { failErr = err; close(failed) })
		}
	})
	factory.Start(watchCtx.Done())
	syncDone := make(chan bool, 1)
	go func() { syncDone <- cache.WaitForCacheSync(watchCtx.Done(), inf.Informer().HasSynced) }()
	fail := func(err error) (func(), error) {
		cancel()
		<-syncDone
		factory.Shutdown()
		return nil, fmt.Errorf("kubeservices: watch services: %w", err)
	}
	select {
	case ok := <-syncDone:
		if !ok {
			syncDone <- false // for fail
			return fail(context.Cause(ctx))
		}
		synced.Store(true)
	case <-failed:
		return fail(failErr)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer factory.Shutdown()
		defer cancel()
		var last []xds.Service
		first := true
		for {
			svcs, err := lister.List(labels.Everything())
			if err != nil {
				s.log.Error("kubeservices: list services from the cache", "err", err)
			} else if list := s.announce(svcs); first || !equal(list, last) {
				first = false
				last = list
				fn(list)
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
		}
	}()
	return func() { <-done }, nil
}

// OptedIn reports whether a Service asks to be served over xDS: it has spread.dev/lb-policy,
// spread.dev/xds=true, or an annotation that means to be one of them but is misspelled
// (xds.UnknownAnnotation: spread.dev/lbpolicy, spread.dev/lb_policy, ...). Such a Service is
// served so that ParseServiceConfig rejects its annotations with a clear error (an Event on
// the Service, the config-errors metric) instead of the Service being silently left out.
func OptedIn(annotations map[string]string) bool {
	if _, ok := annotations[xds.AnnotationLBPolicy]; ok {
		return true
	}
	if _, typo := xds.UnknownAnnotation(annotations); typo {
		return true
	}
	v, _ := strconv.ParseBool(annotations[xds.AnnotationXDS])
	return v
}

// announce turns Services into the sorted list of ports to serve.
func (s *Source) announce(svcs []*corev1.Service) []xds.Service {
	var out []xds.Service
	for _, svc := range svcs {
		if !s.all && !OptedIn(svc.Annotations) {
			continue
		}
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		ann := map[string]string{}
		for k, v := range svc.Annotations {
			if strings.HasPrefix(k, xds.AnnotationPrefix) {
				ann[k] = v
			}
		}
		for _, p := range svc.Spec.Ports {
			if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
				continue
			}
			num := strconv.Itoa(int(p.Port))
			k := endpoint.Key{Namespace: svc.Namespace, Service: svc.Name, Port: num}
			var aliases []string
			if p.Name != "" {
				k.Port, aliases = p.Name, []string{num}
			}
			out = append(out, xds.Service{Key: k, Aliases: aliases, Annotations: ann, UID: string(svc.UID)})
		}
	}
	slices.SortFunc(out, func(a, b xds.Service) int { return strings.Compare(a.Key.String(), b.Key.String()) })
	return out
}

func equal(a, b []xds.Service) bool {
	return slices.EqualFunc(a, b, func(x, y xds.Service) bool {
		return x.Key == y.Key && x.UID == y.UID && slices.Equal(x.Aliases, y.Aliases) && maps.Equal(x.Annotations, y.Annotations)
	})
}
