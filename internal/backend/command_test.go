package backend

import (
	"flag"
	"io"
	"testing"
)

// TestCommandConfigRejects: RegisterFlags + Parse + Validate refuses bad flags with the
// messages `spread backend` gives (exit 2 there).
func TestCommandConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" accepts
	}{
		{nil, ""},
		{[]string{"--fair-share-peers=127.0.0.1,::1", "--admin-addr=:9090"}, ""},
		{[]string{"--addr=8080"}, `--addr "8080": want host:port, like 127.0.0.1:8080 or :8080`},
		{[]string{"--admin-addr=:99999", "--health-addr=x"}, "--admin-addr \":99999\": port \"99999\": want 0 to 65535\n--health-addr \"x\": want host:port, like 127.0.0.1:8080 or :8080"},
		{[]string{"--grace=-1s"}, "backend: grace -1s is negative"},
		{[]string{"--tls-cert=c.pem"}, "backend: TLS needs both a certificate and a key file"},
		{[]string{"--orca-capacity=-1"}, "--orca-capacity -1: must not be negative"},
		{[]string{"--fair-share-peers=127.0.0.1", "--admin-addr=-"}, "fair share needs the admin port (--admin-addr): peers read each other's counts there"},
		{[]string{"--fair-share-peers=127.0.0.1", "--admin-addr=127.0.0.1:0"}, `--admin-addr "127.0.0.1:0": fair share needs a fixed port, shared by every pod`},
		{[]string{"--fair-share-peers=pod-a"}, `--fair-share-peers: "pod-a" is not an IP address`},
		{[]string{"--fair-share-peers=127.0.0.1", "--fair-share-interval=0s"}, "--fair-share-interval 0s must be positive"},
	} {
		cfg := DefaultCommandConfig()
		cfg.Pod = "pod-a"
		fs := flag.NewFlagSet("backend", flag.ContinueOnError)
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

// TestCommandConfigDefaults: the flags' defaults are DefaultCommandConfig's, so parsing no
// arguments changes nothing.
func TestCommandConfigDefaults(t *testing.T) {
	cfg := DefaultCommandConfig()
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if cfg != DefaultCommandConfig() {
		t.Errorf("after parsing nothing: %+v, want %+v", cfg, DefaultCommandConfig())
	}
	if got := fs.Lookup("fair-share-interval").DefValue; got != "5s" {
		t.Errorf("--fair-share-interval default %s, want 5s", got)
	}
}
