package xds_test

import (
	"context"
	"maps"
	"net"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/xds"
)

const edsType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

// adsStream is a raw ADS client: it sends exactly the requests a test writes, so a test
// can tell a response the server sends from one it holds back.
type adsStream struct {
	t      *testing.T
	stream discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	resps  chan *discoverygrpc.DiscoveryResponse
}

func openADS(t *testing.T, ctx context.Context, addr string) *adsStream {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	sctx, cancel := context.WithCancel(ctx)
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	a := &adsStream{t: t, stream: st, resps: make(chan *discoverygrpc.DiscoveryResponse, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			a.resps <- r
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

func (a *adsStream) request(typeURL, version, nonce string, names ...string) {
	a.t.Helper()
	err := a.stream.Send(&discoverygrpc.DiscoveryRequest{
		Node: &corev3.Node{Id: "raw-client"}, TypeUrl: typeURL, VersionInfo: version, ResponseNonce: nonce, ResourceNames: names,
	})
	if err != nil {
		a.t.Fatal(err)
	}
}

func (a *adsStream) next(ctx context.Context) *discoverygrpc.DiscoveryResponse {
	a.t.Helper()
	select {
	case r := <-a.resps:
		return r
	case <-ctx.Done():
		a.t.Fatal("no response before the deadline")
		return nil
	}
}

// none asserts that nothing arrives for d (a "must not happen" check: short by design).
func (a *adsStream) none(d time.Duration, why string) {
	a.t.Helper()
	select {
	case r := <-a.resps:
		a.t.Fatalf("%s: got a response, version %q, %d resources", why, r.GetVersionInfo(), len(r.GetResources()))
	case <-time.After(d):
	}
}

// TestReplicasServeIdenticalVersions runs two control planes over one source: they name
// every state alike, a client moving from one to the other with the current version is
// sent nothing, and the next change reaches it under the version the other replica uses.
func TestReplicasServeIdenticalVersions(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	var src fakeEndpoints
	ep := func(i int) endpoint.Endpoint {
		return endpoint.Endpoint{Address: "127.0.0.1", Port: int32(20000 + i), Pod: "p" + string(rune('a'+i)), Zone: "z", Ready: true, Serving: true}
	}
	src.publish(beKey, ep(0), ep(1))
	svcs := xds.ServicesFromKeys(beKey)
	a := startControlPlane(t, "127.0.0.1:0", &src, svcs)
	b := startControlPlane(t, "127.0.0.1:0", &src, svcs)
	<-a.srv.Ready()
	<-b.srv.Ready()
	same := func() (bool, string) {
		va, vb := a.srv.Versions()[""], b.srv.Versions()[""]
		return maps.Equal(va, vb) && va["endpoint"] != "", "a " + fmtVersions(va) + " b " + fmtVersions(vb)
	}
	eventually(t, ctx, "both replicas at the same versions", same)

	// A client on replica a, at the current endpoint version, ACKs.
	sa := openADS(t, ctx, a.addr)
	sa.request(edsType, "", "", beKey.String())
	r := sa.next(ctx)
	v1 := r.GetVersionInfo()
	if v1 != a.srv.Versions()[""]["endpoint"] {
		t.Fatalf("response version %q, snapshot %q", v1, a.srv.Versions()[""]["endpoint"])
	}
	sa.request(edsType, v1, r.GetNonce(), beKey.String())

	// It moves to replica b: a fresh stream naming v1 gets the same version again (a fresh
	// stream is always answered: see shouldRespond), identical content, so it just ACKs...
	sb := openADS(t, ctx, b.addr)
	sb.request(edsType, v1, "", beKey.String())
	if r := sb.next(ctx); r.GetVersionInfo() != v1 || len(r.GetResources()) != 1 {
		t.Fatalf("replica b answered a moved client with version %q (%d resources), want %q", r.GetVersionInfo(), len(r.GetResources()), v1)
	} else {
		sb.request(edsType, v1, r.GetNonce(), beKey.String())
	}
	// ...while a client without a version does get it (the check above can fail).
	sc := openADS(t, ctx, b.addr)
	sc.request(edsType, "", "", beKey.String())
	if got := sc.next(ctx).GetVersionInfo(); got != v1 {
		t.Fatalf("replica b serves %q, replica a served %q", got, v1)
	}

	// The next change reaches the moved client, under the version replica a uses too.
	src.publish(beKey, ep(0), ep(1), ep(2))
	r = sb.next(ctx)
	if r.GetVersionInfo() == v1 || len(r.GetResources()) != 1 {
		t.Fatalf("after the change: version %q (was %q), %d resources", r.GetVersionInfo(), v1, len(r.GetResources()))
	}
	eventually(t, ctx, "both replicas at the same versions after the change", same)
	if got := a.srv.Versions()[""]["endpoint"]; got != r.GetVersionInfo() {
		t.Fatalf("replica a at %q, replica b sent %q", got, r.GetVersionInfo())
	}

	// Content, not history, names a state: going back to the first endpoints gives v1 again.
	src.publish(beKey, ep(0), ep(1))
	eventually(t, ctx, "v1 again", func() (bool, string) {
		v := b.srv.Versions()[""]["endpoint"]
		return v == v1, v
	})
}

// TestLaggingReplicaHoldsNewerClient: a client that saw a newer state on another replica is
// not moved back to this replica's older one; it gets nothing until this replica reaches its
// version (then it is answered under that version), and the next change after that.
func TestLaggingReplicaHoldsNewerClient(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	var srcA, srcB fakeEndpoints // b's source lags behind a's
	ep := func(i int) endpoint.Endpoint {
		return endpoint.Endpoint{Address: "127.0.0.1", Port: int32(21000 + i), Pod: "p" + string(rune('a'+i)), Ready: true, Serving: true}
	}
	srcA.publish(beKey, ep(0), ep(1))
	srcB.publish(beKey, ep(0))
	svcs := xds.ServicesFromKeys(beKey)
	a := startControlPlane(t, "127.0.0.1:0", &srcA, svcs)
	b := startControlPlane(t, "127.0.0.1:0", &srcB, svcs, xds.WithUnknownVersionHold(time.Minute))
	<-a.srv.Ready()
	<-b.srv.Ready()

	sa := openADS(t, ctx, a.addr)
	sa.request(edsType, "", "", beKey.String())
	newer := sa.next(ctx).GetVersionInfo()

	sb := openADS(t, ctx, b.addr)
	sb.request(edsType, newer, "", beKey.String())
	sb.none(300*time.Millisecond, "lagging replica answering a client ahead of it")
	srcB.publish(beKey, ep(0), ep(1)) // b catches up: same content, same version
	// The first request of a stream is answered (shouldRespond), now under the client's own
	// version, never an older one.
	if r := sb.next(ctx); r.GetVersionInfo() != newer || len(r.GetResources()) != 1 {
		t.Fatalf("after catching up: version %q with %d resources, want the client's %q with 1", r.GetVersionInfo(), len(r.GetResources()), newer)
	} else {
		sb.request(edsType, newer, r.GetNonce(), beKey.String())
	}
	sb.none(300*time.Millisecond, "replica that reached the client's version, after the ACK")
	srcB.publish(beKey, ep(0), ep(1), ep(2))
	if r := sb.next(ctx); r.GetVersionInfo() == newer {
		t.Fatalf("change after catching up sent under the old version %q", newer)
	}
}

// TestReconnectWithNewSubscription: a client that reconnects naming its current version and
// a resource it did not subscribe to before gets that resource at once, not at the next
// change — from the same replica, and from a lagging one once it reaches the client's version.
func TestReconnectWithNewSubscription(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	other := endpoint.Key{Namespace: "default", Service: "other", Port: "grpc"}
	ep := func(i int) endpoint.Endpoint {
		return endpoint.Endpoint{Address: "127.0.0.1", Port: int32(23000 + i), Pod: "p" + string(rune('a'+i)), Ready: true, Serving: true}
	}
	var srcA, srcB fakeEndpoints
	for _, src := range []*fakeEndpoints{&srcA, &srcB} {
		src.publish(beKey, ep(0))
		src.publish(other, ep(1))
	}
	srcA.publish(beKey, ep(0), ep(2)) // b lags behind a on be
	svcs := xds.ServicesFromKeys(beKey, other)
	a := startControlPlane(t, "127.0.0.1:0", &srcA, svcs)
	b := startControlPlane(t, "127.0.0.1:0", &srcB, svcs, xds.WithUnknownVersionHold(time.Minute))
	<-a.srv.Ready()
	<-b.srv.Ready()
	names := func(r *discoverygrpc.DiscoveryResponse) []string {
		var out []string
		for _, res := range r.GetResources() {
			var cla endpointv3.ClusterLoadAssignment
			if err := res.UnmarshalTo(&cla); err != nil {
				t.Fatal(err)
			}
			out = append(out, cla.GetClusterName())
		}
		slices.Sort(out)
		return out
	}
	want := []string{other.String(), beKey.String()}
	slices.Sort(want)

	s1 := openADS(t, ctx, a.addr)
	s1.request(edsType, "", "", beKey.String())
	r := s1.next(ctx)
	v := r.GetVersionInfo()
	s1.request(edsType, v, r.GetNonce(), beKey.String())

	// Reconnect to a with v and one more name: both resources, under v.
	s2 := openADS(t, ctx, a.addr)
	s2.request(edsType, v, "", beKey.String(), other.String())
	if r := s2.next(ctx); r.GetVersionInfo() != v || !slices.Equal(names(r), want) {
		t.Fatalf("reconnected with a new name: version %q, resources %v; want %q, %v", r.GetVersionInfo(), names(r), v, want)
	}

	// The same on lagging replica b: held until it reaches v, then both resources under v.
	s3 := openADS(t, ctx, b.addr)
	s3.request(edsType, v, "", beKey.String(), other.String())
	s3.none(300*time.Millisecond, "lagging replica answering a client ahead of it")
	srcB.publish(beKey, ep(0), ep(2))
	if r := s3.next(ctx); r.GetVersionInfo() != v || !slices.Equal(names(r), want) {
		t.Fatalf("lagging replica after catching up: version %q, resources %v; want %q, %v", r.GetVersionInfo(), names(r), v, want)
	}
}

// TestUnknownVersionAnsweredAfterHold: a version no replica serves any more (a client from
// before this process) is answered with the current state once the hold has passed.
func TestUnknownVersionAnsweredAfterHold(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	var src fakeEndpoints
	src.publish(beKey, endpoint.Endpoint{Address: "127.0.0.1", Port: 22000, Pod: "p", Ready: true, Serving: true})
	cp := startControlPlane(t, "127.0.0.1:0", &src, xds.ServicesFromKeys(beKey), xds.WithUnknownVersionHold(200*time.Millisecond))
	<-cp.srv.Ready()
	s := openADS(t, ctx, cp.addr)
	s.request(edsType, "from-an-old-process", "", beKey.String())
	r := s.next(ctx)
	if want := cp.srv.Versions()[""]["endpoint"]; r.GetVersionInfo() != want || len(r.GetResources()) != 1 {
		t.Fatalf("got version %q with %d resources, want %q with 1", r.GetVersionInfo(), len(r.GetResources()), want)
	}
}

func fmtVersions(m map[string]string) string {
	s := ""
	for _, k := range []string{"listener", "route", "cluster", "endpoint"} {
		s += k + "=" + m[k] + " "
	}
	return s
}

// TestBootstrapFallbackServer: with the first server of the bootstrap unreachable and
// nothing cached, a real grpc-go client falls back to the next one (gRFC A71).
func TestBootstrapFallbackServer(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	var src fakeEndpoints
	bs := startBackends(t, 2, "be-")
	src.publish(beKey, eps(bs, "")...)
	cp := startControlPlane(t, "127.0.0.1:0", &src, xds.ServicesFromKeys(beKey))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close() // nothing listens there: connections are refused
	b, err := xds.Bootstrap(xds.BootstrapConfig{ServerURI: dead, FallbackURIs: []string{cp.addr}, NodeID: "fallback-client"})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(b)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///"+beTarget, grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	c := echo.NewEchoServerClient(cc)
	eventually(t, ctx, "both pods answer through the fallback server", func() (bool, string) { return onlyPods(ctx, c, 10, pods(bs...)...) })
}
