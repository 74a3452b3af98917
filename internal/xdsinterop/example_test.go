package xdsinterop

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/xds"
)

// TestNodeExampleAgainstDemo runs examples/node/client.js, unmodified, against `spread
// demo`'s cluster and control plane (five pods on 127.0.42.1-5, one free port), with the bootstrap
// `spread xds bootstrap` writes (no zone): xds:///be-srv.default:PORT, 100 calls over all
// five pods.
func TestNodeExampleAgainstDemo(t *testing.T) {
	node, modules := nodeModules(t)
	// A free port, not a fixed one: two runs of the suite on one machine must not collide.
	port := freePodPort(t, "127.0.42.1")
	c, err := cluster.Start(cluster.Config{
		Replicas: 5, FirstPodIP: netip.MustParseAddr("127.0.42.1"), PodPort: port,
		VIP: "127.96.0.42:0", DNSAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0",
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
	boot, err := xds.Bootstrap(xds.BootstrapConfig{ServerURI: c.XDSAddr(), NodeID: "node-example"})
	if err != nil {
		t.Fatal(err)
	}
	bootFile := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(bootFile, boot, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join(repoRoot(t), "examples", "node", "client.js"), "xds:///be-srv.default:"+strconv.Itoa(port), "100")
	cmd.Env = append(os.Environ(), "GRPC_XDS_BOOTSTRAP="+bootFile, "NODE_PATH="+modules)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node example: %v\n%s", err, stderr.String())
	}
	var rep reply
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if rep.failed() != 0 || len(rep.Counts) != 5 {
		t.Fatalf("100 calls: %v, errors %v; want all 5 pods, no errors", rep.Counts, rep.Errors)
	}
	for pod, n := range rep.Counts {
		if n < 15 || n > 25 {
			t.Errorf("%s got %d of 100 calls, want about 20 (round robin)", pod, n)
		}
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
