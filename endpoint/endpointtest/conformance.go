package endpointtest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spread-grpc/spread/endpoint"
)

// Harness is one endpoint source under test, made afresh for every check by a Factory.
type Harness struct {
	// Source is the source under test.
	Source endpoint.Source
	// Key is a key the source has and whose endpoints the harness controls.
	Key endpoint.Key
	// Initial is Key's current set when the Factory returns: the first set every
	// subscriber must get.
	Initial endpoint.Set
	// Change alters Key's endpoints (adds a pod, writes a slice) and returns a test of the
	// set the source must come to deliver.
	Change func(t *testing.T) (want func(endpoint.Set) bool)
	// Empty removes every endpoint of Key; the source must then deliver the empty set. Nil
	// when the source cannot have none (the demo's Deployment keeps at least one pod).
	Empty func(t *testing.T)
	// Refused, if set, is a key Subscribe must fail on before delivering anything
	// (Forbidden, a Service the source does not have).
	Refused *endpoint.Key
	// Close closes the source; nil when it has no Close. After it every subscription ends
	// and Subscribe fails.
	Close func()
}

// Factory makes a fresh Harness; it registers its own cleanup with t.
type Factory func(t *testing.T) Harness

// Timeout bounds each check of RunConformance.
const Timeout = 30 * time.Second

// quiet is how long a "must not happen" check watches: short, as the checks before it
// have already waited for the condition that would have let it happen.
const quiet = 100 * time.Millisecond

// RunConformance checks every promise of the endpoint.Source contract against the sources
// newHarness makes, one subtest per promise.
func RunConformance(t *testing.T, newHarness Factory) {
	t.Run("FirstSetIsCurrent", func(t *testing.T) {
		ctx := testContext(t)
		h := newHarness(t)
		r := subscribe(ctx, t, h.Source, h.Key)
		r.expectFirst(ctx, t, h.Initial)
		r.stop(t)
	})
	t.Run("ConcurrentSubscribersEachGetCurrent", func(t *testing.T) {
		ctx := testContext(t)
		h := newHarness(t)
		rs := make([]*recorder, 3)
		errs := make(chan error, len(rs))
		for i := range rs {
			go func() {
				var err error
				rs[i], err = trySubscribe(ctx, h.Source, h.Key)
				errs <- err
			}()
		}
		for range rs {
			if err := <-errs; err != nil {
				t.Fatalf("Subscribe(%s): %v", h.Key, err)
			}
		}
		for _, r := range rs {
			r.expectFirst(ctx, t, h.Initial)
			r.stop(t)
		}
	})
	t.Run("ChangesEndOnNewest", func(t *testing.T) {
		ctx := testContext(t)
		h := newHarness(t)
		r := subscribe(ctx, t, h.Source, h.Key)
		r.expectFirst(ctx, t, h.Initial)
		want := h.Change(t)
		r.await(ctx, t, "the changed set", want)
		// Ends on it: no older set is delivered after the newest.
		r.settled(t, "the changed set", want)
		r.stop(t)
	})
	t.Run("EmptySetIsDelivered", func(t *testing.T) {
		h := newHarness(t)
		if h.Empty == nil {
			t.Skip("this source cannot have an empty set")
		}
		ctx := testContext(t)
		r := subscribe(ctx, t, h.Source, h.Key)
		r.expectFirst(ctx, t, h.Initial)
		h.Empty(t)
		r.await(ctx, t, "the empty set", func(s endpoint.Set) bool { return len(s) == 0 })
		r.stop(t)
	})
	t.Run("NoCallAfterWait", func(t *testing.T) {
		ctx := testContext(t)
		h := newHarness(t)
		stopped := subscribe(ctx, t, h.Source, h.Key)
		stopped.expectFirst(ctx, t, h.Initial)
		stopped.stop(t)
		// A second subscriber sees the change; the stopped one must not.
		live := subscribe(ctx, t, h.Source, h.Key)
		live.expectFirst(ctx, t, h.Initial)
		want := h.Change(t)
		live.await(ctx, t, "the changed set", want)
		time.Sleep(quiet) // a must-not-happen window after the condition above
		if n := stopped.afterStop.Load(); n > 0 {
			t.Errorf("fn called %d times after wait returned", n)
		}
		live.stop(t)
	})
	t.Run("DoneContextIsAnError", func(t *testing.T) {
		h := newHarness(t)
		ctx, cancel := context.WithCancel(testContext(t))
		cancel()
		r, err := trySubscribe(ctx, h.Source, h.Key)
		if err == nil {
			r.stop(t)
			t.Fatal("Subscribe with a done context succeeded")
		}
		if r != nil {
			t.Fatal("Subscribe returned a subscription with its error")
		}
	})
	t.Run("RefusedKeyIsAnError", func(t *testing.T) {
		h := newHarness(t)
		if h.Refused == nil {
			t.Skip("the harness names no key the source refuses")
		}
		ctx := testContext(t)
		var calls atomic.Int64
		wait, err := h.Source.Subscribe(ctx, *h.Refused, func(endpoint.Set) { calls.Add(1) })
		if err == nil {
			wait()
			t.Fatalf("Subscribe(%s) succeeded; want an error", *h.Refused)
		}
		if wait != nil {
			t.Error("Subscribe returned a wait function with its error")
		}
		t.Logf("Subscribe(%s): %v", *h.Refused, err)
		time.Sleep(quiet)
		if n := calls.Load(); n > 0 {
			t.Errorf("fn called %d times for a refused key", n)
		}
	})
	t.Run("CloseEndsSubscriptions", func(t *testing.T) {
		h := newHarness(t)
		if h.Close == nil {
			t.Skip("this source has no Close")
		}
		ctx := testContext(t)
		r := subscribe(ctx, t, h.Source, h.Key)
		r.expectFirst(ctx, t, h.Initial)
		h.Close()
		waited := make(chan struct{})
		go func() { r.wait(); close(waited) }()
		select {
		case <-waited:
		case <-ctx.Done():
			t.Fatal("wait did not return after Close")
		}
		r.cancel()
		if again, err := trySubscribe(ctx, h.Source, h.Key); err == nil {
			again.stop(t)
			t.Error("Subscribe after Close succeeded")
		}
	})
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return ctx
}

// recorder is one subscription: it records the sets delivered and checks that fn is never
// called concurrently with itself.
type recorder struct {
	sets      chan endpoint.Set
	inFlight  atomic.Int64
	overlap   atomic.Bool
	done      atomic.Bool
	afterStop atomic.Int64
	cancel    context.CancelFunc
	wait      func()
}

func trySubscribe(ctx context.Context, src endpoint.Source, key endpoint.Key) (*recorder, error) {
	r := &recorder{sets: make(chan endpoint.Set, 1024)}
	subCtx, cancel := context.WithCancel(ctx)
	wait, err := src.Subscribe(subCtx, key, r.fn)
	if err != nil {
		cancel()
		return nil, err
	}
	if wait == nil {
		cancel()
		panic("endpointtest: Subscribe returned a nil wait function without an error")
	}
	r.cancel, r.wait = cancel, wait
	return r, nil
}

func subscribe(ctx context.Context, t *testing.T, src endpoint.Source, key endpoint.Key) *recorder {
	t.Helper()
	r, err := trySubscribe(ctx, src, key)
	if err != nil {
		t.Fatalf("Subscribe(%s): %v", key, err)
	}
	t.Cleanup(func() { r.cancel(); r.wait() })
	return r
}

func (r *recorder) fn(s endpoint.Set) {
	if r.inFlight.Add(1) != 1 {
		r.overlap.Store(true)
	}
	defer r.inFlight.Add(-1)
	if r.done.Load() {
		r.afterStop.Add(1)
	}
	select {
	case r.sets <- s:
	default: // the checks read far fewer sets than this holds
	}
}

// stop cancels the subscription, waits for it, and checks what it saw.
func (r *recorder) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	r.wait()
	r.done.Store(true)
	if r.overlap.Load() {
		t.Error("fn was called concurrently with itself")
	}
}

func (r *recorder) expectFirst(ctx context.Context, t *testing.T, want endpoint.Set) {
	t.Helper()
	select {
	case s := <-r.sets:
		if !s.Equal(want) {
			t.Fatalf("first set %v, want the current set %v", s, want)
		}
	case <-ctx.Done():
		t.Fatalf("no first set delivered; want %v", want)
	}
}

// settled checks that every set delivered within the quiet window still satisfies want.
func (r *recorder) settled(t *testing.T, what string, want func(endpoint.Set) bool) {
	t.Helper()
	window := time.After(quiet)
	for {
		select {
		case s := <-r.sets:
			if !want(s) {
				t.Fatalf("after %s, %v was delivered", what, s)
			}
		case <-window:
			return
		}
	}
}

func (r *recorder) await(ctx context.Context, t *testing.T, what string, want func(endpoint.Set) bool) {
	t.Helper()
	var last endpoint.Set
	for {
		select {
		case s := <-r.sets:
			if last = s; want(s) {
				return
			}
		case <-ctx.Done():
			t.Fatalf("never got %s; last set %v", what, last)
		}
	}
}
