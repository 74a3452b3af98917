package demo

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/frontend"
)

// Every registered mode builds on a cluster made for it and dials: its target's scheme has a
// resolver and its service config parses (grpc.NewClient checks both).
func TestEveryModeDials(t *testing.T) {
	for i, name := range ModeNames() {
		f, err := LookupMode(name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := ClusterConfig{Replicas: 1, PodPort: 0}
		if f.Cluster != nil {
			f.Cluster(&cfg)
		}
		c := startCluster(t, []string{"127.0.41.1", "127.0.42.1", "127.0.43.1", "127.0.44.1", "127.0.45.1", "127.0.46.1", "127.0.47.1", "127.0.48.1"}[i%8], cfg)
		for _, tuned := range []bool{false, true} {
			ms, err := BuildModes(c, ModeOptions{Tuned: tuned}, name)
			if err != nil {
				t.Fatalf("mode %s: %v", name, err)
			}
			conn, err := frontend.Dial(ms[0], nil)
			if err != nil {
				t.Fatalf("mode %s (tuned %v): %v", name, tuned, err)
			}
			conn.Close()
		}
	}
	if _, err := LookupMode("nope"); err == nil {
		t.Error("unknown mode: no error")
	}
}

func TestModeNeedsCluster(t *testing.T) {
	c := startCluster(t, "127.0.49.1", ClusterConfig{Replicas: 1, PodPort: 0})
	if _, err := BuildModes(c, ModeOptions{}, "headless-mca"); !errors.Is(err, ErrClusterLacks) {
		t.Errorf("headless-mca on a cluster without MaxConnectionAge: %v, want ErrClusterLacks", err)
	}
	ms, err := BuildModes(c, ModeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Name == "headless-mca" {
			t.Error("all modes on a cluster without MaxConnectionAge include headless-mca")
		}
	}
}

// With the xDS control plane disabled (demo --xds-addr -), the xds modes are left out of
// the default modes instead of failing the demo; asked for by name, they say why.
func TestXDSDisabledDropsXDSModes(t *testing.T) {
	c, err := StartCluster(ClusterConfig{Replicas: 1, PodPort: 0, FirstPodIP: netip.MustParseAddr("127.0.49.11"),
		VIP: "127.96.0.10:0", DNSAddr: "127.0.0.1:0", XDSAddr: "-"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	if c.XDSAddr() != "" {
		t.Fatalf("XDSAddr %q with --xds-addr -", c.XDSAddr())
	}
	ms, err := BuildModes(c, ModeOptions{})
	if err != nil {
		t.Fatalf("default modes without the xDS control plane: %v", err)
	}
	if len(ms) == 0 {
		t.Fatal("no modes")
	}
	for _, m := range ms {
		if m.Name == "xds" || m.Name == "xds-tuned" {
			t.Errorf("mode %s offered with the xDS control plane disabled", m.Name)
		}
	}
	if _, err := BuildModes(c, ModeOptions{}, "xds"); !errors.Is(err, ErrClusterLacks) {
		t.Errorf("xds by name without the control plane: %v, want ErrClusterLacks", err)
	}
}
