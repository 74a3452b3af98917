package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spread-grpc/spread/internal/compare"
)

func runCompare(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("compare", e)
	c := compare.DefaultCommandConfig()
	c.RegisterFlags(fs)
	newLog := logFlags(fs, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	c.Parsed(fs)
	cfg, notes, err := c.Comparison()
	if err != nil {
		return usageError{err}
	}
	log, err := newLog()
	if err != nil {
		return err
	}
	cs, scs := cfg.Contenders, cfg.Scenarios
	par := cfg.Parallel
	if par == 0 {
		par = len(cs)
	}
	runs := (len(cs) + par - 1) / par * len(scs)
	fmt.Fprintf(e.stderr, "spread compare: %d modes × %d scenarios, %v each at %g calls/s (about %v)\n",
		len(cs), len(scs), cfg.Duration, cfg.Rate, (time.Duration(runs) * (cfg.Duration + 2*time.Second)).Round(time.Second))
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
	if c.Out != "" {
		if err := os.MkdirAll(c.Out, 0o755); err != nil {
			return err
		}
		var page bytes.Buffer
		if err := rep.WriteHTML(&page); err != nil {
			return err
		}
		for name, b := range map[string][]byte{"report.md": md.Bytes(), "report.html": page.Bytes(), "report.json": js} {
			if err := os.WriteFile(filepath.Join(c.Out, name), b, 0o644); err != nil {
				return err
			}
		}
		fmt.Fprintf(e.stderr, "spread compare: wrote %s/report.{md,html,json} in %.1f s\n", c.Out, rep.WallMS/1000)
	}
	if c.JSON {
		_, err = e.stdout.Write(append(js, '\n'))
		return err
	}
	_, err = e.stdout.Write(md.Bytes())
	return err
}
