package frontend

import (
	"flag"
	"io"
	"reflect"
	"testing"

	"github.com/spread-grpc/spread/internal/connect"
)

// TestCommandConfigRejects: RegisterFlags + Parse + Validate refuses bad flags with the
// messages `spread frontend` gives (exit 2 there).
func TestCommandConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" accepts
	}{
		{nil, ""},
		{[]string{"--addr=127.0.0.1:0", "--admin-addr=-"}, ""},
		{[]string{"--addr=nope"}, `--addr "nope": want host:port, like 127.0.0.1:8080 or :8080`},
		{[]string{"--addr=:1", "--admin-addr=:65536"}, `--admin-addr ":65536": port "65536": want 0 to 65535`},
		{[]string{"--grace=0s"}, "--grace, --call-timeout and --request-timeout must be positive"},
		{[]string{"--request-timeout=-1s"}, "--grace, --call-timeout and --request-timeout must be positive"},
		{[]string{"--tls-cert=c.pem"}, "--tls-cert needs --tls-ca"},
	} {
		cfg := DefaultCommandConfig()
		fs := flag.NewFlagSet("frontend", flag.ContinueOnError)
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

// TestCommandConfigModes: without --mode the defaults; the first --mode replaces them; a bad
// --mode fails the parse with parseMode's message.
func TestCommandConfigModes(t *testing.T) {
	parse := func(args ...string) (CommandConfig, error) {
		cfg := DefaultCommandConfig()
		fs := flag.NewFlagSet("frontend", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg.RegisterFlags(fs)
		return cfg, fs.Parse(args)
	}
	cfg, err := parse()
	if err != nil || len(cfg.Modes) != 2 || cfg.Modes[0].Name != "clusterip" || cfg.Modes[1].Name != "headless" {
		t.Errorf("no --mode: %v, %+v; want the default clusterip and headless", err, cfg.Modes)
	}
	cfg, err = parse("--mode=a=dns:///x:1", "--mode=clusterip=dns:///y:1,health=true")
	if err != nil || len(cfg.Modes) != 2 || !reflect.DeepEqual(cfg.Modes[0], connect.Mode{Name: "a", Target: "dns:///x:1", Policy: connect.RoundRobin}) ||
		!reflect.DeepEqual(cfg.Modes[1], connect.Mode{Name: "clusterip", Target: "dns:///y:1", Policy: connect.PickFirst, HealthCheck: true}) {
		t.Errorf("two --mode: %v, %+v", err, cfg.Modes)
	}
	if len(DefaultModes()) != 2 {
		t.Error("a --mode changed the defaults")
	}
	if _, err = parse("--mode=a=x,lb=random"); err == nil || err.Error() != `invalid value "a=x,lb=random" for flag -mode: "a=x,lb=random": lb="random": want pick_first or round_robin` {
		t.Errorf("bad --mode: %v", err)
	}
}
