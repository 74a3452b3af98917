package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spread-grpc/spread/internal/flagalias"
	"github.com/spread-grpc/spread/internal/xdscmd"
)

// runXDS is `spread xds` (the control plane) and `spread xds bootstrap` (a client's
// bootstrap file).
func runXDS(ctx context.Context, args []string, e *env) error {
	if len(args) > 0 && args[0] == "bootstrap" {
		return runXDSBootstrap(args[1:], e)
	}
	if len(args) > 0 && args[0] == "status" {
		return runXDSStatus(ctx, args[1:], e)
	}
	fs := newFlagSet("xds", e)
	setUsage(fs, e, xdsUsage)
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
	for _, name := range flagalias.Used(fs) {
		log.Warn("deprecated flag: see spread xds -h", "flag", "--"+name)
	}
	cfg.Logger = log
	return xdscmd.Run(ctx, cfg)
}

func runXDSBootstrap(args []string, e *env) error {
	fs := newFlagSet("xds bootstrap", e)
	var c xdscmd.BootstrapConfig
	c.RegisterFlags(fs)
	out := fs.String("out", "", "write the bootstrap to this file (default: stdout), e.g. in an init container")
	if err := parse(fs, args); err != nil {
		return err
	}
	var b bytes.Buffer
	if err := xdscmd.Bootstrap(&b, c); err != nil {
		return usageError{err}
	}
	if *out == "" {
		_, err := e.stdout.Write(b.Bytes())
		return err
	}
	// Written whole, then renamed: a reader never sees half a file.
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".bootstrap-*")
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("--out: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("--out: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return os.Rename(tmp.Name(), *out)
}

// runXDSStatus is `spread xds status`: every connected client and its sync state.
func runXDSStatus(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("xds status", e)
	c := xdscmd.DefaultStatusConfig()
	c.RegisterFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return usageError{err}
	}
	return xdscmd.Status(ctx, e.stdout, c)
}
