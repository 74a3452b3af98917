package xds_test

import (
	"context"
	"maps"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/echotest"
	"github.com/spread-grpc/spread/internal/freeze"
	"github.com/spread-grpc/spread/internal/xds"
)

// startFreezableBackend is startBackend behind a freeze.Switch.
func startFreezableBackend(t testing.TB, pod string) (*backend, *freeze.Switch) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := freeze.New()
	eb, err := echotest.Serve(g.Listener(lis), pod, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eb.Stop)
	t.Cleanup(g.Close) // runs first: unblocks frozen connections so Stop can close them
	return newBackend(eb), g
}

// loadResult counts a batch of calls.
type loadResult struct {
	calls, failed int
	slowestFail   time.Duration
	otherErr      error // a failure other than DeadlineExceeded
}

// load makes n calls from workers goroutines, each call bounded by perCall on top of the
// route's own timeout.
func load(ctx context.Context, c echo.EchoServerClient, n, workers int, perCall time.Duration) loadResult {
	var mu sync.Mutex
	var res loadResult
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(ctx, perCall)
				start := time.Now()
				_, err := c.SayHello(cctx, &echo.EchoRequest{Name: "t"})
				took := time.Since(start)
				cancel()
				mu.Lock()
				res.calls++
				if err != nil {
					res.failed++
					res.slowestFail = max(res.slowestFail, took)
					if status.Code(err) != codes.DeadlineExceeded && res.otherErr == nil {
						res.otherErr = err
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return res
}

// frozenSetup serves 5 backends under svc's annotations, waits until the client reaches all
// of them, then freezes the last one.
func frozenSetup(t *testing.T, ctx context.Context, annotations map[string]string) echo.EchoServerClient {
	t.Helper()
	var src fakeEndpoints
	var bs []*backend
	var gates []*freeze.Switch
	for _, p := range []string{"be-1", "be-2", "be-3", "be-4", "be-5"} {
		b, g := startFreezableBackend(t, p)
		bs, gates = append(bs, b), append(gates, g)
	}
	src.publish(beKey, eps(bs, "")...)
	cp := startControlPlane(t, "127.0.0.1:0", &src, xds.StaticServices{{Key: beKey, Annotations: annotations}})
	c := newClient(t, cp.addr, "", beTarget)
	eventually(t, ctx, "all 5 pods reached", func() (bool, string) { return onlyPods(ctx, c, 50, pods(bs...)...) })
	gates[4].Set(true)
	return c
}

const (
	frozenWorkers = 10
	callTimeout   = 500 * time.Millisecond
)

// A frozen pod answers nothing while its endpoint stays Ready. With the outlier-detection
// and call-timeout annotations, calls to it fail after the route's 500 ms timeout, the pod
// is ejected, and later calls all succeed. The timeout is on every call, or on the one
// method (a route of its own ahead of the catch-all).
func TestOutlierDetectionEjectsFrozenPod(t *testing.T) {
	for name, extra := range map[string]map[string]string{
		"all calls":  nil,
		"one method": {xds.AnnotationCallTimeoutMethods: "echo.EchoServer/SayHello"},
	} {
		t.Run(name, func(t *testing.T) {
			ann := map[string]string{
				xds.AnnotationOutlierDetection: xds.OutlierFailurePercentage,
				xds.AnnotationCallTimeout:      callTimeout.String(),
			}
			maps.Copy(ann, extra)
			testOutlierEjects(t, ann)
		})
	}
}

func testOutlierEjects(t *testing.T, ann map[string]string) {
	ctx := testCtx(t, 90*time.Second)
	c := frozenSetup(t, ctx, ann)
	// The test's own bound is 10 s: calls that fail sooner fail on the route's timeout.
	const testBound = 10 * time.Second
	var first loadResult
	eventually(t, ctx, "frozen pod ejected", func() (bool, string) {
		r := load(ctx, c, 200, frozenWorkers, testBound)
		if first.calls == 0 {
			first = r
		}
		return r.failed == 0 && r.calls == 200, fmtLoad(r)
	})
	if first.failed == 0 {
		t.Fatalf("the frozen pod never failed a call (first batch %s): was it frozen?", fmtLoad(first))
	}
	if first.otherErr != nil || first.slowestFail > 5*callTimeout {
		t.Fatalf("before ejection: %s; want failures by DeadlineExceeded after about %v (the route's max_stream_duration)", fmtLoad(first), callTimeout)
	}
	const n = 2000
	r := load(ctx, c, n, frozenWorkers, testBound)
	t.Logf("before ejection: %s; after: %s", fmtLoad(first), fmtLoad(r))
	if r.calls != n || float64(r.failed) >= 0.01*n {
		t.Errorf("after ejection: %s; want under 1%% failed", fmtLoad(r))
	}
}

// Without the annotations the frozen pod keeps its share of calls: about one in five fails
// (here on the caller's own deadline; without one the calls would hang).
func TestFrozenPodWithoutOutlierDetection(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	c := frozenSetup(t, ctx, nil)
	const n = 500
	r := load(ctx, c, n, frozenWorkers, callTimeout)
	t.Logf("without outlier detection: %s", fmtLoad(r))
	if frac := float64(r.failed) / n; r.calls != n || frac < 0.15 || frac > 0.25 || r.otherErr != nil {
		t.Errorf("%s; want about 20%% failed by DeadlineExceeded", fmtLoad(r))
	}
}

func fmtLoad(r loadResult) string {
	s := "calls=" + strconv.Itoa(r.calls) + " failed=" + strconv.Itoa(r.failed) + " slowest_fail=" + r.slowestFail.Round(time.Millisecond).String()
	if r.otherErr != nil {
		s += " other_err=" + r.otherErr.Error()
	}
	return s
}
