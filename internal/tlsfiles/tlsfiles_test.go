package tlsfiles

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
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
	"go.uber.org/goleak"

	"github.com/spread-grpc/spread/internal/certgen"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// writeLeaf issues a certificate from ca into dir/name.crt and dir/name.key.
func writeLeaf(t *testing.T, ca *certgen.CA, dir, name string, usage certgen.Usage) Files {
	t.Helper()
	c, k, err := ca.Issue(certgen.Leaf{CommonName: name, DNSNames: []string{"be-srv"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: usage, ValidFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	f := Files{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key"), CA: filepath.Join(dir, name+"-ca.crt")}
	for path, b := range map[string][]byte{f.Cert: c, f.Key: k, f.CA: ca.CertPEM} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func newCA(t *testing.T, name string) *certgen.CA {
	t.Helper()
	ca, err := certgen.NewCA(name, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// serve runs a TLS echo-one-byte server with cfg on loopback until the test ends.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				tc := tls.Server(c, cfg)
				tc.SetDeadline(time.Now().Add(5 * time.Second))
				if tc.Handshake() != nil {
					return
				}
				var b [1]byte
				if _, err := io.ReadFull(tc, b[:]); err == nil {
					tc.Write(b[:])
				}
			}()
		}
	}()
	t.Cleanup(func() { lis.Close(); wg.Wait() })
	return lis.Addr().String()
}

// call makes one round trip and returns the server certificate's serial number.
func call(addr string, cfg *tls.Config) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// With TLS 1.3 the server checks the client's certificate after the client's handshake
	// returns: the refusal shows on the first read.
	if _, err := c.Write([]byte{1}); err != nil {
		return "", err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return "", err
	}
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "ca")
	srvFiles := writeLeaf(t, ca, dir, "backend", certgen.ServerAuth)
	cliFiles := writeLeaf(t, ca, dir, "frontend", certgen.ClientAuth)
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	srv, err := New(srvFiles, WithName("backend"), WithRegisterer(reg), WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	scfg, err := srv.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, scfg)

	cli, err := New(cliFiles, WithName("frontend"), WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := cli.ClientConfig("be-srv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call(addr, ccfg); err != nil {
		t.Fatalf("mTLS call: %v", err)
	}

	t.Run("client without certificate is refused", func(t *testing.T) {
		noCert, err := New(Files{CA: cliFiles.CA}, WithName("nocert"))
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := noCert.ClientConfig("be-srv")
		if _, err := call(addr, cfg); err == nil {
			t.Fatal("a client without a certificate got through")
		}
		if got := testutil.ToFloat64(srv.metrics.handshakeErrors.WithLabelValues("backend", "no_certificate")); got != 1 {
			t.Errorf("no_certificate errors = %v, want 1", got)
		}
		if !strings.Contains(logs.String(), "client presented no certificate") {
			t.Errorf("log does not say why:\n%s", logs.String())
		}
	})

	t.Run("client certificate from another CA is refused", func(t *testing.T) {
		other := writeLeaf(t, newCA(t, "other-ca"), t.TempDir(), "frontend", certgen.ClientAuth)
		s, err := New(Files{Cert: other.Cert, Key: other.Key, CA: cliFiles.CA}, WithName("foreign"))
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := s.ClientConfig("be-srv")
		if _, err := call(addr, cfg); err == nil {
			t.Fatal("a client certificate from another CA got through")
		}
		if got := testutil.ToFloat64(srv.metrics.handshakeErrors.WithLabelValues("backend", "unknown_authority")); got != 1 {
			t.Errorf("unknown_authority errors = %v, want 1", got)
		}
	})

	t.Run("server certificate used as a client certificate is refused", func(t *testing.T) {
		s, err := New(srvFiles, WithName("misused"))
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := s.ClientConfig("be-srv")
		if _, err := call(addr, cfg); err == nil {
			t.Fatal("a server-auth certificate was accepted as a client certificate")
		}
		if got := testutil.ToFloat64(srv.metrics.handshakeErrors.WithLabelValues("backend", "wrong_usage")); got != 1 {
			t.Errorf("wrong_usage errors = %v, want 1", got)
		}
	})

	t.Run("wrong CA on the client: clear error, log and metric", func(t *testing.T) {
		wrongDir := t.TempDir()
		wrong := writeLeaf(t, newCA(t, "wrong-ca"), wrongDir, "frontend", certgen.ClientAuth)
		clog := &syncBuffer{}
		s, err := New(Files{Cert: cliFiles.Cert, Key: cliFiles.Key, CA: wrong.CA}, WithName("wrongca"), WithRegisterer(reg),
			WithLogger(slog.New(slog.NewTextHandler(clog, nil))))
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := s.ClientConfig("be-srv")
		_, err = call(addr, cfg)
		if err == nil {
			t.Fatal("a server certificate from an unknown CA was accepted")
		}
		for _, want := range []string{"server certificate", "refused", wrong.CA, "unknown authority"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		if !strings.Contains(clog.String(), "reason=unknown_authority") {
			t.Errorf("log does not give the reason:\n%s", clog.String())
		}
		if got := testutil.ToFloat64(s.metrics.handshakeErrors.WithLabelValues("wrongca", "unknown_authority")); got != 1 {
			t.Errorf("client unknown_authority errors = %v, want 1", got)
		}
	})

	t.Run("wrong server name", func(t *testing.T) {
		s, _ := New(cliFiles, WithName("badname"))
		cfg, _ := s.ClientConfig("not-be-srv")
		if _, err := call(addr, cfg); err == nil || !strings.Contains(err.Error(), "not-be-srv") {
			t.Fatalf("err = %v, want a name mismatch", err)
		}
	})
}

func TestRotationWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "ca")
	srvFiles := writeLeaf(t, ca, dir, "backend", certgen.ServerAuth)
	cliFiles := writeLeaf(t, ca, dir, "frontend", certgen.ClientAuth)
	clk := &clock{t: time.Now()}
	reg := prometheus.NewRegistry()
	srv, err := New(srvFiles, WithName("backend"), WithRegisterer(reg), WithClock(clk.now))
	if err != nil {
		t.Fatal(err)
	}
	scfg, _ := srv.ServerConfig()
	addr := serve(t, scfg)
	cli, _ := New(cliFiles, WithName("frontend"))
	ccfg, _ := cli.ClientConfig("be-srv")

	first, err := call(addr, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	writeLeaf(t, ca, dir, "backend", certgen.ServerAuth) // rotate in place
	if got, _ := call(addr, ccfg); got != first {
		t.Fatalf("served serial %s before the check interval passed, want still %s", got, first)
	}
	clk.add(DefaultCheckInterval)
	second, err := call(addr, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatalf("still serving serial %s after rotation", first)
	}
	if got := testutil.ToFloat64(srv.metrics.reloads.WithLabelValues("backend", "success")); got != 1 {
		t.Errorf("successful reloads = %v, want 1", got)
	}

	// A broken rewrite (key of another certificate) keeps the previous pair.
	other := writeLeaf(t, ca, t.TempDir(), "x", certgen.ServerAuth)
	k, _ := os.ReadFile(other.Key)
	if err := os.WriteFile(srvFiles.Key, k, 0o600); err != nil {
		t.Fatal(err)
	}
	clk.add(DefaultCheckInterval)
	if got, err := call(addr, ccfg); err != nil || got != second {
		t.Fatalf("after a bad rewrite: serial %s, err %v; want the previous %s", got, err, second)
	}
	if got := testutil.ToFloat64(srv.metrics.reloads.WithLabelValues("backend", "error")); got != 1 {
		t.Errorf("failed reloads = %v, want 1", got)
	}
	if err := srv.Reload(); err == nil || !strings.Contains(err.Error(), "key pair") {
		t.Errorf("Reload() = %v, want a key pair error", err)
	}

	// Rotating the CA and the client certificate: the client's new certificate is accepted
	// once the server reloads its CA bundle too.
	ca2 := newCA(t, "ca2")
	bundle := append(append([]byte{}, ca.CertPEM...), ca2.CertPEM...)
	writeLeaf(t, ca, dir, "backend", certgen.ServerAuth)
	os.WriteFile(srvFiles.CA, bundle, 0o600)
	writeLeaf(t, ca2, dir, "frontend", certgen.ClientAuth)
	os.WriteFile(cliFiles.CA, bundle, 0o600)
	clk.add(DefaultCheckInterval)
	if err := cli.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := call(addr, ccfg); err != nil {
		t.Fatalf("after rotating to a client certificate from a second CA: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	f := writeLeaf(t, newCA(t, "ca"), dir, "backend", certgen.ServerAuth)
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not pem"), 0o600)
	for name, tc := range map[string]struct {
		files Files
		want  string
	}{
		"nothing":          {Files{}, "no files"},
		"cert without key": {Files{Cert: f.Cert}, "both"},
		"missing file":     {Files{Cert: f.Cert, Key: filepath.Join(dir, "nope")}, "no such file"},
		"bad CA":           {Files{CA: bad}, "no PEM certificate"},
		"mismatched pair":  {Files{Cert: f.Cert, Key: bad}, "key pair"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New(%+v) = %v, want an error containing %q", tc.files, err, tc.want)
			}
		})
	}
	s, _ := New(Files{CA: f.CA})
	if _, err := s.ServerConfig(); err == nil {
		t.Error("ServerConfig without a certificate succeeded")
	}
	s, _ = New(Files{Cert: f.Cert, Key: f.Key})
	if _, err := s.ClientConfig(""); err == nil {
		t.Error("ClientConfig without a CA succeeded")
	}
}
