package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spread-grpc/spread/fairshare"
)

func TestFairShareUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--fair-share-peers=127.0.0.1", "--fair-share-service=be-srv.default:grpc"}, "exclusive"},
		{[]string{"--fair-share-peers=127.0.0.1", "--admin-addr=-"}, "needs the admin port"},
		{[]string{"--fair-share-peers=127.0.0.1", "--admin-addr=127.0.0.1:0"}, "fixed port"},
		{[]string{"--fair-share-peers=pod-a"}, "not an IP address"},
		{[]string{"--fair-share-service=be-srv"}, "want <service>.<namespace>:<port>"},
		{[]string{"--fair-share-peers=127.0.0.1", "--fair-share-interval=0s"}, "must be positive"},
		{[]string{"--fair-share-peers=127.0.0.1", "--fair-share-max-fraction=2"}, "max-fraction"},
		{[]string{"--fair-share-peers=127.0.0.1", "--fair-share-tolerance=0"}, "tolerance"},
	} {
		code, out := runCmd(append([]string{"backend"}, tc.args...)...)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("backend %v: exit %d, output %q; want 2 and %q", tc.args, code, out, tc.want)
		}
	}
}

// TestFairShareBackendServesCount: spread backend --fair-share-peers serves its count on the
// admin port for its peers, and stops cleanly.
func TestFairShareBackendServesCount(t *testing.T) {
	admin := freePort(t, "127.0.23.1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"backend", "--addr=127.0.23.1:0", "--admin-addr=" + admin, "--pod=pod-a", "--grace=2s",
			"--fair-share-peers=127.0.23.1", "--fair-share-interval=100ms"},
			&env{stdout: &out, stderr: &out, getenv: func(string) string { return "" }})
	}()
	var got fairshare.Peer
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/fairshare")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /fairshare: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling for the server to come up
	}
	if got != (fairshare.Peer{Name: "pod-a", Conns: 0}) {
		t.Errorf("GET /fairshare = %+v, want pod-a with 0 connections", got)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d: %s", code, out.String())
	}
}
