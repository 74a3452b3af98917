package main

import (
	"context"

	"github.com/spread-grpc/spread/internal/demo"
)

func runDemo(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("demo", e)
	setUsage(fs, e, demoUsage)
	c := demo.DefaultCommandConfig() // the defaults, declared once there
	c.RegisterFlags(fs)
	newLog := logFlags(fs, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := c.DemoConfig()
	if err != nil {
		return usageError{err}
	}
	log, err := newLog()
	if err != nil {
		return err
	}
	return demo.Run(ctx, cfg, log, e.stdout)
}
