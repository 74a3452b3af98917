package xds

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/endpoint/endpointtest"
)

// manyEndpoints are n ready endpoints in 3 zones.
func manyEndpoints(n int) []endpoint.Endpoint {
	set := make([]endpoint.Endpoint, n)
	for i := range set {
		set[i] = endpoint.Endpoint{Address: "192.0.2." + strconv.Itoa(i%250+1), Port: int32(10000 + i/250),
			Pod: fmt.Sprintf("be-%d", i), Zone: fmt.Sprintf("zone-%d", i%3), Ready: true, Serving: true}
	}
	return set
}

// bigCLA is a marshaled assignment of n endpoints, as the cache holds it.
func bigCLA(t testing.TB, name string, n int) *anypb.Any {
	t.Helper()
	a, err := anypb.New(buildCLA(name, endpoint.NewSet(manyEndpoints(n)), ""))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSharedCodecWire: the shared encoding decodes (proto.Unmarshal) to a message proto.Equal
// to the response, is byte for byte what proto.Marshal writes, and references each resource's
// bytes instead of copying them; other messages go through the proto codec.
func TestSharedCodecWire(t *testing.T) {
	c := newSharedCodec()
	cla := bigCLA(t, "default/be:grpc", 5000)
	small := &anypb.Any{TypeUrl: "type.googleapis.com/x.Y", Value: []byte{1, 2, 3}}
	cases := map[string]*discoveryv3.DiscoveryResponse{
		"assignment":               {VersionInfo: "0123456789abcdef01234567", Resources: []*anypb.Any{cla}, TypeUrl: typeURLs[types.Endpoint], Nonce: "17"},
		"several":                  {VersionInfo: "v", Resources: []*anypb.Any{small, cla, small}, TypeUrl: "t", Nonce: "123456789012"},
		"empty":                    {},
		"no resources, long nonce": {VersionInfo: "v", TypeUrl: "t", Nonce: string(bytes.Repeat([]byte("n"), 300))},
		"empty any":                {Resources: []*anypb.Any{{}, {TypeUrl: "only-url"}, {Value: []byte{9}}}},
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			before := c.shared.Load()
			data, err := c.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if c.shared.Load() != before+1 {
				t.Fatal("a plain DiscoveryResponse was not given the shared encoding")
			}
			got := data.Materialize()
			var back discoveryv3.DiscoveryResponse
			if err := proto.Unmarshal(got, &back); err != nil {
				t.Fatalf("proto.Unmarshal of the shared encoding: %v", err)
			}
			if !proto.Equal(&back, r) {
				t.Fatalf("decoded %v, want %v", &back, r)
			}
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("shared encoding (%d bytes) differs from proto.Marshal (%d bytes)", len(got), len(want))
			}
			for _, a := range r.GetResources() {
				if len(a.GetValue()) > 0 && !referenced(data, a.GetValue()) {
					t.Fatalf("resource %q was copied, not referenced", a.GetTypeUrl())
				}
			}
			// grpc-go frees what it sent; the shared bytes must survive it intact.
			data.Free()
			again, _ := c.Marshal(r)
			if !bytes.Equal(again.Materialize(), want) {
				t.Fatal("encoding changed after the first one was freed")
			}
		})
	}

	t.Run("other messages", func(t *testing.T) {
		before := c.shared.Load()
		for _, m := range []proto.Message{
			&discoveryv3.DiscoveryRequest{VersionInfo: "v", TypeUrl: "t", ResourceNames: []string{"a"}},
			&discoveryv3.DiscoveryResponse{VersionInfo: "v", Canary: true, Resources: []*anypb.Any{small}},
			&discoveryv3.DiscoveryResponse{VersionInfo: "v", ControlPlane: &corev3.ControlPlane{Identifier: "cp"}},
		} {
			data, err := c.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			back := m.ProtoReflect().New().Interface()
			if err := proto.Unmarshal(data.Materialize(), back); err != nil || !proto.Equal(back, m) {
				t.Fatalf("%T round trip: %v, %v", m, back, err)
			}
			data.Free()
		}
		if c.shared.Load() != before {
			t.Fatal("a message with other fields was given the shared encoding")
		}
	})
}

// referenced reports whether one of data's buffers is b itself (the same memory).
func referenced(data mem.BufferSlice, b []byte) bool {
	for _, buf := range data {
		d := buf.ReadOnlyData()
		if len(d) == len(b) && len(d) > 0 && &d[0] == &b[0] {
			return true
		}
	}
	return false
}

// TestSharedCodecOnADS: a Server's gRPC server built with ServerOptions sends its responses
// through the shared encoding, and concurrent streams receive the same assignment intact
// (under -race: nobody writes the shared bytes).
func TestSharedCodecOnADS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := endpoint.Key{Namespace: "default", Service: "be", Port: "grpc"}
	var src endpointtest.Fake
	src.Publish(key, manyEndpoints(2000)...)
	s, err := New(&src, ServicesFromKeys(key), WithZonePreference(0), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(s.ServerOptions()...)
	s.Register(g)
	runCtx, stop := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- s.Run(runCtx) }()
	go func() { _ = g.Serve(lis) }()
	defer func() { stop(); <-runDone; g.Stop() }()

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	const streams = 20
	got := make([]*discoveryv3.DiscoveryResponse, streams)
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Go(func() {
			st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
			if err != nil {
				errs <- err
				return
			}
			defer func() { _ = st.CloseSend() }()
			if err := st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: fmt.Sprint("n", i)}, TypeUrl: typeURLs[types.Endpoint], ResourceNames: []string{key.String()}}); err != nil {
				errs <- err
				return
			}
			r, err := st.Recv()
			if err != nil {
				errs <- err
				return
			}
			got[i] = r
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if c := s.codec.shared.Load(); c < streams {
		t.Fatalf("%d responses took the shared encoding, want ≥ %d", c, streams)
	}
	want := s.cache.snaps[nodeID("")][typeURLs[types.Endpoint]].resources[key.String()]
	for i, r := range got {
		if len(r.GetResources()) != 1 || !proto.Equal(r.GetResources()[0], want) {
			t.Fatalf("stream %d got %d resources, not the cache's assignment", i, len(r.GetResources()))
		}
		if r.GetNonce() == "" || r.GetVersionInfo() == "" {
			t.Fatalf("stream %d: nonce %q version %q", i, r.GetNonce(), r.GetVersionInfo())
		}
	}
}
