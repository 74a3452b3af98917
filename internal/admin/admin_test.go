package admin_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
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

// TestLifecycle: the one admin-server lifecycle every command uses. "-" and "" disable the
// server (no listener, Wait returns at once, Done never fires); a started server answers
// until its context ends and then stops cleanly; a server whose listener fails stops early
// (Done fires before the context ends) and Wait says why; a taken address is an error that
// names it.
func TestLifecycle(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, addr := range []string{"-", ""} {
		lis, err := admin.Listen(addr)
		if lis != nil || err != nil {
			t.Fatalf("Listen(%q) = %v, %v; want nil, nil", addr, lis, err)
		}
		r := admin.New(prometheus.NewRegistry()).Start(context.Background(), nil, time.Second, log)
		if r.Addr() != nil || r.Done() != nil || r.Wait() != nil {
			t.Fatalf("disabled server: Addr %v, Done %v, Wait %v; want all nil", r.Addr(), r.Done(), r.Wait())
		}
	}

	lis, err := admin.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Listen(lis.Addr().String()); err == nil || !strings.Contains(err.Error(), lis.Addr().String()) {
		t.Errorf("Listen on a taken address: %v; want an error naming %s", err, lis.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sctx, stop := context.WithCancel(ctx)
	r := admin.New(prometheus.NewRegistry()).Start(sctx, lis, 5*time.Second, log)
	if r.Addr().String() != lis.Addr().String() {
		t.Errorf("Addr %v, want %v", r.Addr(), lis.Addr())
	}
	resp, err := http.Get("http://" + lis.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %s", resp.Status)
	}
	http.DefaultClient.CloseIdleConnections()
	select {
	case <-r.Done():
		t.Fatal("Done before the context ended")
	default:
	}
	stop()
	if err := r.Wait(); err != nil {
		t.Errorf("Wait after a clean shutdown: %v", err)
	}

	// A listener that fails: the server stops on its own and says why.
	bad, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bad.Close()
	r = admin.New(prometheus.NewRegistry()).Start(ctx, bad, time.Second, log)
	select {
	case <-r.Done():
	case <-ctx.Done():
		t.Fatal("a server whose listener is closed did not stop")
	}
	if err := r.Wait(); err == nil {
		t.Error("Wait after a failed Serve: nil error")
	}
}

// TestReadyHandler: WithReadyHandler serves /readyz with the given handler.
func TestReadyHandler(t *testing.T) {
	h := admin.New(prometheus.NewRegistry(), admin.WithReadyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "syncing", http.StatusServiceUnavailable)
	}))).Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "syncing") {
		t.Errorf("/readyz: %d %q; want 503 from the ready handler", rec.Code, rec.Body.String())
	}
}

// TestShutdownIgnoresUnusedConnections: at the end of the grace, a connection that never
// sent a byte (a client pool's spare dial; net/http waits 5 s for those) is closed without
// making the shutdown unclean, while one holding half a request still makes it unclean.
func TestShutdownIgnoresUnusedConnections(t *testing.T) {
	for _, tc := range []struct {
		name    string
		send    string
		unclean bool
	}{
		{"unused connection", "", false},
		{"half a request", "GET /healthz HTTP/1.1\r\nHost: x\r\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			r := admin.New(prometheus.NewRegistry()).Start(ctx, lis, 300*time.Millisecond, slog.New(slog.DiscardHandler))
			c, err := net.DialTimeout("tcp", lis.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.send != "" {
				if _, err := io.WriteString(c, tc.send); err != nil {
					t.Fatal(err)
				}
			}
			// Connections are accepted in order: once a later one is answered, c has been
			// accepted and is being served.
			later := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
			resp, err := later.Get("http://" + lis.Addr().String() + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			stop()
			err = r.Wait()
			if tc.unclean && (err == nil || !strings.Contains(err.Error(), "not clean")) {
				t.Errorf("Wait: %v; want a shutdown that is not clean", err)
			}
			if !tc.unclean && err != nil {
				t.Errorf("Wait: %v; want a clean shutdown", err)
			}
		})
	}
}
