package xds_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spread-grpc/spread/internal/xds"
)

// TestStatusSyncedAndNacked: real grpc-go clients show SYNCED on every type, with their
// node id, zone, peer address and stream count; a client that rejects a response shows
// NACKED with its error; a change moves the real clients to the new version, SYNCED again.
func TestStatusSyncedAndNacked(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	var src fakeEndpoints
	bs := startBackends(t, 3, "be-")
	src.publish(beKey, eps(bs[:2], "zone-a")...)
	cp := startControlPlane(t, "127.0.0.1:0", &src, xds.ServicesFromKeys(beKey))
	a := newClient(t, cp.addr, "zone-a", beTarget)
	b := newClient(t, cp.addr, "", beTarget)
	eventually(t, ctx, "client a calls", func() (bool, string) { return onlyPods(ctx, a, 6, pods(bs[:2]...)...) })
	eventually(t, ctx, "client b calls", func() (bool, string) { return onlyPods(ctx, b, 6, pods(bs[:2]...)...) })

	// A raw client that NACKs the endpoints it is sent.
	raw := openADS(t, ctx, cp.addr)
	raw.request(edsType, "", "", beKey.String())
	r := raw.next(ctx)
	nack(t, raw, r, "endpoint weight out of range (test)")

	byNode := func() map[string]xds.ClientSync {
		out := map[string]xds.ClientSync{}
		for _, c := range cp.srv.Status() {
			out[c.NodeID] = c
		}
		return out
	}
	synced := func(c xds.ClientSync) bool {
		for _, ty := range []string{"listener", "route", "cluster", "endpoint"} {
			if c.Types[ty].State != xds.StateSynced {
				return false
			}
		}
		return true
	}
	eventually(t, ctx, "status: 2 SYNCED clients and 1 NACKED", func() (bool, string) {
		m := byNode()
		ok := len(m) == 3 && synced(m["test-zone-a"]) && synced(m["test-"]) &&
			m["raw-client"].Types["endpoint"].State == xds.StateNacked
		return ok, fmt.Sprintf("%+v", m)
	})
	m := byNode()
	if c := m["test-zone-a"]; c.Zone != "zone-a" || !strings.HasPrefix(c.Peer, "127.0.0.1:") || c.Streams != 1 || !strings.HasPrefix(c.UserAgent, "gRPC Go") {
		t.Errorf("client a: %+v", c)
	}
	if ts := m["raw-client"].Types["endpoint"]; ts.Error != "endpoint weight out of range (test)" || ts.Nacked != r.GetVersionInfo() || m["raw-client"].Types["listener"].State != xds.StateNotSent {
		t.Errorf("NACKing client: %+v", m["raw-client"])
	}

	// A change: the real clients move on and are SYNCED at the new version.
	old := m["test-"].Types["endpoint"].Acked
	src.publish(beKey, eps(bs, "zone-a")...)
	eventually(t, ctx, "SYNCED at the new version", func() (bool, string) {
		m := byNode()
		a, b := m["test-zone-a"], m["test-"]
		return synced(a) && synced(b) && b.Types["endpoint"].Acked != old && a.Types["endpoint"].Acked != old, fmt.Sprintf("%+v", m)
	})
}

// nack rejects response r on stream s with message msg.
func nack(t *testing.T, s *adsStream, r *discoverygrpc.DiscoveryResponse, msg string) {
	t.Helper()
	err := s.stream.Send(&discoverygrpc.DiscoveryRequest{
		TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce(), ResourceNames: []string{beKey.String()},
		ErrorDetail: status.New(codes.InvalidArgument, msg).Proto(),
	})
	if err != nil {
		t.Fatal(err)
	}
}
