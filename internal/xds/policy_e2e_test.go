package xds_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/orcaload"
	"github.com/spread-grpc/spread/internal/xds"
)

func TestRingHashSameHeaderSamePod(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	var src fakeEndpoints
	bs := startBackends(t, 5, "be-")
	src.publish(beKey, eps(bs, "")...)
	svcs := xds.StaticServices{{Key: beKey, Annotations: map[string]string{
		xds.AnnotationLBPolicy: "ring_hash", xds.AnnotationHashHeader: "x-user",
	}}}
	cp := startControlPlane(t, "127.0.0.1:0", &src, svcs)
	c := newClient(t, cp.addr, "", beTarget)

	usersOn := map[string]bool{}
	for i := range 40 {
		user := fmt.Sprintf("user-%d", i)
		var got map[string]int
		// The first calls of a ring_hash channel may land anywhere while subchannels connect;
		// what is checked is that a user settles on one pod and stays there.
		eventually(t, ctx, "user "+user+" pinned", func() (bool, string) {
			var err error
			got, err = spread(ctx, c, 20, "x-user", user)
			return err == nil && len(got) == 1, fmtCounts(got)
		})
		for p := range got {
			usersOn[p] = true
		}
		again, err := spread(ctx, c, 50, "x-user", user)
		if err != nil {
			t.Fatal(err)
		}
		if len(again) != 1 || !sameKeys(again, got) {
			t.Fatalf("user %s: first on %v, then on %v", user, got, again)
		}
	}
	if len(usersOn) < 3 {
		t.Errorf("40 users hashed onto %d pods, want them spread over at least 3 of 5", len(usersOn))
	}
}

func sameKeys(a, b map[string]int) bool {
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return len(a) == len(b)
}

func TestWeightedRoundRobinFollowsORCA(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	var src fakeEndpoints
	var bs []*backend
	// Same rate → the half-capacity backend reports double the utilization.
	for i, capacity := range []float64{1000, 1000, 500} {
		r, err := orcaload.New(orcaload.WithCapacity(capacity), orcaload.WithWindow(500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		bs = append(bs, startBackend(t, fmt.Sprintf("be-%d", i+1), 0, r.ServerOptions()...))
	}
	src.publish(beKey, eps(bs, "")...)
	svcs := xds.StaticServices{{Key: beKey, Annotations: map[string]string{
		xds.AnnotationLBPolicy:    "weighted_round_robin",
		xds.AnnotationWRRBlackout: "100ms", xds.AnnotationWRRUpdate: "100ms",
	}}}
	cp := startControlPlane(t, "127.0.0.1:0", &src, svcs)
	c := newClient(t, cp.addr, "", beTarget)

	// Shares converge as weights update; poll windows of calls until the doubled-utilization
	// backend gets about half of what each other one gets.
	eventually(t, ctx, "weighted shares", func() (bool, string) {
		got, err := parallelSpread(ctx, c, 4, 1500)
		if err != nil {
			return false, err.Error()
		}
		a, b, slow := float64(got["be-1"]), float64(got["be-2"]), float64(got["be-3"])
		r := slow / ((a + b) / 2)
		t.Logf("%v ratio %.2f", got, r)
		return r > 0.4 && r < 0.6, fmt.Sprintf("%v ratio %.2f", got, r)
	})
}

// parallelSpread makes n calls from `callers` goroutines and counts answers per pod.
func parallelSpread(ctx context.Context, c echo.EchoServerClient, callers, n int) (map[string]int, error) {
	var mu sync.Mutex
	got := map[string]int{}
	var firstErr error
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n / callers {
				r, err := c.SayHello(ctx, &echo.EchoRequest{Name: fmt.Sprint(i)})
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				got[r.GetPod()]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return got, firstErr
}

func TestLeastRequestAvoidsSlowBackend(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	var src fakeEndpoints
	bs := []*backend{
		startBackend(t, "fast-1", 0),
		startBackend(t, "fast-2", 0),
		// Slow by far more than a busy machine slows the fast ones: least_request keeps the
		// outstanding calls even, so a pod's share follows 1/latency, on top of the 1/27 it
		// gets when all 3 random choices (with replacement) fall on it. 20 ms here gave the
		// slow pod 15-17 % on a loaded machine, 200 ms 6-7 %.
		startBackend(t, "slow", 500*time.Millisecond),
	}
	src.publish(beKey, eps(bs, "")...)
	svcs := xds.StaticServices{{Key: beKey, Annotations: map[string]string{
		xds.AnnotationLBPolicy: "least_request", xds.AnnotationChoiceCount: "3",
	}}}
	cp := startControlPlane(t, "127.0.0.1:0", &src, svcs)
	c := newClient(t, cp.addr, "", beTarget)
	eventually(t, ctx, "all 3 pods answer", func() (bool, string) {
		got, err := parallelSpread(ctx, c, 8, 240)
		return err == nil && len(got) == 3, fmtCounts(got)
	})
	got, err := parallelSpread(ctx, c, 8, 1600)
	if err != nil {
		t.Fatal(err)
	}
	// Round robin would give the slow pod a third (533); least_request should starve it.
	if share := float64(got["slow"]) / 1600; share > 0.20 {
		t.Fatalf("slow pod got %.0f%% of calls under least_request: %v", share*100, got)
	}
	t.Logf("least_request: %v", got)
}
