package endpointslice

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/spread-grpc/spread/endpoint"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// recorder collects the sets a subscriber receives.
type recorder struct{ ch chan endpoint.Set }

func newRecorder() *recorder { return &recorder{ch: make(chan endpoint.Set, 100)} }

func (r *recorder) fn(s endpoint.Set) { r.ch <- s }

// next waits for the next set, bounded by ctx.
func (r *recorder) next(ctx context.Context, t *testing.T) endpoint.Set {
	t.Helper()
	select {
	case s := <-r.ch:
		return s
	case <-ctx.Done():
		t.Fatal("no endpoint set delivered before the deadline")
		return nil
	}
}

// await waits until a delivered set's host:ports equal want.
func (r *recorder) await(ctx context.Context, t *testing.T, want ...string) endpoint.Set {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	var last []string
	for {
		select {
		case s := <-r.ch:
			if last = s.HostPorts(); slices.Equal(last, want) {
				return s
			}
		case <-ctx.Done():
			t.Fatalf("never got %v; last set %v", want, last)
			return nil
		}
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var grpcPort = []discoveryv1.EndpointPort{port("grpc", 8080)}

func TestSubscribeCurrentFirstThenChanges(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset(
		slice("be-a", "be", grpcPort, ep("192.0.2.1"), ep("192.0.2.2")),
		slice("be-b", "be", grpcPort, ep("192.0.2.3")),
		slice("other", "other", grpcPort, ep("192.0.2.50")),
	)
	src := New(client, WithLogger(quiet))
	defer src.Close()

	rec := newRecorder()
	subCtx, stop := context.WithCancel(ctx)
	wait, err := src.Subscribe(subCtx, endpoint.Key{Namespace: "ns", Service: "be", Port: "grpc"}, rec.fn)
	if err != nil {
		t.Fatal(err)
	}
	// The first set is the whole current state of both slices, and only of this Service.
	if got, want := rec.next(ctx, t).HostPorts(), []string{"192.0.2.1:8080", "192.0.2.2:8080", "192.0.2.3:8080"}; !slices.Equal(got, want) {
		t.Fatalf("first set %v, want %v", got, want)
	}

	slices := client.DiscoveryV1().EndpointSlices("ns")
	// Updating one slice keeps the other one's endpoints.
	if _, err := slices.Update(ctx, slice("be-b", "be", grpcPort, ep("192.0.2.3"), ep("192.0.2.4")), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.await(ctx, t, "192.0.2.1:8080", "192.0.2.2:8080", "192.0.2.3:8080", "192.0.2.4:8080")

	// Deleting slices removes their endpoints; the empty set is published too.
	if err := slices.Delete(ctx, "be-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.await(ctx, t, "192.0.2.3:8080", "192.0.2.4:8080")
	if err := slices.Delete(ctx, "be-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.await(ctx, t)

	stop()
	wait()
	if n := src.activeWatches(); n != 0 {
		t.Errorf("%d watches still active after the last subscriber left", n)
	}
}

func TestSubscribeEmptyServiceGetsEmptySet(t *testing.T) {
	ctx := testCtx(t)
	src := New(fake.NewClientset(), WithLogger(quiet))
	defer src.Close()
	rec := newRecorder()
	if _, err := src.Subscribe(ctx, endpoint.Key{Namespace: "ns", Service: "none", Port: "grpc"}, rec.fn); err != nil {
		t.Fatal(err)
	}
	if s := rec.next(ctx, t); s == nil || len(s) != 0 {
		t.Fatalf("first set %#v, want an empty set", s)
	}
}

func TestOneWatchPerService(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset(slice("be-a", "be", []discoveryv1.EndpointPort{port("grpc", 8080), port("admin", 9090)}, ep("192.0.2.1")))
	reg := prometheus.NewPedanticRegistry()
	src := New(client, WithLogger(quiet), WithRegisterer(reg))
	defer src.Close()

	keys := []endpoint.Key{
		{Namespace: "ns", Service: "be", Port: "grpc"},
		{Namespace: "ns", Service: "be", Port: "grpc"},
		{Namespace: "ns", Service: "be", Port: "8080"},
		{Namespace: "ns", Service: "be", Port: "admin"},
		{Namespace: "ns", Service: "other", Port: "grpc"},
	}
	wantPort := []int32{8080, 8080, 8080, 9090, 0}
	for i, k := range keys {
		rec := newRecorder()
		if _, err := src.Subscribe(ctx, k, rec.fn); err != nil {
			t.Fatal(err)
		}
		s := rec.next(ctx, t)
		if wantPort[i] == 0 && len(s) != 0 || wantPort[i] != 0 && (len(s) != 1 || s[0].Port != wantPort[i]) {
			t.Errorf("%v: first set %v, want port %d", k, s, wantPort[i])
		}
	}
	// Each informer lists, then opens its watch right after the sync: wait for both watches,
	// then check that there are no more.
	count := func(verb string) int {
		n := 0
		for _, a := range client.Actions() {
			if a.GetVerb() == verb {
				n++
			}
		}
		return n
	}
	for count("watch") < 2 {
		select {
		case <-ctx.Done():
			t.Fatalf("%d watches opened, want 2", count("watch"))
		case <-time.After(time.Millisecond):
		}
	}
	if l, w := count("list"), count("watch"); l != 2 || w != 2 {
		t.Errorf("%d lists and %d watches for 5 subscriptions on 2 Services, want 2 and 2", l, w)
	}
	if got := testutil.ToFloat64(src.m.watchesOpened.WithLabelValues("ns", "be")); got != 1 {
		t.Errorf("spread_endpointslice_watches_opened_total{service=be} = %v, want 1", got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP spread_endpointslice_endpoints Endpoints of a target (<service>.<namespace>:<port>) by health: healthy, draining or unhealthy.
# TYPE spread_endpointslice_endpoints gauge
spread_endpointslice_endpoints{health="draining",target="be.ns:8080"} 0
spread_endpointslice_endpoints{health="draining",target="be.ns:admin"} 0
spread_endpointslice_endpoints{health="draining",target="be.ns:grpc"} 0
spread_endpointslice_endpoints{health="draining",target="other.ns:grpc"} 0
spread_endpointslice_endpoints{health="healthy",target="be.ns:8080"} 1
spread_endpointslice_endpoints{health="healthy",target="be.ns:admin"} 1
spread_endpointslice_endpoints{health="healthy",target="be.ns:grpc"} 1
spread_endpointslice_endpoints{health="healthy",target="other.ns:grpc"} 0
spread_endpointslice_endpoints{health="unhealthy",target="be.ns:8080"} 0
spread_endpointslice_endpoints{health="unhealthy",target="be.ns:admin"} 0
spread_endpointslice_endpoints{health="unhealthy",target="be.ns:grpc"} 0
spread_endpointslice_endpoints{health="unhealthy",target="other.ns:grpc"} 0
`), "spread_endpointslice_endpoints"); err != nil {
		t.Error(err)
	}
}

func TestForbiddenFailsFast(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset()
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "",
		errors.New(`User "system:serviceaccount:ns:nobody" cannot list resource "endpointslices"`))
	client.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, forbidden
	})
	src := New(client, WithLogger(quiet))
	defer src.Close()

	start := time.Now()
	rec := newRecorder()
	_, err := src.Subscribe(ctx, endpoint.Key{Namespace: "ns", Service: "be", Port: "grpc"}, rec.fn)
	if err == nil {
		t.Fatal("Subscribe succeeded without permission")
	}
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "be.ns:grpc") {
		t.Errorf("error %q: want a wrapped Forbidden naming the target", err)
	}
	t.Logf("failed after %v: %v", time.Since(start), err)
	if n := src.activeWatches(); n != 0 {
		t.Errorf("%d watches left after a failed Subscribe", n)
	}
}

func TestSubscribeContextEndsBeforeSync(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset()
	block := make(chan struct{})
	var once sync.Once
	listed := make(chan struct{})
	client.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		once.Do(func() { close(listed) })
		<-block
		return false, nil, nil
	})
	defer close(block)
	src := New(client, WithLogger(quiet))
	defer src.Close()

	subCtx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := src.Subscribe(subCtx, endpoint.Key{Namespace: "ns", Service: "be", Port: "grpc"}, func(endpoint.Set) {})
		errc <- err
	}()
	select {
	case <-listed:
	case <-ctx.Done():
		t.Fatal("never listed")
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Subscribe = %v, want context.Canceled", err)
		}
	case <-ctx.Done():
		t.Fatal("Subscribe did not return when its context ended")
	}
}

func TestProgrammingLatency(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset()
	src := New(client, WithLogger(quiet))
	defer src.Close()
	trigger := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	src.now = func() time.Time { return trigger.Add(40 * time.Millisecond) }

	rec := newRecorder()
	if _, err := src.Subscribe(ctx, endpoint.Key{Namespace: "ns", Service: "be", Port: "grpc"}, rec.fn); err != nil {
		t.Fatal(err)
	}
	rec.await(ctx, t)
	sl := slice("be-a", "be", grpcPort, ep("192.0.2.1"))
	sl.Annotations = map[string]string{TriggerTimeAnnotation: trigger.Format(time.RFC3339Nano)}
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Create(ctx, sl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec.await(ctx, t, "192.0.2.1:8080")
	h := src.m.programmingDelay.WithLabelValues("ns", "be").(prometheus.Histogram)
	if n, sum := sampleCount(h), sampleSum(h); n != 1 || sum < 0.039 || sum > 0.041 {
		t.Errorf("latency histogram: %d samples, sum %v; want 1 sample of 0.04", n, sum)
	}
}

func TestTombstoneDelete(t *testing.T) {
	ctx := testCtx(t)
	client := fake.NewClientset(slice("be-a", "be", grpcPort, ep("192.0.2.1")))
	src := New(client, WithLogger(quiet))
	defer src.Close()
	rec := newRecorder()
	if _, err := src.Subscribe(ctx, endpoint.Key{Namespace: "ns", Service: "be", Port: "grpc"}, rec.fn); err != nil {
		t.Fatal(err)
	}
	rec.await(ctx, t, "192.0.2.1:8080")

	// A relist that misses a delete hands the handler a tombstone; the set must follow the
	// cache, which no longer holds the slice.
	src.mu.Lock()
	w := src.watches[serviceID{"ns", "be"}]
	src.mu.Unlock()
	obj, _, _ := w.informer.GetStore().GetByKey("ns/be-a")
	if err := w.informer.GetStore().Delete(obj); err != nil {
		t.Fatal(err)
	}
	handler{w}.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/be-a", Obj: obj})
	rec.await(ctx, t)
}

func TestCloseStopsEverything(t *testing.T) {
	ctx := testCtx(t)
	src := New(fake.NewClientset(slice("be-a", "be", grpcPort, ep("192.0.2.1"))), WithLogger(quiet))
	rec := newRecorder()
	wait, err := src.Subscribe(ctx, endpoint.Key{Namespace: "ns", Service: "be", Port: "grpc"}, rec.fn)
	if err != nil {
		t.Fatal(err)
	}
	src.Close()
	wait() // returns: delivery stopped with the Source
	if _, err := src.Subscribe(ctx, endpoint.Key{Namespace: "ns", Service: "be", Port: "grpc"}, rec.fn); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
}

func TestSubscribeRejectsIncompleteKey(t *testing.T) {
	src := New(fake.NewClientset(), WithLogger(quiet))
	defer src.Close()
	if _, err := src.Subscribe(context.Background(), endpoint.Key{Service: "be", Port: "grpc"}, func(endpoint.Set) {}); err == nil {
		t.Error("Subscribe without namespace succeeded")
	}
}

func sampleCount(h prometheus.Histogram) uint64 { return metricOf(h).GetHistogram().GetSampleCount() }

func sampleSum(h prometheus.Histogram) float64 { return metricOf(h).GetHistogram().GetSampleSum() }

func metricOf(m prometheus.Metric) *dto.Metric {
	var out dto.Metric
	_ = m.Write(&out)
	return &out
}
