package xds_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/xds"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// grpc-go's xDS client closes its channel to the control plane asynchronously.
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
	)
}

var beKey = endpoint.Key{Namespace: "default", Service: "be", Port: "grpc"}

const beTarget = "be.default:grpc"

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestRoundRobinExactSpreadAndChanges(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	var src fakeEndpoints
	bs := startBackends(t, 7, "be-")
	src.publish(beKey, eps(bs[:5], "")...)
	cp := startControlPlane(t, "127.0.0.1:0", &src, xds.ServicesFromKeys(beKey))
	c := newClient(t, cp.addr, "", beTarget)

	eventually(t, ctx, "all 5 pods answer", func() (bool, string) { return onlyPods(ctx, c, 10, pods(bs[:5]...)...) })
	got, err := spread(ctx, c, 500)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs[:5] {
		if got[b.pod] != 100 {
			t.Fatalf("500 calls over 5 pods: %v, want exactly 100 each", got)
		}
	}

	// Scale up: the new pods take calls.
	src.publish(beKey, eps(bs, "")...)
	eventually(t, ctx, "7 pods answer", func() (bool, string) { return onlyPods(ctx, c, 14, pods(bs...)...) })
	got, err = spread(ctx, c, 700)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if got[b.pod] != 100 {
			t.Fatalf("700 calls over 7 pods: %v, want exactly 100 each", got)
		}
	}

	// Scale down: removed pods get nothing.
	src.publish(beKey, eps(bs[2:6], "")...)
	eventually(t, ctx, "only 4 pods answer", func() (bool, string) { return onlyPods(ctx, c, 40, pods(bs[2:6]...)...) })
	got, err = spread(ctx, c, 400)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs[2:6] {
		if got[b.pod] != 100 {
			t.Fatalf("400 calls over 4 pods: %v, want exactly 100 each", got)
		}
	}
	if n := cp.metric("spread_xds_connected_clients", nil); n != 1 {
		t.Errorf("spread_xds_connected_clients = %v, want 1", n)
	}
	if n := cp.metric("spread_xds_resources", map[string]string{"type": "endpoint"}); n != 4 {
		t.Errorf("spread_xds_resources{type=endpoint} = %v, want 4", n)
	}
}

func TestDrainingEndpointGetsNoNewCalls(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	var src fakeEndpoints
	bs := startBackends(t, 3, "be-")
	src.publish(beKey, eps(bs, "")...)
	cp := startControlPlane(t, "127.0.0.1:0", &src, xds.ServicesFromKeys(beKey))
	c := newClient(t, cp.addr, "", beTarget)
	eventually(t, ctx, "all 3 pods answer", func() (bool, string) { return onlyPods(ctx, c, 9, pods(bs...)...) })

	src.publish(beKey, bs[0].ep(""), bs[1].ep(""), bs[2].draining(""))
	eventually(t, ctx, "draining pod skipped", func() (bool, string) { return onlyPods(ctx, c, 20, pods(bs[:2]...)...) })
	before := bs[2].Calls()
	got, err := spread(ctx, c, 300)
	if err != nil {
		t.Fatal(err)
	}
	if got[bs[0].pod] != 150 || got[bs[1].pod] != 150 || bs[2].Calls() != before {
		t.Fatalf("300 calls with one draining pod: %v (draining got %d), want 150/150/0", got, bs[2].Calls()-before)
	}
}
