package certgen

import (
	"flag"
	"io"
	"testing"
)

// TestCommandConfigRejects: RegisterFlags + Parse + Validate refuses bad flags with the
// messages `spread certs` gives (exit 2 there), and parses --ip.
func TestCommandConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" accepts
	}{
		{nil, ""},
		{[]string{"--ip=10.0.0.1, ::2"}, ""},
		{[]string{"--valid-for=0s"}, "--valid-for and --ca-valid-for must be positive"},
		{[]string{"--ca-valid-for=-1h"}, "--valid-for and --ca-valid-for must be positive"},
		{[]string{"--ca-cert=ca.crt"}, "--ca-cert and --ca-key go together"},
		{[]string{"--ip=10.0.0.1,pod-a"}, `--ip "pod-a" is not an IP address`},
	} {
		c := DefaultCommandConfig()
		fs := flag.NewFlagSet("certs", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.RegisterFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%v: parse: %v", tc.args, err)
		}
		b, err := c.CertBundle()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v, want it accepted", tc.args, err)
		case tc.want != "" && (err == nil || err.Error() != tc.want):
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		case tc.want == "" && len(tc.args) == 1 && len(b.ExtraIPs) != 2:
			t.Errorf("%v: extra IPs %v, want 2", tc.args, b.ExtraIPs)
		}
	}
}
