package compare

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spread-grpc/spread/internal/modes"
)

// CommandConfig is `spread compare`'s whole configuration: a comparison's Config whose
// contenders and scenarios are given by name, and where the report goes. It is a type of its
// own because a Config holds the resolved Contenders and Scenarios; Comparison makes one.
type CommandConfig struct {
	Config
	// ModeList and ScenarioList are comma-separated names (empty: every registered mode, plus
	// nginx-l7 when nginx is installed; every scenario).
	ModeList, ScenarioList string
	// Quick is the quick preset (see Parsed).
	Quick bool
	// Out is the directory for report.md, report.html and report.json ("": none).
	Out string
	// JSON prints the JSON report instead of the Markdown tables.
	JSON bool
}

// The quick preset's values (unless the command line sets them).
const (
	QuickDuration           = 6 * time.Second
	QuickDNSRefreshInterval = 2 * time.Second
)

// DefaultCommandConfig returns `spread compare`'s defaults, declared once.
func DefaultCommandConfig() CommandConfig {
	return CommandConfig{Config: DefaultConfig(), Out: "compare-report"}
}

// RegisterFlags binds c's fields to flags in fs, with c's current values as defaults. Call
// Parsed after fs.Parse.
func (c *CommandConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ModeList, "modes", c.ModeList, "comma-separated modes to compare (default: every registered mode, plus nginx-l7 when nginx is installed)")
	fs.StringVar(&c.ScenarioList, "scenarios", c.ScenarioList, "comma-separated scenarios (default: all: "+strings.Join(ScenarioNames(), ", ")+")")
	fs.BoolVar(&c.Quick, "quick", c.Quick, "the quick preset: 6 s runs at 100 calls/s, dns-refresh every 2 s (well under a minute)")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "offered calls/s of each run")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "length of each run")
	fs.Float64Var(&c.EventAt, "event-at", c.EventAt, "when the scenario's event happens, as a fraction of --duration")
	fs.DurationVar(&c.CallTimeout, "call-timeout", c.CallTimeout, "deadline of each call")
	fs.IntVar(&c.Parallel, "parallel", c.Parallel, "runs at once, each on its own cluster (default: every mode of a scenario)")
	fs.DurationVar(&c.ModeOptions.DNSRefreshInterval, "dns-refresh-interval", c.ModeOptions.DNSRefreshInterval, "the dns-refresh modes' interval")
	fs.StringVar(&c.Out, "out", c.Out, `directory for report.md, report.html and report.json ("" writes none)`)
	fs.BoolVar(&c.JSON, "json", c.JSON, "print the JSON report instead of the Markdown tables")
}

// Parsed applies the defaults that depend on which flags fs's command line set: --quick's
// duration and dns-refresh interval, unless given.
func (c *CommandConfig) Parsed(fs *flag.FlagSet) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.Quick {
		if !set["duration"] {
			c.Duration = QuickDuration
		}
		if !set["dns-refresh-interval"] {
			c.ModeOptions.DNSRefreshInterval = QuickDNSRefreshInterval
		}
	}
}

// Validate reports c's first invalid setting, naming its flag.
func (c CommandConfig) Validate() error {
	_, _, err := c.Comparison()
	return err
}

// Comparison returns the Config c describes, its contenders and scenarios resolved by name,
// with notes for the report (modes left out of the default set), or c's first invalid
// setting.
func (c CommandConfig) Comparison() (Config, []string, error) {
	cfg := c.Config
	if cfg.Parallel < 0 {
		return cfg, nil, fmt.Errorf("--parallel %d: want 0 (default) or more", cfg.Parallel)
	}
	if cfg.ModeOptions.DNSRefreshInterval <= 0 {
		return cfg, nil, fmt.Errorf("--dns-refresh-interval %v: want more than 0", cfg.ModeOptions.DNSRefreshInterval)
	}
	nginx, haveNginx := NginxContender()
	var notes []string
	names := splitList(c.ModeList)
	if len(names) == 0 {
		names = modes.Names()
		if haveNginx {
			names = append(names, NginxName)
		} else {
			notes = append(notes, "nginx-l7 skipped: no nginx installed (apt-get install nginx-light)")
		}
	}
	cfg.Contenders = nil
	for _, n := range names {
		if n == NginxName {
			if !haveNginx {
				return cfg, nil, errors.New("--modes nginx-l7: nginx is not installed (apt-get install nginx-light)")
			}
			cfg.Contenders = append(cfg.Contenders, nginx)
			continue
		}
		if ct, ok := ManyClientsContender(n); ok { // clusterip-40*: not in the default set
			cfg.Contenders = append(cfg.Contenders, ct)
			continue
		}
		ct, err := RegistryContender(n)
		if err != nil {
			return cfg, nil, fmt.Errorf("--modes: %w, %s", err, NginxName)
		}
		cfg.Contenders = append(cfg.Contenders, ct)
	}
	cfg.Scenarios = Scenarios()
	if sn := splitList(c.ScenarioList); len(sn) > 0 {
		all := cfg.Scenarios
		cfg.Scenarios = nil
		for _, n := range sn {
			i := slices.IndexFunc(all, func(s Scenario) bool { return s.Name == n })
			if i < 0 {
				return cfg, nil, fmt.Errorf("--scenarios: unknown scenario %q (have %s)", n, strings.Join(ScenarioNames(), ", "))
			}
			cfg.Scenarios = append(cfg.Scenarios, all[i])
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, err
	}
	if cfg.CallTimeout <= 0 {
		return cfg, nil, fmt.Errorf("--call-timeout %v: want more than 0", cfg.CallTimeout)
	}
	return cfg, notes, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
