package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/xds"
)

// envRunMain makes the test binary run the example's main instead of the tests: grpc-go
// reads GRPC_XDS_BOOTSTRAP when its xds package loads, so the example runs in a process of
// its own, started with the variable set, as a user would start it.
const envRunMain = "SPREAD_EXAMPLE_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envRunMain) == "1" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := run(ctx, strings.Fields(os.Getenv("SPREAD_EXAMPLE_ARGS")), os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "example:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestExampleAgainstDemo runs the example against `spread demo`'s cluster and control plane
// (five pods on 127.0.41.1-5, one free port) with a bootstrap from xds.Bootstrap (what `spread xds
// bootstrap` writes), by port number and by name: 100 calls over all five pods, about 20 each.
func TestExampleAgainstDemo(t *testing.T) {
	// A free port, not a fixed one: two runs of the suite on one machine must not collide.
	port := freePodPort(t, "127.0.41.1")
	c, err := cluster.Start(cluster.Config{
		Replicas: 5, FirstPodIP: netip.MustParseAddr("127.0.41.1"), PodPort: port,
		VIP: "127.96.0.41:0", DNSAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0",
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	boot, err := xds.Bootstrap(xds.BootstrapConfig{ServerURI: c.XDSAddr(), NodeID: "go-example"})
	if err != nil {
		t.Fatal(err)
	}
	bootFile := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(bootFile, boot, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"xds:///be-srv.default:" + strconv.Itoa(port), "xds:///be-srv.default:grpc"} {
		name := "by-port"
		if strings.HasSuffix(target, ":grpc") {
			name = "by-name"
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envRunMain+"=1", "GRPC_XDS_BOOTSTRAP="+bootFile,
				"SPREAD_EXAMPLE_ARGS=--target "+target+" --n 100")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("example: %v\n%s", err, stderr.String())
			}
			var res result
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			if len(res.Errors) != 0 || len(res.Counts) != 5 {
				t.Fatalf("100 calls: %v, errors %v; want 5 pods", res.Counts, res.Errors)
			}
			// Round robin over the READY pods: the first calls may go round fewer of them while
			// the last connections are still being made.
			for pod, n := range res.Counts {
				if n < 15 || n > 25 {
					t.Errorf("%s got %d of 100 calls, want about 20 (round robin)", pod, n)
				}
			}
		})
	}
}

// freePodPort returns a port free on ip now, for the pods' shared port.
func freePodPort(t *testing.T, ip string) int {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().(*net.TCPAddr).Port
}
