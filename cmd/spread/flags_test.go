package main

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/flagalias"
)

// canonical maps the names commands once used for the same thing to the one name every
// command uses now (STYLE.md: --addr, --admin-addr, --grace, --tls-*).
var canonical = map[string]string{
	"listen":            "addr",
	"admin-listen":      "admin-addr",
	"shutdown-grace":    "grace",
	"ca-file":           "tls-ca",
	"cert-file":         "tls-cert",
	"key-file":          "tls-key",
	"tls-ca-file":       "tls-ca",
	"listen-addr":       "addr",
	"admin-listen-addr": "admin-addr",
	"shutdown-timeout":  "grace",
}

// subcommands lists every command line that has a flag set of its own.
func subcommands() [][]string {
	var out [][]string
	for name := range commands {
		out = append(out, []string{name})
	}
	out = append(out, []string{"xds", "bootstrap"})
	slices.SortFunc(out, func(a, b []string) int { return strings.Compare(strings.Join(a, " "), strings.Join(b, " ")) })
	return out
}

// flagsOf runs `spread <cmd> -h` and reads back the flags it lists with their usage
// (flag.PrintDefaults' format: "  -name type" then the usage indented by a tab).
func flagsOf(t *testing.T, cmd []string) map[string]string {
	t.Helper()
	code, out := runCmd(append(slices.Clone(cmd), "-h")...)
	if code != 0 {
		t.Fatalf("spread %v -h: exit %d: %s", cmd, code, out)
	}
	flags := map[string]string{}
	var cur string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "  -"):
			name, _, _ := strings.Cut(strings.TrimPrefix(line, "  -"), " ")
			name, usage, _ := strings.Cut(name, "\t") // a bool flag's usage may share the line
			cur = name
			flags[cur] = strings.TrimSpace(usage)
		case strings.HasPrefix(line, "    \t") && cur != "":
			flags[cur] = strings.TrimSpace(flags[cur] + " " + strings.TrimSpace(line))
		}
	}
	if len(flags) == 0 {
		t.Fatalf("spread %v -h listed no flags: %s", cmd, out)
	}
	return flags
}

// TestFlagNamesAreConsistent walks every subcommand's flag set: an old name for a concept
// (--listen, --ca-file, ...) may only be a deprecated alias that says so in -h and names the
// canonical flag, which the same command has; every deprecated alias names a flag of its
// command.
func TestFlagNamesAreConsistent(t *testing.T) {
	for _, cmd := range subcommands() {
		flags := flagsOf(t, cmd)
		for name, usage := range flags {
			target, deprecated := flagalias.Target(usage)
			if want, old := canonical[name]; old {
				if !deprecated || target != want {
					t.Errorf("spread %v --%s: an old name; want it only as a deprecated alias of --%s (usage %q)", cmd, name, want, usage)
				}
			}
			if deprecated {
				if _, ok := flags[target]; !ok {
					t.Errorf("spread %v --%s: deprecated alias of --%s, which the command does not have", cmd, name, target)
				}
			}
		}
	}
}

// TestDeprecatedAliasesShareTheirDefault checks in every subcommand's -h that an alias is
// not a second declaration of its flag's default: it shows exactly its target's default.
func TestDeprecatedAliasesShareTheirDefault(t *testing.T) {
	defaultOf := func(usage string) string {
		if i := strings.LastIndex(usage, "(default "); i >= 0 {
			return usage[i:]
		}
		return ""
	}
	aliases := 0
	for _, cmd := range subcommands() {
		flags := flagsOf(t, cmd)
		for name, usage := range flags {
			target, ok := flagalias.Target(usage)
			if !ok {
				continue
			}
			aliases++
			if got, want := defaultOf(usage), defaultOf(flags[target]); got != want {
				t.Errorf("spread %v --%s shows default %q, its flag --%s %q", cmd, name, got, target, want)
			}
		}
	}
	if aliases == 0 {
		t.Error("no deprecated alias found in any -h: the walk reads nothing")
	}
}

// TestDemoFlagDefaultsAreTheLibrarys fails when a `spread demo` flag declares a cluster
// default of its own instead of showing cluster.DefaultConfig's.
func TestDemoFlagDefaultsAreTheLibrarys(t *testing.T) {
	d := cluster.DefaultConfig()
	flags := flagsOf(t, []string{"demo"})
	for name, want := range map[string]string{
		"replicas":      strconv.Itoa(d.Replicas),
		"first-pod-ip":  strconv.Quote(d.FirstPodIP.String()),
		"pod-port":      strconv.Itoa(d.PodPort),
		"dns-addr":      strconv.Quote(d.DNSAddr),
		"dns-ttl":       d.DNSTTL.String(),
		"pod-grace":     d.Grace.String(),
		"restart-delay": d.RestartDelay.String(),
		"canary-weight": strconv.Itoa(d.CanaryWeight),
	} {
		if usage, ok := flags[name]; !ok || !strings.HasSuffix(usage, "(default "+want+")") {
			t.Errorf("spread demo --%s: usage %q, want the library default %s", name, usage, want)
		}
	}
}
