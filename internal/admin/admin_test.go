package admin_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	csdspb "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	grpcadmin "google.golang.org/grpc/admin"
	channelzpb "google.golang.org/grpc/channelz/grpc_channelz_v1"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/xds" // links CSDS into grpc/admin

	"github.com/spread-grpc/spread/internal/admin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestGRPCAdminServicesOnAdminPort: one admin port answers HTTP (/metrics) and, over
// HTTP/2 with prior knowledge, grpc-go's admin services: channelz and CSDS.
func TestGRPCAdminServicesOnAdminPort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g := grpc.NewServer()
	cleanup, err := grpcadmin.Register(g)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	defer g.Stop()
	a := admin.New(prometheus.NewRegistry(), admin.WithGRPC(g))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Serve(sctx, lis, 5*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	resp, err := http.Get("http://" + lis.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz over HTTP/1.1: %s", resp.Status)
	}
	http.DefaultClient.CloseIdleConnections()

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tops, err := channelzpb.NewChannelzClient(cc).GetTopChannels(ctx, &channelzpb.GetTopChannelsRequest{})
	if err != nil {
		t.Fatalf("channelz GetTopChannels: %v", err)
	}
	if len(tops.GetChannel()) == 0 {
		t.Error("channelz lists no channel (the test's own client channel should be there)")
	}
	if _, err := csdspb.NewClientStatusDiscoveryServiceClient(cc).FetchClientStatus(ctx, &csdspb.ClientStatusRequest{}); err != nil {
		t.Fatalf("CSDS FetchClientStatus: %v", err)
	}
}

// NewRegistry is a registry of its own with the Go runtime and process metrics every
// binary's /metrics shows, and nothing of the global registry.
func TestNewRegistry(t *testing.T) {
	reg := admin.NewRegistry()
	if reg == prometheus.DefaultRegisterer {
		t.Fatal("NewRegistry returned the global registry")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, mf := range mfs {
		have[mf.GetName()] = true
	}
	for _, want := range []string{"go_goroutines", "process_open_fds"} {
		if !have[want] {
			t.Errorf("NewRegistry gathers no %s (have %d families)", want, len(have))
		}
	}
}
