// Command spread is Spread's one binary: the echo backend, the HTTP frontend, the simulated
// demo cluster, and (as they land) the xDS control plane, the load generator and the
// comparison. Each subcommand parses its flags into a Config and calls a library package;
// this file only dispatches, turns signals into a context and errors into exit codes
// (1 error, 2 usage).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand. run gets the arguments after the subcommand's name.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, env *env) error
}

// env is what a subcommand may use of the process.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

var commands = map[string]command{
	"backend":  {"run the echo gRPC backend (a pod)", runBackend},
	"frontend": {"run the HTTP frontend that calls the backends in every mode", runFrontend},
	"demo":     {"run a whole simulated cluster on loopback, with the frontend", runDemo},
	"ctl":      {"control a running demo: scale, rollout, kill, freeze, slow a pod", runCtl},
	"certs":    {"create a CA and TLS certificates for the backend, frontend and xDS server", runCerts},
	"xds":      {"run the proxyless xDS control plane ('spread xds bootstrap' prints a client bootstrap)", runXDS},
	"load":     {"offer open-loop, rate-paced load to a gRPC target or a frontend mode; report per pod", runLoad},
	"compare":  {"run every mode through scripted cluster changes; write Markdown, HTML and JSON reports", runCompare},
}

// usageError marks errors caused by bad command-line input (exit code 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}))
}

// run executes one invocation and returns the exit code.
func run(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(e.stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "spread: unknown command %q\n\n", args[0])
		printUsage(e.stderr)
		return 2
	}
	err := cmd.run(ctx, args[1:], e)
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "spread %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(e.stderr, "spread %s: %v\n", args[0], err)
		return 1
	}
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: spread <command> [flags]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'spread <command> -h' for a command's flags.\n")
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, e *env) *flag.FlagSet {
	fs := flag.NewFlagSet("spread "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

// parse parses args, refusing stray positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	return nil
}

// logFlags registers --log-level and --log-format and returns a function building the logger.
func logFlags(fs *flag.FlagSet, e *env) func() (*slog.Logger, error) {
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", "text", "log format: text or json")
	return func() (*slog.Logger, error) {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*level)); err != nil {
			return nil, usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", *level)}
		}
		o := &slog.HandlerOptions{Level: l}
		switch *format {
		case "text":
			return slog.New(slog.NewTextHandler(e.stderr, o)), nil
		case "json":
			return slog.New(slog.NewJSONHandler(e.stderr, o)), nil
		}
		return nil, usageError{fmt.Errorf("--log-format %q: want text or json", *format)}
	}
}
