package endpointslice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/spread-grpc/spread/endpoint"
)

// TriggerTimeAnnotation is set by the endpointslice controller to the time of the Pod or
// Service change that caused a slice write; it is the start of "endpoint programming latency".
const TriggerTimeAnnotation = "endpoints.kubernetes.io/last-change-trigger-time"

type serviceID struct{ namespace, service string }

func (id serviceID) String() string { return id.namespace + "/" + id.service }

// serviceWatch is the one informer of one Service, shared by all its subscribers.
type serviceWatch struct {
	id       serviceID
	src      *Source
	refs     int // guarded by src.mu
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
	done     chan struct{} // closed when the informer and loop goroutines have exited

	synced chan struct{} // closed once synced, or failed (err set before)
	err    error

	failOnce sync.Once
	failed   chan struct{} // closed on the first list/watch error before sync
	failErr  error
	isSynced atomic.Bool

	watches atomic.Int64 // watch requests opened

	notify chan struct{} // capacity 1: the cache changed

	mu      sync.Mutex
	ports   map[string]*portState
	pending []time.Time // trigger times of changes not yet published
}

type portState struct {
	key  endpoint.Key
	subs int
	pub  endpoint.Publisher
}

// startWatch creates and starts the informer of id. Called with s.mu held.
func (s *Source) startWatch(id serviceID) *serviceWatch {
	ctx, cancel := context.WithCancel(s.ctx)
	w := &serviceWatch{
		id:     id,
		src:    s,
		cancel: cancel,
		done:   make(chan struct{}),
		synced: make(chan struct{}),
		failed: make(chan struct{}),
		notify: make(chan struct{}, 1),
		ports:  make(map[string]*portState),
	}
	selector := discoveryv1.LabelServiceName + "=" + id.service
	slices := s.client.DiscoveryV1().EndpointSlices(id.namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return slices.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			n := w.watches.Add(1)
			s.m.watchesOpened.WithLabelValues(id.namespace, id.service).Inc()
			if n > 1 {
				s.m.watchRestarts.WithLabelValues(id.namespace, id.service).Inc()
				s.log.Debug("endpointslice: watch restarted", "service", id.String(), "watches", n)
			}
			return slices.Watch(ctx, o)
		},
	}
	w.informer = cache.NewSharedIndexInformerWithOptions(
		// The client tells whether it supports watch-list semantics (fake clientsets do not).
		// The Reporter logs failing calls, which client-go retries silently.
		cache.ToListWatcherWithWatchListSemantics(s.errors.Wrap(lw, "service", id.String()), s.client),
		&discoveryv1.EndpointSlice{},
		cache.SharedIndexInformerOptions{ResyncPeriod: s.resync},
	)
	_ = w.informer.SetWatchErrorHandlerWithContext(w.watchError)
	reg, _ := w.informer.AddEventHandler(handler{w})

	s.wg.Add(2)
	informerDone := make(chan struct{})
	go func() {
		defer s.wg.Done()
		defer close(informerDone)
		w.informer.RunWithContext(ctx)
	}()
	go func() {
		defer s.wg.Done()
		defer close(w.done)
		w.loop(ctx, reg.HasSyncedChecker().Done())
		cancel()
		<-informerDone
	}()
	return w
}

// watchError runs on the list and watch errors of the informer; the Source's Reporter logs
// them. Before the first sync it fails the watch, so that Subscribe returns the error
// (Forbidden, Unauthorized, connection refused, ...) at once instead of waiting for a sync
// that may never come; the caller retries (the resolver reports the error to gRPC and
// backs off).
func (w *serviceWatch) watchError(ctx context.Context, r *cache.Reflector, err error) {
	w.src.errors.WatchError(ctx, err, "service", w.id.String())
	w.src.m.watchErrors.WithLabelValues(w.id.namespace, w.id.service).Inc()
	if !w.isSynced.Load() {
		w.failOnce.Do(func() {
			w.failErr = err
			close(w.failed)
		})
	}
}

// loop waits for the first sync, then recomputes and publishes the sets on every change.
func (w *serviceWatch) loop(ctx context.Context, synced <-chan struct{}) {
	select {
	case <-synced:
	case <-w.failed:
		w.fail(w.failErr)
		return
	case <-ctx.Done():
		w.fail(errors.New("stopped before the first sync"))
		return
	}
	w.isSynced.Store(true)
	w.recompute()
	close(w.synced)
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.notify:
			w.recompute()
		}
	}
}

func (w *serviceWatch) fail(err error) {
	w.err = fmt.Errorf("list endpointslices of %s: %w", w.id, err)
	s := w.src
	s.mu.Lock()
	if s.watches[w.id] == w {
		delete(s.watches, w.id) // the next Subscribe starts afresh
	}
	s.mu.Unlock()
	close(w.synced)
}

// stop stops the informer and waits for its goroutines.
func (w *serviceWatch) stop() {
	w.cancel()
	<-w.done
}

// slicesLocked returns the cached slices of the Service. They are shared cache objects: read
// only.
func (w *serviceWatch) slicesLocked() []*discoveryv1.EndpointSlice {
	objs := w.informer.GetStore().List()
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if sl, ok := o.(*discoveryv1.EndpointSlice); ok {
			out = append(out, sl)
		}
	}
	return out
}

// recompute publishes the merged set of every subscribed port and observes the programming
// latency of the changes it covers (at publication time: observed just before the sets go
// out, so that a subscriber that sees a set also sees its latency recorded).
func (w *serviceWatch) recompute() {
	w.mu.Lock()
	defer w.mu.Unlock()
	slices := w.slicesLocked()
	if len(w.pending) > 0 {
		now := w.src.now()
		h := w.src.m.programmingDelay.WithLabelValues(w.id.namespace, w.id.service)
		for _, t := range w.pending {
			h.Observe(max(now.Sub(t), 0).Seconds())
		}
		w.pending = w.pending[:0]
	}
	for _, ps := range w.ports {
		w.publishLocked(ps, Trim(slices, ps.key.Port))
	}
}

func (w *serviceWatch) publishLocked(ps *portState, set endpoint.Set) {
	if cur, ok := ps.pub.Current(); ok && cur.Equal(set) {
		return
	}
	ps.pub.Publish(set)
	m, target := w.src.m, ps.key.String()
	m.updates.WithLabelValues(target).Inc()
	m.lastUpdate.WithLabelValues(target).Set(float64(w.src.now().UnixNano()) / 1e9)
	var n [3]int
	for _, e := range set {
		n[e.Health()]++
	}
	for h := endpoint.Healthy; h <= endpoint.Unhealthy; h++ {
		m.endpoints.WithLabelValues(target, h.String()).Set(float64(n[h]))
	}
}

// subscribe adds a subscriber of one port. The watch has synced. On error (ctx done) the
// subscriber is not added.
func (w *serviceWatch) subscribe(ctx context.Context, key endpoint.Key, fn func(endpoint.Set)) (wait func(), err error) {
	w.mu.Lock()
	ps := w.ports[key.Port]
	if ps == nil {
		ps = &portState{key: key}
		w.ports[key.Port] = ps
		w.publishLocked(ps, Trim(w.slicesLocked(), key.Port))
	}
	ps.subs++
	w.mu.Unlock()
	wait, err = ps.pub.Subscribe(ctx, fn)
	if err != nil {
		w.unsubscribe(key.Port)
	}
	return wait, err
}

func (w *serviceWatch) unsubscribe(port string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ps := w.ports[port]
	if ps == nil {
		return
	}
	if ps.subs--; ps.subs > 0 {
		return
	}
	delete(w.ports, port)
	target := ps.key.String()
	w.src.m.endpoints.DeletePartialMatch(map[string]string{"target": target})
	w.src.m.lastUpdate.DeleteLabelValues(target)
}

func (w *serviceWatch) changed(trigger time.Time) {
	if !trigger.IsZero() {
		w.mu.Lock()
		w.pending = append(w.pending, trigger)
		w.mu.Unlock()
	}
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// handler turns informer events into recomputations. It never modifies the objects.
type handler struct{ w *serviceWatch }

func (h handler) OnAdd(obj any, isInInitialList bool) {
	var t time.Time
	if sl, ok := obj.(*discoveryv1.EndpointSlice); ok && !isInInitialList {
		t = triggerTime(sl, h.w.src.log)
	}
	h.w.changed(t)
}

func (h handler) OnUpdate(oldObj, newObj any) {
	old, _ := oldObj.(*discoveryv1.EndpointSlice)
	cur, ok := newObj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	// Resyncs (same object) only recompute an equal set, which Publish drops; the trigger
	// time is taken only when it changed, so each change is observed once.
	var t time.Time
	if old == nil || old.Annotations[TriggerTimeAnnotation] != cur.Annotations[TriggerTimeAnnotation] {
		t = triggerTime(cur, h.w.src.log)
	}
	h.w.changed(t)
}

func (h handler) OnDelete(obj any) {
	// The set is recomputed from the cache, which no longer holds the slice; unwrapping the
	// tombstone only serves the log.
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		h.w.src.log.Debug("endpointslice: slice deleted while the watch was down", "service", h.w.id.String(), "slice", tomb.Key)
	}
	h.w.changed(time.Time{})
}

func triggerTime(sl *discoveryv1.EndpointSlice, log *slog.Logger) time.Time {
	v, ok := sl.Annotations[TriggerTimeAnnotation]
	if !ok {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		log.Debug("endpointslice: bad trigger time annotation", "slice", sl.Namespace+"/"+sl.Name, "value", v)
		return time.Time{}
	}
	return t
}
