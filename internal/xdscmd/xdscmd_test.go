package xdscmd

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/echotest"
	"github.com/spread-grpc/spread/internal/xds"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// src serves one set to every key: the Publisher of a conforming endpoint source.
type src struct{ p endpoint.Publisher }

func (s *src) Subscribe(ctx context.Context, _ endpoint.Key, fn func(endpoint.Set)) (func(), error) {
	return s.p.Subscribe(ctx, fn)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunAdminAndShutdown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var s src // no set published yet: not ready
	cfg := DefaultConfig()
	cfg.Listen, cfg.AdminListen, cfg.ShutdownGrace = "127.0.0.1:0", "127.0.0.1:0", 5*time.Second
	cfg.Endpoints = &s
	cfg.Services = xds.ServicesFromKeys(endpoint.Key{Namespace: "default", Service: "be", Port: "grpc"})
	started := make(chan net.Addr, 1)
	cfg.Started = func(_, admin net.Addr) { started <- admin }
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, cfg) }()
	var admin net.Addr
	select {
	case admin = <-started:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	base := "http://" + admin.String()
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before the first sync = %d, want 503", code)
	}
	s.p.Publish(endpoint.NewSet([]endpoint.Endpoint{{Address: "192.0.2.1", Port: 50051, Ready: true, Serving: true}}))
	for {
		code, _ := get(t, base+"/readyz")
		if code == 200 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("never ready")
		case <-time.After(5 * time.Millisecond):
		}
	}
	_, body := get(t, base+"/metrics")
	for _, m := range []string{"spread_xds_connected_clients", "spread_xds_resources", "spread_xds_push_latency_seconds", "process_resident_memory_bytes"} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	_, body = get(t, base+"/debug/xds")
	var d xds.Dump
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("/debug/xds: %v\n%s", err, body)
	}
	if !d.Ready || len(d.Services) != 1 || len(d.Zones[""].Resources["listener"]) != 1 || !strings.Contains(body, "192.0.2.1") {
		t.Errorf("/debug/xds = %s", body)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(cfg.ShutdownGrace + 2*time.Second):
		t.Fatal("Run did not return within the grace period")
	}
}

func TestFlagsAndBootstrap(t *testing.T) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("xds", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"--listen=:1", "--zone-min-healthy=0", "--namespace=prod"}); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":1" || cfg.ZoneMinHealthy != 0 || cfg.Namespace != "prod" || cfg.AdminListen != ":9090" {
		t.Errorf("parsed %+v", cfg)
	}
	cfg.TLSCert = "x"
	if err := cfg.Validate(); err == nil {
		t.Error("cert without key accepted")
	}

	var bc BootstrapConfig
	fs = flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	bc.RegisterFlags(fs)
	if err := fs.Parse([]string{"--server=spread-xds.spread-system.svc:18000", "--zone=zone-a", "--node-id=fe-1"}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Bootstrap(&out, bc); err != nil {
		t.Fatal(err)
	}
	var b struct {
		XDSServers []struct {
			ServerURI      string           `json:"server_uri"`
			ChannelCreds   []map[string]any `json:"channel_creds"`
			ServerFeatures []string         `json:"server_features"`
		} `json:"xds_servers"`
		Node struct {
			ID       string            `json:"id"`
			Locality map[string]string `json:"locality"`
		} `json:"node"`
	}
	if err := json.Unmarshal(out.Bytes(), &b); err != nil {
		t.Fatal(err)
	}
	if len(b.XDSServers) != 1 || b.XDSServers[0].ServerURI != "spread-xds.spread-system.svc:18000" ||
		b.XDSServers[0].ChannelCreds[0]["type"] != "insecure" || b.XDSServers[0].ServerFeatures[0] != "xds_v3" ||
		b.Node.ID != "fe-1" || b.Node.Locality["zone"] != "zone-a" {
		t.Errorf("bootstrap = %s", out.String())
	}
	bc.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := Bootstrap(&out, bc); err == nil || !strings.Contains(err.Error(), "--tls-ca") {
		t.Errorf("bootstrap naming a missing CA file: %v", err)
	}
	if err := os.WriteFile(bc.CAFile, []byte("PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := Bootstrap(&out, bc); err != nil || !strings.Contains(out.String(), `"type": "tls"`) || !strings.Contains(out.String(), "ca_certificate_file") {
		t.Errorf("TLS bootstrap = %s, %v", out.String(), err)
	}
	if err := Bootstrap(&out, BootstrapConfig{}); err == nil {
		t.Error("bootstrap without a server accepted")
	}

	// Repeated --server: gRFC A71 fallback order, each entry with its own creds and features.
	bc = BootstrapConfig{}
	fs = flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	bc.RegisterFlags(fs)
	if err := fs.Parse([]string{"--server=xds-a.example:18000", "--server=xds-b.example:18000", "--keep-resources-on-deletion"}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := Bootstrap(&out, bc); err != nil {
		t.Fatal(err)
	}
	b.XDSServers = nil
	if err := json.Unmarshal(out.Bytes(), &b); err != nil {
		t.Fatal(err)
	}
	if len(b.XDSServers) != 2 || b.XDSServers[0].ServerURI != "xds-a.example:18000" || b.XDSServers[1].ServerURI != "xds-b.example:18000" {
		t.Fatalf("servers = %s", out.String())
	}
	for _, s := range b.XDSServers {
		if len(s.ChannelCreds) != 1 || s.ChannelCreds[0]["type"] != "insecure" || !slices.Equal(s.ServerFeatures, []string{"xds_v3", "ignore_resource_deletion"}) {
			t.Errorf("server %s: creds %v features %v", s.ServerURI, s.ChannelCreds, s.ServerFeatures)
		}
	}
	for _, bad := range [][]string{{"xds-a:1", "xds-a:1"}, {"xds-a:1", "nohost"}} {
		if err := Bootstrap(&out, BootstrapConfig{Servers: bad}); err == nil {
			t.Errorf("servers %v accepted", bad)
		}
	}
}

// TestStatusCommand: `spread xds status` against a running control plane lists a real
// grpc-go client as SYNCED on every type.
func TestStatusCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	be := echotest.Start(t, "be-1", "")
	_, port, _ := net.SplitHostPort(be.Addr)
	p, _ := strconv.Atoi(port)
	var s src
	s.p.Publish(endpoint.NewSet([]endpoint.Endpoint{{Address: "127.0.0.1", Port: int32(p), Pod: "be-1", Ready: true, Serving: true}}))
	cfg := DefaultConfig()
	cfg.Listen, cfg.AdminListen, cfg.ShutdownGrace = "127.0.0.1:0", "127.0.0.1:0", 5*time.Second
	cfg.Endpoints = &s
	cfg.Services = xds.ServicesFromKeys(endpoint.Key{Namespace: "default", Service: "be", Port: "grpc"})
	addrs := make(chan [2]net.Addr, 1)
	cfg.Started = func(ads, admin net.Addr) { addrs <- [2]net.Addr{ads, admin} }
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, cfg) }()
	defer func() { stop(); <-done }()
	a := <-addrs

	boot, err := xds.Bootstrap(xds.BootstrapConfig{ServerURI: a[0].String(), NodeID: "status-client", Zone: "zone-a"})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(boot)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///be.default:grpc", grpc.WithResolvers(rb), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := echo.NewEchoServerClient(cc).SayHello(ctx, &echo.EchoRequest{}); err != nil {
		t.Fatal(err)
	}
	sc := DefaultStatusConfig()
	sc.Admin = a[1].String()
	var out bytes.Buffer
	for {
		out.Reset()
		if err := Status(ctx, &out, sc); err != nil {
			t.Fatal(err)
		}
		if regexp.MustCompile(`(?m)^status-client\s+zone-a\s+127\.0\.0\.1:\d+\s+1\s+SYNCED\s+SYNCED\s+SYNCED\s+SYNCED\s+\S+`).MatchString(out.String()) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no SYNCED row for the client:\n%s", out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	sc.JSON = true
	out.Reset()
	var list []xds.ClientSync
	if err := Status(ctx, &out, sc); err != nil || json.Unmarshal(out.Bytes(), &list) != nil || len(list) != 1 {
		t.Fatalf("--json: %v\n%s", err, out.String())
	}
	if err := Status(ctx, io.Discard, StatusConfig{Admin: "127.0.0.1:1", Timeout: time.Second}); err == nil {
		t.Error("status from a closed port: no error")
	}
}
