package backend

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/certgen"
	"github.com/spread-grpc/spread/internal/tlsfiles"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestMutualTLS runs a backend requiring client certificates and calls it over gRPC: a
// client with a certificate from the CA gets answers, one without is refused, a server
// certificate rotated on disk is served to new connections without a restart.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := certgen.NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b := certgen.Bundle{Dir: dir, Namespace: "default", ClusterDomain: "cluster.local", ValidFor: time.Hour}
	if err := ca.Write(b); err != nil {
		t.Fatal(err)
	}
	f := func(n string) string { return filepath.Join(dir, n) }
	logs := &lockedBuffer{}
	reg := newRegistry()
	srv, err := New(Config{Pod: "be-tls", TLSCert: f("backend.crt"), TLSKey: f("backend.key"), TLSClientCA: f("ca.crt")},
		WithRegisterer(reg), WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveOnLoopback(t, srv)

	dial := func(t *testing.T, files tlsfiles.Files) *grpc.ClientConn {
		t.Helper()
		store, err := tlsfiles.New(files, tlsfiles.WithCheckInterval(0))
		if err != nil {
			t.Fatal(err)
		}
		tc, err := store.ClientConfig("be-srv")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	serverSerial := func(t *testing.T, conn *grpc.ClientConn) string {
		t.Helper()
		var p peer.Peer
		if _, err := echo.NewEchoServerClient(conn).SayHello(testCtx(t), &echo.EchoRequest{Name: "x"}, grpc.Peer(&p)); err != nil {
			t.Fatal(err)
		}
		return p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].SerialNumber.String()
	}
	good := tlsfiles.Files{Cert: f("frontend.crt"), Key: f("frontend.key"), CA: f("ca.crt")}
	first := serverSerial(t, dial(t, good))

	t.Run("no client certificate", func(t *testing.T) {
		_, err := echo.NewEchoServerClient(dial(t, tlsfiles.Files{CA: f("ca.crt")})).SayHello(testCtx(t), &echo.EchoRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("call without a client certificate: %v, want Unavailable", err)
		}
		if got := testutil.ToFloat64(srvHandshakeErrors(t, reg, "no_certificate")); got < 1 {
			t.Errorf("spread_tls_handshake_errors_total{reason=no_certificate} = %v", got)
		}
		if !strings.Contains(logs.String(), "client presented no certificate") {
			t.Errorf("backend log does not say why:\n%s", logs.String())
		}
	})

	t.Run("rotated server certificate, no restart", func(t *testing.T) {
		c, k, err := ca.Issue(certgen.Leaf{CommonName: "backend", DNSNames: []string{"be-srv"}, Usage: certgen.ServerAuth, ValidFor: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		// Like a Secret volume update: new files renamed into place.
		for name, data := range map[string][]byte{"backend.crt": c, "backend.key": k} {
			if err := os.WriteFile(f(name+".new"), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Rename(f("backend.key.new"), f("backend.key")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f("backend.crt.new"), f("backend.crt")); err != nil {
			t.Fatal(err)
		}
		// The backend checks at most every 2 s: poll new connections until one shows the new
		// certificate (bounded).
		deadline := time.Now().Add(10 * time.Second)
		for {
			if got := serverSerial(t, dial(t, good)); got != first {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the rotated certificate was never served")
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

// serveOnLoopback serves srv on 127.0.0.1 until the test ends and returns the address.
func serveOnLoopback(t *testing.T, srv *Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// srvHandshakeErrors returns the backend's handshake-error counter for reason.
func srvHandshakeErrors(t *testing.T, reg *prometheus.Registry, reason string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	for _, mf := range mfs {
		if mf.GetName() != "spread_tls_handshake_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["name"] == "backend" && labels["reason"] == reason {
				c.Add(m.GetCounter().GetValue())
			}
		}
	}
	return c
}
