package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/admin"
)

// TestHTTPServersAreBounded: every HTTP server of the built binary (frontend and its admin,
// demo frontend and admin, backend admin, xds admin) caps its connections and cuts a
// client that never sends a whole request (the issue: 3,000 idle connections to the
// frontend were all kept, goroutines 364 → 3,364). With the cap's connections open, one
// more is closed before it is served; the held ones are cut by the header timeout.
func TestHTTPServersAreBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildSpread(t)
	lim := admin.DefaultLimits()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://%s"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, freePort(t, "127.0.0.1"))), 0o600); err != nil {
		t.Fatal(err)
	}
	fe, feAdmin, beAdmin, xdsAdmin := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	demoFE, demoAdmin := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	for _, tc := range []struct {
		name  string
		args  []string
		addrs []string // the HTTP servers to probe; the first answers /healthz when up
	}{
		{"frontend", []string{"frontend", "--addr=" + fe, "--admin-addr=" + feAdmin, "--mode=a=passthrough:///127.0.0.1:1"}, []string{feAdmin, fe}},
		{"backend", []string{"backend", "--addr=127.0.24.1:0", "--admin-addr=" + beAdmin}, []string{beAdmin}},
		// An API server that refuses connections: the control plane still serves its admin.
		{"xds", []string{"xds", "--kubeconfig=" + kubeconfig, "--grpcroutes=false", "--addr=127.0.0.1:0", "--admin-addr=" + xdsAdmin}, []string{xdsAdmin}},
		{"demo", []string{"demo", "--first-pod-ip=127.0.25.1", "--pod-port=0", "--vip=127.96.0.25:0", "--dns-addr=127.0.0.1:0", "--xds-addr=-",
			"--frontend-addr=" + demoFE, "--admin-addr=" + demoAdmin}, []string{demoAdmin, demoFE}},
	} {
		// One server at a time: each probe holds MaxConns connections (file descriptors).
		t.Run(tc.name, func(t *testing.T) {
			var out syncBuffer
			cmd := exec.Command(bin, tc.args...)
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				cmd.Process.Kill()
				<-exited
			}()
			deadline := time.Now().Add(60 * time.Second)
			for {
				resp, err := http.Get("http://" + tc.addrs[0] + "/healthz")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("never up: %v\n%s", err, out.String())
				}
				select {
				case err := <-exited:
					exited <- err
					t.Fatalf("exited early: %v\n%s", err, out.String())
				case <-time.After(50 * time.Millisecond): // poll interval
				}
			}
			var held [][]net.Conn
			defer func() {
				for _, h := range held {
					for _, c := range h {
						c.Close()
					}
				}
			}()
			start := time.Now()
			for _, addr := range tc.addrs {
				held = append(held, probeCap(t, addr, lim))
			}
			// The header timeout: the first held connection of each server, which never sent
			// a byte, is cut (waited for 3x as long).
			for i, h := range held {
				h[0].SetReadDeadline(start.Add(3 * lim.ReadHeaderTimeout))
				if _, err := io.ReadAll(h[0]); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Errorf("%s: a connection that sent nothing still open after %v (header timeout %v)\n%s", tc.addrs[i], time.Since(start), lim.ReadHeaderTimeout, out.String())
					}
				}
			}
		})
	}
}

// probeCap opens lim.MaxConns connections to addr that send nothing, then one more with a
// whole request: that one must be closed unanswered. It returns the held connections.
func probeCap(t *testing.T, addr string, lim admin.Limits) []net.Conn {
	t.Helper()
	held := make([]net.Conn, 0, lim.MaxConns)
	start := time.Now()
	for range lim.MaxConns {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: connection %d: %v", addr, len(held)+1, err)
		}
		held = append(held, c)
	}
	// Accepted in order: when this one has been handled, the held ones were counted.
	extra, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	fmt.Fprintf(extra, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	extra.SetReadDeadline(time.Now().Add(3 * lim.ReadHeaderTimeout))
	if line, err := bufio.NewReader(extra).ReadString('\n'); err == nil {
		t.Errorf("%s: connection %d (cap %d) answered %q, want it closed", addr, lim.MaxConns+1, lim.MaxConns, line)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("%s: connection %d (cap %d) neither answered nor closed", addr, lim.MaxConns+1, lim.MaxConns)
	}
	if took := time.Since(start); took >= lim.ReadHeaderTimeout/3 {
		// The first held connections may have been cut by the header timeout already,
		// freeing slots: the check above then proves less.
		t.Logf("%s: opening %d connections took %v", addr, lim.MaxConns, took)
	}
	return held
}
