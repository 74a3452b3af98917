package demo

import (
	"flag"
	"fmt"
	"io"
	"testing"

	"github.com/spread-grpc/spread/internal/cluster"
)

// TestCommandConfigRejects: RegisterFlags + Parse + Validate refuses bad flags with the
// messages `spread demo` gives (exit 2 there).
func TestCommandConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" accepts
	}{
		{nil, ""},
		{[]string{"--first-pod-ip=nope"}, `--first-pod-ip "nope": ParseAddr("nope"): unable to parse IP`},
		{[]string{"--replicas=0"}, fmt.Sprintf("--replicas 0: want 1 to %d", cluster.MaxReplicas)},
		{[]string{"--canary-weight=101"}, "--canary-weight 101: want 0 to 100"},
		{[]string{"--pod-grace=0s"}, "--grace and --pod-grace must be positive, --dns-ttl not negative"},
		{[]string{"--clusterip-clients=-1"}, "demo: -1 ClusterIP clients: want 0 to 200"},
	} {
		cfg := DefaultCommandConfig()
		fs := flag.NewFlagSet("demo", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg.RegisterFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%v: parse: %v", tc.args, err)
		}
		err := cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v, want it accepted", tc.args, err)
		case tc.want != "" && (err == nil || err.Error() != tc.want):
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestCommandConfigCanaryNone: --canary-weight 0 is the library's "none" (-1); the first pod's
// address is parsed.
func TestCommandConfigCanaryNone(t *testing.T) {
	c := DefaultCommandConfig()
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"--canary-weight=0", "--first-pod-ip=127.0.9.1"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.DemoConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.CanaryWeight != -1 || cfg.Cluster.FirstPodIP.String() != "127.0.9.1" {
		t.Errorf("canary weight %d, first pod %v; want -1 and 127.0.9.1", cfg.Cluster.CanaryWeight, cfg.Cluster.FirstPodIP)
	}
}
