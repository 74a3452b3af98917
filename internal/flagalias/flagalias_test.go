package flagalias

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func TestDeprecatedAliasSetsTheFlag(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("addr", ":1", "listen address")
	Deprecated(fs, "listen", "addr")
	if got := fs.Lookup("listen").DefValue; got != ":1" {
		t.Errorf("alias default %q, want the flag's %q", got, ":1")
	}
	if err := fs.Parse([]string{"--listen=:2"}); err != nil {
		t.Fatal(err)
	}
	if *addr != ":2" {
		t.Errorf("--listen set addr to %q, want :2", *addr)
	}
	if got := Used(fs); !slices.Equal(got, []string{"listen"}) {
		t.Errorf("Used = %v, want [listen]", got)
	}
	if target, ok := Target(fs.Lookup("listen").Usage); !ok || target != "addr" {
		t.Errorf("Target = %q, %v; want addr, true", target, ok)
	}
	if _, ok := Target(fs.Lookup("addr").Usage); ok {
		t.Error("the flag itself reads as a deprecated alias")
	}
}

func TestDeprecatedUnknownTargetPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for an alias of an unregistered flag")
		}
	}()
	Deprecated(flag.NewFlagSet("t", flag.ContinueOnError), "old", "missing")
}
