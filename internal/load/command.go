package load

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/spread-grpc/spread/internal/connect"
)

// DefaultStreams is how many streams --stream keeps open unless --concurrency says otherwise.
const DefaultStreams = 10

// CommandConfig is `spread load`'s whole configuration: the run's Config and what the command
// calls and how. It is a type of its own rather than more fields of Config because Run and
// its other callers (compare) drive a CallFunc they built themselves.
type CommandConfig struct {
	Config
	// Target is a gRPC target to call directly, balanced by LB; URL a Spread frontend mode
	// URL. Exactly one is set.
	Target, URL string
	// LB is the load balancing policy for Target: connect.PickFirst or connect.RoundRobin.
	LB string
	// ConnectTimeout bounds the first call, which checks the target is reachable.
	ConnectTimeout time.Duration
	// Stream keeps MaxInFlight long-lived resuming streams open instead of unary calls.
	Stream bool
	// JSON prints the report as JSON.
	JSON bool
	// HedgeDelay hedges Target's calls after this delay (0: none); AttemptTimeout abandons
	// an attempt and retries (0: none); HedgeBudget is the share of calls that may get an
	// extra attempt.
	HedgeDelay, AttemptTimeout time.Duration
	HedgeBudget                float64
}

// DefaultCommandConfig returns `spread load`'s defaults, declared once.
func DefaultCommandConfig() CommandConfig {
	return CommandConfig{Config: DefaultConfig(), LB: connect.RoundRobin, ConnectTimeout: 5 * time.Second, HedgeBudget: 0.1}
}

// RegisterFlags binds c's fields to flags in fs, with c's current values as defaults. Call
// Parsed after fs.Parse.
func (c *CommandConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Target, "target", c.Target, "gRPC target to call directly")
	fs.StringVar(&c.URL, "url", c.URL, "Spread frontend mode URL to call (http://host:port/call/{mode})")
	fs.StringVar(&c.LB, "lb", c.LB, "load balancing policy for --target: pick_first or round_robin")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "offered calls per second (> 0)")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "how long to offer load (> 0)")
	fs.IntVar(&c.MaxCalls, "max-calls", c.MaxCalls, "stop after this many calls (0: only --duration bounds the run)")
	fs.IntVar(&c.MaxInFlight, "concurrency", c.MaxInFlight, fmt.Sprintf("most calls in flight (with --stream: how many streams, default %d)", DefaultStreams))
	fs.DurationVar(&c.Window, "window", c.Window, "width of the per-pod count windows")
	fs.DurationVar(&c.CallTimeout, "call-timeout", c.CallTimeout, "deadline of each call")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", c.ConnectTimeout, "bound on the first call that checks the target is reachable")
	fs.BoolVar(&c.Stream, "stream", c.Stream, "long-lived resuming SayHelloStream streams instead of unary calls (--target only)")
	fs.BoolVar(&c.JSON, "json", c.JSON, "print the report as JSON")
	fs.DurationVar(&c.HedgeDelay, "hedge-delay", c.HedgeDelay, "--target: hedge the echo calls (idempotent) after this delay, adaptive from the observed p95 (0: no hedging)")
	fs.DurationVar(&c.AttemptTimeout, "attempt-timeout", c.AttemptTimeout, "--target: abandon an attempt after this and retry on another pod (0: none)")
	fs.Float64Var(&c.HedgeBudget, "hedge-budget", c.HedgeBudget, "--target: share of calls that may get an extra attempt (hedge or retry), plus a burst of 10")
}

// Parsed applies the defaults that depend on which flags fs's command line set: with
// --stream and no --concurrency, DefaultStreams streams.
func (c *CommandConfig) Parsed(fs *flag.FlagSet) {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "concurrency" })
	if c.Stream && !set {
		c.MaxInFlight = DefaultStreams
	}
}

// Hedged reports whether calls are hedged or retried.
func (c CommandConfig) Hedged() bool { return c.HedgeDelay != 0 || c.AttemptTimeout != 0 }

// Validate reports c's first invalid setting, naming its flag.
func (c CommandConfig) Validate() error {
	if (c.Target == "") == (c.URL == "") {
		return errors.New("give exactly one of --target (a gRPC target) and --url (a frontend mode URL)")
	}
	if c.LB != connect.PickFirst && c.LB != connect.RoundRobin {
		return fmt.Errorf("--lb %q: want %s or %s", c.LB, connect.PickFirst, connect.RoundRobin)
	}
	if c.Stream && c.URL != "" {
		return errors.New("--stream needs --target: a frontend answers each HTTP request with its own short stream")
	}
	if c.MaxInFlight < 1 {
		return fmt.Errorf("--concurrency %d: want 1 or more", c.MaxInFlight)
	}
	if err := c.Config.Validate(); err != nil {
		return err
	}
	if c.Hedged() && c.URL != "" {
		return errors.New("--hedge-delay and --attempt-timeout need --target: a frontend mode makes its own calls")
	}
	if c.HedgeDelay < 0 || c.AttemptTimeout < 0 {
		return fmt.Errorf("--hedge-delay %v, --attempt-timeout %v: want 0 (off) or more", c.HedgeDelay, c.AttemptTimeout)
	}
	if math.IsNaN(c.HedgeBudget) || c.HedgeBudget < 0 || c.HedgeBudget > 1 {
		return fmt.Errorf("--hedge-budget %v: want a share from 0 to 1", c.HedgeBudget)
	}
	if c.ConnectTimeout <= 0 {
		return fmt.Errorf("--connect-timeout %v: want more than 0", c.ConnectTimeout)
	}
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !strings.HasPrefix(u.Path, "/call/") {
			return fmt.Errorf("--url %q: want a frontend mode URL like http://127.0.0.1:8081/call/headless", c.URL)
		}
	}
	return nil
}
