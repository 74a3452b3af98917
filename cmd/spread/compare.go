package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spread-grpc/spread/internal/compare"
	"github.com/spread-grpc/spread/internal/modes"
)

func runCompare(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("compare", e)
	d := compare.DefaultConfig() // the defaults, declared once there
	modeList := fs.String("modes", "", "comma-separated modes to compare (default: every registered mode, plus nginx-l7 when nginx is installed)")
	scenarios := fs.String("scenarios", "", "comma-separated scenarios (default: all: "+strings.Join(compare.ScenarioNames(), ", ")+")")
	quick := fs.Bool("quick", false, "the quick preset: 6 s runs at 100 calls/s, dns-refresh every 2 s (well under a minute)")
	rate := fs.Float64("rate", d.Rate, "offered calls/s of each run")
	duration := fs.Duration("duration", d.Duration, "length of each run")
	eventAt := fs.Float64("event-at", d.EventAt, "when the scenario's event happens, as a fraction of --duration")
	callTimeout := fs.Duration("call-timeout", d.CallTimeout, "deadline of each call")
	parallel := fs.Int("parallel", 0, "runs at once, each on its own cluster (default: every mode of a scenario)")
	refresh := fs.Duration("dns-refresh-interval", d.ModeOptions.DNSRefreshInterval, "the dns-refresh modes' interval")
	out := fs.String("out", "compare-report", `directory for report.md, report.html and report.json ("" writes none)`)
	asJSON := fs.Bool("json", false, "print the JSON report instead of the Markdown tables")
	newLog := logFlags(fs, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["duration"] {
			*duration = 6 * time.Second
		}
		if !set["dns-refresh-interval"] {
			*refresh = 2 * time.Second
		}
	}
	if *parallel < 0 {
		return usageError{fmt.Errorf("--parallel %d: want 0 (default) or more", *parallel)}
	}
	if *refresh <= 0 {
		return usageError{fmt.Errorf("--dns-refresh-interval %v: want more than 0", *refresh)}
	}
	nginx, haveNginx := compare.NginxContender()
	var cs []compare.Contender
	var notes []string
	names := splitList(*modeList)
	if len(names) == 0 {
		names = modes.Names()
		if haveNginx {
			names = append(names, compare.NginxName)
		} else {
			notes = append(notes, "nginx-l7 skipped: no nginx installed (apt-get install nginx-light)")
		}
	}
	for _, n := range names {
		if n == compare.NginxName {
			if !haveNginx {
				return usageError{errors.New("--modes nginx-l7: nginx is not installed (apt-get install nginx-light)")}
			}
			cs = append(cs, nginx)
			continue
		}
		if c, ok := compare.ManyClientsContender(n); ok { // clusterip-40*: not in the default set
			cs = append(cs, c)
			continue
		}
		c, err := compare.RegistryContender(n)
		if err != nil {
			return usageError{fmt.Errorf("--modes: %w, %s", err, compare.NginxName)}
		}
		cs = append(cs, c)
	}
	var scs []compare.Scenario
	if sn := splitList(*scenarios); len(sn) > 0 {
		all := compare.Scenarios()
		for _, n := range sn {
			i := slices.IndexFunc(all, func(s compare.Scenario) bool { return s.Name == n })
			if i < 0 {
				return usageError{fmt.Errorf("--scenarios: unknown scenario %q (have %s)", n, strings.Join(compare.ScenarioNames(), ", "))}
			}
			scs = append(scs, all[i])
		}
	} else {
		scs = compare.Scenarios()
	}
	cfg := compare.Config{Contenders: cs, Scenarios: scs, Rate: *rate, Duration: *duration, EventAt: *eventAt,
		CallTimeout: *callTimeout, Parallel: *parallel, ModeOptions: modes.Options{DNSRefreshInterval: *refresh}}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	if *callTimeout <= 0 {
		return usageError{fmt.Errorf("--call-timeout %v: want more than 0", *callTimeout)}
	}
	log, err := newLog()
	if err != nil {
		return err
	}
	par := *parallel
	if par == 0 {
		par = len(cs)
	}
	runs := (len(cs) + par - 1) / par * len(scs)
	fmt.Fprintf(e.stderr, "spread compare: %d modes × %d scenarios, %v each at %g calls/s (about %v)\n",
		len(cs), len(scs), *duration, *rate, (time.Duration(runs) * (*duration + 2*time.Second)).Round(time.Second))
	rep, err := compare.Run(ctx, cfg, log)
	if rep != nil {
		rep.Notes = append(rep.Notes, notes...)
	}
	if err != nil {
		return err
	}
	var md bytes.Buffer
	rep.WriteMarkdown(&md)
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return err
		}
		var page bytes.Buffer
		if err := rep.WriteHTML(&page); err != nil {
			return err
		}
		for name, b := range map[string][]byte{"report.md": md.Bytes(), "report.html": page.Bytes(), "report.json": js} {
			if err := os.WriteFile(filepath.Join(*out, name), b, 0o644); err != nil {
				return err
			}
		}
		fmt.Fprintf(e.stderr, "spread compare: wrote %s/report.{md,html,json} in %.1f s\n", *out, rep.WallMS/1000)
	}
	if *asJSON {
		_, err = e.stdout.Write(append(js, '\n'))
		return err
	}
	_, err = e.stdout.Write(md.Bytes())
	return err
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
