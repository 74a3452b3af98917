package xds_test

import (
	"testing"
	"time"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/xds"
)

func TestZonePreferenceStaysInZoneAndSpills(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	var src fakeEndpoints
	a := startBackends(t, 2, "a-")
	b := startBackends(t, 2, "b-")
	all := append(eps(a, "zone-a"), eps(b, "zone-b")...)
	src.publish(beKey, all...)
	cp := startControlPlane(t, "127.0.0.1:0", &src, xds.ServicesFromKeys(beKey))
	inA := newClient(t, cp.addr, "zone-a", beTarget)
	noZone := newClient(t, cp.addr, "", beTarget)
	inC := newClient(t, cp.addr, "zone-c", beTarget) // a zone without endpoints

	eventually(t, ctx, "zone-a client on zone-a pods", func() (bool, string) { return onlyPods(ctx, inA, 20, pods(a...)...) })
	got, err := spread(ctx, inA, 400)
	if err != nil {
		t.Fatal(err)
	}
	if got["a-1"] != 200 || got["a-2"] != 200 {
		t.Fatalf("zone-a client: %v, want 200/200 on zone-a pods only", got)
	}
	eventually(t, ctx, "zone-less client on all pods", func() (bool, string) { return onlyPods(ctx, noZone, 20, append(pods(a...), pods(b...)...)...) })
	eventually(t, ctx, "zone-c client on all pods", func() (bool, string) { return onlyPods(ctx, inC, 20, append(pods(a...), pods(b...)...)...) })

	// Zone a loses its healthy endpoints: the control plane spills the client to zone b.
	notReady := func(e endpoint.Endpoint) endpoint.Endpoint { e.Ready, e.Serving = false, false; return e }
	src.publish(beKey, notReady(all[0]), notReady(all[1]), all[2], all[3])
	eventually(t, ctx, "zone-a client spilled to zone b", func() (bool, string) { return onlyPods(ctx, inA, 20, pods(b...)...) })

	// Zone a comes back: calls return to it.
	src.publish(beKey, all...)
	eventually(t, ctx, "zone-a client back in zone a", func() (bool, string) { return onlyPods(ctx, inA, 20, pods(a...)...) })

	// Zone a's pods die without the control plane knowing (still "healthy" in EDS):
	// grpc-go's priority policy fails over to priority 1 (zone b) by itself.
	for _, be := range a {
		be.Stop()
	}
	eventually(t, ctx, "client-side failover to zone b", func() (bool, string) { return onlyPods(ctx, inA, 20, pods(b...)...) })
	if n := cp.metric("spread_xds_connected_clients", nil); n != 3 {
		t.Errorf("connected clients = %v, want 3", n)
	}
}
