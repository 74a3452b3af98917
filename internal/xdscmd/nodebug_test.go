package xdscmd

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/xds"
)

// TestNoDebugXDS runs the control plane with and without --no-debug-xds and
// asks the admin server for /debug/xds and /debug/xds/clients: 404 with the
// flag, 200 without; /healthz is served either way.
func TestNoDebugXDS(t *testing.T) {
	for _, tc := range []struct {
		noDebug bool
		want    int
	}{{false, http.StatusOK}, {true, http.StatusNotFound}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var s src
		cfg := DefaultConfig()
		cfg.Listen, cfg.AdminListen, cfg.ShutdownGrace = "127.0.0.1:0", "127.0.0.1:0", 5*time.Second
		cfg.Endpoints = &s
		cfg.Services = xds.ServicesFromKeys(endpoint.Key{Namespace: "default", Service: "be", Port: "grpc"})
		cfg.NoDebugXDS = tc.noDebug
		started := make(chan net.Addr, 1)
		cfg.Started = func(_, admin net.Addr) { started <- admin }
		done := make(chan error, 1)
		go func() { done <- Run(ctx, cfg) }()
		var admin net.Addr
		select {
		case admin = <-started:
		case err := <-done:
			cancel()
			t.Fatalf("Run: %v", err)
		}
		base := "http://" + admin.String()
		if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
			t.Errorf("no-debug-xds=%v: /healthz = %d", tc.noDebug, code)
		}
		for _, p := range []string{"/debug/xds", "/debug/xds/clients"} {
			if code, _ := get(t, base+p); code != tc.want {
				t.Errorf("no-debug-xds=%v: %s = %d, want %d", tc.noDebug, p, code, tc.want)
			}
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(cfg.ShutdownGrace + 2*time.Second):
			t.Fatal("Run did not return within the grace period")
		}
	}
}
