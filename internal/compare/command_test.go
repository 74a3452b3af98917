package compare

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// TestCommandConfigRejects: RegisterFlags + Parse + Parsed + Validate refuses bad flags with
// the messages `spread compare` gives (exit 2 there).
func TestCommandConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" accepts; a prefix when it ends in "…"
	}{
		{[]string{"--modes=headless", "--scenarios=scale-up"}, ""},
		{[]string{"--parallel=-1"}, "--parallel -1: want 0 (default) or more"},
		{[]string{"--dns-refresh-interval=0s"}, "--dns-refresh-interval 0s: want more than 0"},
		{[]string{"--modes=nope"}, "--modes: …"},
		{[]string{"--modes=headless", "--scenarios=nope"}, `--scenarios: unknown scenario "nope" (have …`},
		{[]string{"--modes=headless", "--rate=0"}, "compare: rate 0: want more than 0 calls/s"},
		{[]string{"--modes=headless", "--event-at=1"}, "compare: event at 1: want a fraction from 0 to below 1 of the duration"},
		{[]string{"--modes=headless", "--call-timeout=0s"}, "--call-timeout 0s: want more than 0"},
	} {
		cfg := DefaultCommandConfig()
		fs := flag.NewFlagSet("compare", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg.RegisterFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%v: parse: %v", tc.args, err)
		}
		cfg.Parsed(fs)
		err := cfg.Validate()
		prefix, isPrefix := strings.CutSuffix(tc.want, "…")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v, want it accepted", tc.args, err)
		case tc.want != "" && err == nil,
			isPrefix && err != nil && !strings.HasPrefix(err.Error(), prefix),
			!isPrefix && tc.want != "" && err != nil && err.Error() != tc.want:
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestCommandConfigQuick: --quick sets the duration and dns-refresh interval the command line
// leaves alone, and Comparison resolves the named modes and scenarios.
func TestCommandConfigQuick(t *testing.T) {
	cfg := DefaultCommandConfig()
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"--quick", "--duration=9s", "--modes=headless,clusterip", "--scenarios=scale-up"}); err != nil {
		t.Fatal(err)
	}
	cfg.Parsed(fs)
	c, _, err := cfg.Comparison()
	if err != nil {
		t.Fatal(err)
	}
	if c.Duration != 9*time.Second || c.ModeOptions.DNSRefreshInterval != QuickDNSRefreshInterval {
		t.Errorf("duration %v, dns-refresh %v; want 9s (given) and %v (quick)", c.Duration, c.ModeOptions.DNSRefreshInterval, QuickDNSRefreshInterval)
	}
	if len(c.Contenders) != 2 || c.Contenders[0].Name != "headless" || len(c.Scenarios) != 1 || c.Scenarios[0].Name != "scale-up" {
		t.Errorf("contenders %d, scenarios %d: want headless, clusterip and scale-up", len(c.Contenders), len(c.Scenarios))
	}
}
