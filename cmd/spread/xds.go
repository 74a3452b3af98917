package main

import (
	"context"

	"github.com/spread-grpc/spread/internal/xdscmd"
)

// runXDS runs the proxyless xDS control plane, or with "bootstrap" prints a client bootstrap.
func runXDS(ctx context.Context, args []string, e *env) error {
	if len(args) > 0 && args[0] == "bootstrap" {
		return runXDSBootstrap(args[1:], e)
	}
	fs := newFlagSet("xds", e)
	cfg := xdscmd.DefaultConfig()
	cfg.RegisterFlags(fs)
	newLog := logFlags(fs, e)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	log, err := newLog()
	if err != nil {
		return err
	}
	cfg.Logger = log
	return xdscmd.Run(ctx, cfg)
}

func runXDSBootstrap(args []string, e *env) error {
	fs := newFlagSet("xds bootstrap", e)
	var bc xdscmd.BootstrapConfig
	bc.RegisterFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := xdscmd.Bootstrap(e.stdout, bc); err != nil {
		return usageError{err}
	}
	return nil
}
