package main

import (
	"bytes"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/echotest"
)

// TestBadInputExitsTwo: input that can never work is exit 2 with a message naming the flag,
// not exit 1 from a failed listen, nor exit 0 with a bootstrap no client can use.
func TestBadInputExitsTwo(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"backend", "--addr=nonsense"}, "--addr"},
		{[]string{"backend", "--addr=127.0.0.1:99999"}, "0 to 65535"},
		{[]string{"backend", "--admin-addr=a b:1"}, "--admin-addr"},
		{[]string{"backend", "--health-addr=:http2x"}, "--health-addr"},
		{[]string{"frontend", "--addr=127.0.0.1:-1"}, "--addr"},
		{[]string{"xds", "bootstrap", "--server=host:99999"}, "1 to 65535"},
		{[]string{"xds", "bootstrap", "--server=host:0"}, "1 to 65535"},
		{[]string{"xds", "bootstrap", "--server=a b:1"}, "host"},
		{[]string{"xds", "bootstrap", "--server=:18000"}, "host"},
		{[]string{"xds", "bootstrap", "--server=x:1", "--tls-ca=/nonexistent"}, "--tls-ca"},
		{[]string{"xds", "bootstrap", "--server=x:1", "--ca-file=/nonexistent"}, "--tls-ca"}, // the deprecated alias, named by its flag
		{[]string{"frontend", "--addr=127.0.0.1:0", "--admin-addr=-", "--mode=a=xds:///x"}, "GRPC_XDS_BOOTSTRAP"},
		{[]string{"load", "--target=x", "--rate=Inf"}, "not a finite number"},
		{[]string{"load", "--target=x", "--rate=NaN"}, "not a number"},
	} {
		code, out := runCmd(tc.args...)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("spread %v: exit %d, output %q; want exit 2 mentioning %q", tc.args, code, out, tc.want)
		}
	}
}

// TestLoadTinyRateStopsOnSignal: `spread load --rate 1e-11` put call 1 beyond 292 years, which
// overflowed the pacer into a busy loop deaf to signals. The built binary must offer its
// one call and stop on SIGTERM and on SIGINT.
func TestLoadTinyRateStopsOnSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildSpread(t)
	be := echotest.Start(t, "pod-a", "zone-a")
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		for _, extra := range [][]string{nil, {"--stream"}} {
			var out syncBuffer
			args := append([]string{"load", "--target=passthrough:///" + be.Addr, "--rate=1e-11", "--duration=10m"}, extra...)
			cmd := exec.Command(bin, args...)
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			deadline := time.Now().Add(30 * time.Second)
			for !strings.Contains(out.String(), "offering") { // the run has begun
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					<-exited
					t.Fatalf("%v: never started:\n%s", args, out.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			cmd.Process.Signal(sig)
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				<-exited
				t.Fatalf("%v: still running 20s after %v:\n%s", args, sig, out.String())
			}
			if !strings.Contains(out.String(), "stopped by") {
				t.Errorf("%v: no report after %v:\n%s", args, sig, out.String())
			}
		}
	}
}

// syncBuffer is a bytes.Buffer a child process writes to while the test reads it.
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

// TestHelpSaysWhatListens: each server's -h says where it listens by default, what is
// authenticated, and its bounds (the issue asks that it be said in -h).
func TestHelpSaysWhatListens(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		want []string
	}{
		{"backend", []string{":50051", ":9090", "unauthenticated", "--tls-client-ca", "16 MiB", "resume_after"}},
		{"frontend", []string{":8081", ":9091", "unauthenticated", "connections"}},
		{"xds", []string{":18000", ":9090", "unauthenticated", "--no-debug-xds"}},
		{"demo", []string{"loopback", "without authentication", "cross-site", "DNS rebinding"}},
	} {
		_, out := runCmd(tc.cmd, "-h")
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("spread %s -h does not say %q:\n%s", tc.cmd, w, out)
			}
		}
	}
}
