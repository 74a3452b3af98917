package xds_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/spread-grpc/spread/internal/xds"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestNackIsVisibleAndNotResent: an ADS client on a real stream rejects a Cluster. The
// control plane logs it (node, type, resources, error text), counts it by type, lists it in
// Nacks and /debug/xds, does not send the rejected version again, and forgets the rejection
// once the client ACKs a later version.
func TestNackIsVisibleAndNotResent(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	var src fakeEndpoints
	bs := startBackends(t, 2, "be-")
	src.publish(beKey, eps(bs, "")...)
	var svcs fakeServices
	svcs.set(xds.Service{Key: beKey})
	var logs syncBuffer
	cp := startControlPlane(t, "127.0.0.1:0", &src, &svcs, xds.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))

	cc, err := grpc.NewClient(cp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resps := make(chan *discoveryv3.DiscoveryResponse, 16)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			resps <- r
		}
	}()
	defer func() { _ = stream.CloseSend(); cc.Close(); <-recvDone }()
	const cds = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	node := &corev3.Node{Id: "nack-test", UserAgentName: "raw-ads-test"}
	send := func(version, nonce, nack string) {
		t.Helper()
		r := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: cds, VersionInfo: version, ResponseNonce: nonce, ResourceNames: []string{"be.default:grpc"}}
		if nack != "" {
			r.ErrorDetail = status.New(codes.InvalidArgument, nack).Proto()
		}
		if err := stream.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() *discoveryv3.DiscoveryResponse {
		t.Helper()
		select {
		case r := <-resps:
			return r
		case <-ctx.Done():
			t.Fatal("no response")
			return nil
		}
	}

	send("", "", "")
	r1 := recv()
	if len(r1.GetResources()) != 1 {
		t.Fatalf("first CDS response: %d resources", len(r1.GetResources()))
	}
	send("", r1.GetNonce(), "test: cluster be.default:grpc rejected")

	// The rejected version is not sent again (a short wait: this must not happen).
	select {
	case r := <-resps:
		t.Fatalf("rejected version sent again: version %s", r.GetVersionInfo())
	case <-time.After(300 * time.Millisecond):
	}
	if n := cp.metric("spread_xds_nacks_total", map[string]string{"type": "cluster"}); n != 1 {
		t.Errorf("spread_xds_nacks_total{type=cluster} = %v, want 1", n)
	}
	if n := cp.metric("spread_xds_nacking_clients", map[string]string{"type": "cluster"}); n != 1 {
		t.Errorf("spread_xds_nacking_clients{type=cluster} = %v, want 1", n)
	}
	ns := cp.srv.Nacks()
	if len(ns) != 1 || ns[0].NodeID != "nack-test" || ns[0].Type != "cluster" || ns[0].Version != r1.GetVersionInfo() ||
		!strings.Contains(ns[0].Error, "rejected") || len(ns[0].Resources) != 1 || ns[0].UserAgent != "raw-ads-test" {
		t.Fatalf("Nacks() = %+v", ns)
	}
	l := logs.String()
	for _, want := range []string{"NACK", "node=nack-test", "type=cluster", "be.default:grpc", "test: cluster be.default:grpc rejected", "version=" + r1.GetVersionInfo()} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q:\n%s", want, l)
		}
	}
	rec := httptest.NewRecorder()
	cp.srv.DebugHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/xds", nil))
	var d xds.Dump
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Nacks) != 1 || d.Nacks[0].NodeID != "nack-test" || len(d.Clients) != 1 || d.Clients[0].Types["cluster"].Nacked != r1.GetVersionInfo() {
		t.Fatalf("/debug/xds nacks %+v clients %+v", d.Nacks, d.Clients)
	}

	// A new Cluster version (the Service's policy changes): sent, ACKed, the NACK is gone.
	svcs.set(xds.Service{Key: beKey, Annotations: map[string]string{xds.AnnotationLBPolicy: "least_request"}})
	r2 := recv()
	if r2.GetVersionInfo() == r1.GetVersionInfo() {
		t.Fatalf("got version %s again", r2.GetVersionInfo())
	}
	send(r2.GetVersionInfo(), r2.GetNonce(), "")
	eventually(t, ctx, "the NACK is cleared by the ACK", func() (bool, string) {
		ns := cp.srv.Nacks()
		return len(ns) == 0 && cp.metric("spread_xds_nacking_clients", map[string]string{"type": "cluster"}) == 0, ""
	})
	cs := cp.srv.Clients()
	if len(cs) != 1 || cs[0].Types["cluster"].Acked != r2.GetVersionInfo() || cs[0].Types["cluster"].Nacks != 1 {
		t.Fatalf("Clients() = %+v", cs)
	}
}
