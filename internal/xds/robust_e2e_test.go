package xds_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/xds"
)

func TestControlPlaneRestartWhileCallsFlow(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	var src fakeEndpoints
	bs := startBackends(t, 4, "be-")
	src.publish(beKey, eps(bs[:3], "")...)
	svcs := xds.ServicesFromKeys(beKey)
	cp1 := startControlPlane(t, "127.0.0.1:0", &src, svcs)
	c := newClient(t, cp1.addr, "", beTarget)
	eventually(t, ctx, "3 pods answer", func() (bool, string) { return onlyPods(ctx, c, 9, pods(bs[:3]...)...) })

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stopCalls := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stopCalls:
					return
				default:
				}
				callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := c.SayHello(callCtx, &echo.EchoRequest{Name: "flow"})
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	// Let calls flow, then restart the control plane on the same address.
	eventually(t, ctx, "calls flowing", func() (bool, string) { return ok.Load() > 200, "" })
	cp1.stop()
	beforeRestart := ok.Load()
	eventually(t, ctx, "calls flow with the control plane down", func() (bool, string) { return ok.Load() > beforeRestart+200, "" })
	cp2 := startControlPlane(t, cp1.addr, &src, svcs)
	<-cp2.srv.Ready()
	// A change made after the restart reaches the client.
	src.publish(beKey, eps(bs, "")...)
	eventually(t, ctx, "4th pod answers after the restart", func() (bool, string) {
		return bs[3].Calls() > 0, fmt.Sprint(ok.Load(), " ok, ", failed.Load(), " failed")
	})
	close(stopCalls)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d calls failed across the restart (first: %v)", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	t.Logf("%d calls, 0 failed, across a control-plane restart", ok.Load())
}

func TestBadAnnotationKeepsLastGoodConfig(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	var src fakeEndpoints
	ringKey := endpoint.Key{Namespace: "default", Service: "ring", Port: "grpc"}
	newKey := endpoint.Key{Namespace: "default", Service: "new", Port: "grpc"}
	bs := startBackends(t, 4, "be-")
	rs := startBackends(t, 3, "ring-")
	ns := startBackends(t, 2, "new-")
	src.publish(beKey, eps(bs[:3], "")...)
	src.publish(ringKey, eps(rs, "")...)
	src.publish(newKey, eps(ns, "")...)
	ringHash := map[string]string{xds.AnnotationLBPolicy: "ring_hash", xds.AnnotationHashHeader: "x-user"}
	var svcs fakeServices
	svcs.set(xds.Service{Key: beKey}, xds.Service{Key: ringKey, Annotations: ringHash})
	cp := startControlPlane(t, "127.0.0.1:0", &src, &svcs)
	be := newClient(t, cp.addr, "", beTarget)
	ring := newClient(t, cp.addr, "", "ring.default:grpc")

	pinned := func() (bool, string) {
		got, err := spread(ctx, ring, 30, "x-user", "alice")
		return err == nil && len(got) == 1, fmtCounts(got)
	}
	eventually(t, ctx, "ring_hash pins a user", pinned)
	eventually(t, ctx, "be on 3 pods", func() (bool, string) { return onlyPods(ctx, be, 9, pods(bs[:3]...)...) })

	// Break the ring Service's annotation; add a new Service whose annotations were never good.
	svcs.set(xds.Service{Key: beKey},
		xds.Service{Key: ringKey, Annotations: map[string]string{xds.AnnotationLBPolicy: "bogus", xds.AnnotationHashHeader: "x-user"}},
		xds.Service{Key: newKey, Annotations: map[string]string{xds.AnnotationLBPolicy: "ring_hash"}})
	eventually(t, ctx, "config error counted", func() (bool, string) {
		n := cp.metric("spread_xds_config_errors_total", map[string]string{"service": "ring.default:grpc", "reason": xds.ReasonUnknownPolicy})
		m := cp.metric("spread_xds_config_errors_total", map[string]string{"service": "new.default:grpc", "reason": xds.ReasonMissingHashHeader})
		return n == 1 && m == 1, fmt.Sprint(n, m)
	})
	// The broken Service keeps ring_hash; the other Service still follows changes; the new one
	// is served with the default policy.
	if ok, state := pinned(); !ok {
		t.Fatalf("ring Service lost its last good config: %s", state)
	}
	src.publish(beKey, eps(bs, "")...)
	eventually(t, ctx, "be follows a change", func() (bool, string) { return onlyPods(ctx, be, 12, pods(bs...)...) })
	fresh := newClient(t, cp.addr, "", "new.default:grpc")
	eventually(t, ctx, "new Service served round robin", func() (bool, string) { return onlyPods(ctx, fresh, 10, pods(ns...)...) })
	d, err := cp.srv.Dump()
	if err != nil {
		t.Fatal(err)
	}
	dumped := false
	for _, s := range d.Services {
		if s.Name != "ring.default:grpc" {
			continue
		}
		dumped = true
		if s.Policy != xds.RingHash || !strings.Contains(s.ConfigError, "bogus") {
			t.Errorf("dump of ring Service: %+v, want ring_hash kept and the error shown", s)
		}
	}
	if !dumped {
		t.Errorf("the dump has no ring.default:grpc Service: %+v", d.Services)
	}
	if n := cp.metric("spread_xds_nacks_total", nil); n != 0 {
		t.Errorf("%v NACKs, want none", n)
	}

	// Fixing the annotation takes effect.
	svcs.set(xds.Service{Key: beKey}, xds.Service{Key: ringKey, Annotations: map[string]string{xds.AnnotationLBPolicy: "round_robin"}})
	eventually(t, ctx, "fixed config applied", func() (bool, string) {
		got, err := spread(ctx, ring, 30, "x-user", "alice")
		return err == nil && len(got) == 3, fmtCounts(got)
	})
}
