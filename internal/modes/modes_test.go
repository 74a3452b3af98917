package modes

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/connect"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startCluster starts a simulated cluster on free ports, its pods from firstIP, and stops it
// when the test ends. Its VIP address is this package's own (127.96.41.10): packages run in
// parallel, and the VIP takes the pods' port, which another package's VIP may hold.
func startCluster(t *testing.T, firstIP string, cfg cluster.Config) *cluster.Cluster {
	t.Helper()
	cfg.FirstPodIP = netip.MustParseAddr(firstIP)
	cfg.VIP = "127.96.41.10:0"
	cfg.DNSAddr = "127.0.0.1:0"
	cfg.XDSAddr = "127.0.0.1:0"
	c, err := cluster.Start(cfg, nil)
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
	return c
}

// Every registered mode builds on a cluster made for it and dials: its target's scheme has a
// resolver and its service config parses (grpc.NewClient checks both).
func TestEveryModeDials(t *testing.T) {
	for i, name := range Names() {
		f, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := cluster.Config{Replicas: 1, PodPort: 0}
		if f.Cluster != nil {
			f.Cluster(&cfg)
		}
		c := startCluster(t, []string{"127.0.41.1", "127.0.42.1", "127.0.43.1", "127.0.44.1", "127.0.45.1", "127.0.46.1", "127.0.47.1", "127.0.48.1"}[i%8], cfg)
		for _, tuned := range []bool{false, true} {
			ms, err := Build(c, Options{Tuned: tuned}, name)
			if err != nil {
				t.Fatalf("mode %s: %v", name, err)
			}
			conn, err := connect.Dial(ms[0], nil)
			if err != nil {
				t.Fatalf("mode %s (tuned %v): %v", name, tuned, err)
			}
			conn.Close()
		}
	}
	if _, err := Lookup("nope"); err == nil {
		t.Error("unknown mode: no error")
	}
}

func TestModeNeedsCluster(t *testing.T) {
	c := startCluster(t, "127.0.49.1", cluster.Config{Replicas: 1, PodPort: 0})
	if _, err := Build(c, Options{}, "headless-mca"); !errors.Is(err, ErrClusterLacks) {
		t.Errorf("headless-mca on a cluster without MaxConnectionAge: %v, want ErrClusterLacks", err)
	}
	ms, err := Build(c, Options{})
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
	c, err := cluster.Start(cluster.Config{Replicas: 1, PodPort: 0, FirstPodIP: netip.MustParseAddr("127.0.49.11"),
		VIP: "127.96.41.10:0", DNSAddr: "127.0.0.1:0", XDSAddr: "-"}, nil)
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
	ms, err := Build(c, Options{})
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
	if _, err := Build(c, Options{}, "xds"); !errors.Is(err, ErrClusterLacks) {
		t.Errorf("xds by name without the control plane: %v, want ErrClusterLacks", err)
	}
}
