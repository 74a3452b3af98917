package load

import (
	"flag"
	"io"
	"testing"
)

// TestCommandConfigRejects: RegisterFlags + Parse + Parsed + Validate refuses bad flags with
// the messages `spread load` gives (exit 2 there).
func TestCommandConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" accepts
	}{
		{[]string{"--target=dns:///x:1"}, ""},
		{[]string{"--url=http://127.0.0.1:8081/call/headless"}, ""},
		{nil, "give exactly one of --target (a gRPC target) and --url (a frontend mode URL)"},
		{[]string{"--target=x", "--lb=random"}, `--lb "random": want pick_first or round_robin`},
		{[]string{"--url=http://h/call/x", "--stream"}, "--stream needs --target: a frontend answers each HTTP request with its own short stream"},
		{[]string{"--target=x", "--concurrency=0"}, "--concurrency 0: want 1 or more"},
		{[]string{"--target=x", "--rate=0"}, "load: rate is 0: want more than 0 calls/s"},
		{[]string{"--url=http://h/call/x", "--hedge-delay=1ms"}, "--hedge-delay and --attempt-timeout need --target: a frontend mode makes its own calls"},
		{[]string{"--target=x", "--hedge-budget=2"}, "--hedge-budget 2: want a share from 0 to 1"},
		{[]string{"--target=x", "--connect-timeout=0s"}, "--connect-timeout 0s: want more than 0"},
		{[]string{"--url=ftp://h/call/x"}, `--url "ftp://h/call/x": want a frontend mode URL like http://127.0.0.1:8081/call/headless`},
	} {
		cfg := DefaultCommandConfig()
		fs := flag.NewFlagSet("load", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg.RegisterFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%v: parse: %v", tc.args, err)
		}
		cfg.Parsed(fs)
		err := cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v, want it accepted", tc.args, err)
		case tc.want != "" && (err == nil || err.Error() != tc.want):
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestCommandConfigStreams: --stream keeps DefaultStreams streams unless --concurrency is given.
func TestCommandConfigStreams(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--target=x"}, DefaultMaxInFlight},
		{[]string{"--target=x", "--stream"}, DefaultStreams},
		{[]string{"--target=x", "--stream", "--concurrency=3"}, 3},
	} {
		cfg := DefaultCommandConfig()
		fs := flag.NewFlagSet("load", flag.ContinueOnError)
		cfg.RegisterFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		cfg.Parsed(fs)
		if cfg.MaxInFlight != tc.want {
			t.Errorf("%v: MaxInFlight %d, want %d", tc.args, cfg.MaxInFlight, tc.want)
		}
	}
}
