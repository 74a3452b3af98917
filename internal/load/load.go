// Package load is Spread's open-loop, rate-paced load generator. Call i is due at
// start + i/rate whatever happened to the calls before it, so a slow or frozen backend shows
// up as latency, failures and "dropped" calls (MaxInFlight reached) instead of a silently
// lower offered rate. A run is bounded by duration and, optionally, by count, and stops by
// itself. The Report counts calls per pod overall and per time window, errors by gRPC status
// code, and latency in an HdrHistogram; it is JSON-serialisable.
package load

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// CallFunc makes one call and returns the pod that answered. It is called concurrently,
// with a context bounded by Config.CallTimeout. A failed call returns a gRPC status error
// (other errors count as codes.Unknown; context errors as DeadlineExceeded or Canceled).
type CallFunc func(ctx context.Context) (pod string, err error)

// Defaults of the optional Config fields.
const (
	DefaultMaxInFlight = 256
	DefaultWindow      = time.Second
	DefaultCallTimeout = 5 * time.Second
	// MaxRate bounds Config.Rate; far beyond what one process can drive.
	MaxRate = 1e6
	// MaxWindows bounds how many per-pod count windows one run keeps.
	MaxWindows = 3600
)

// Config describes one run.
type Config struct {
	// Rate is the offered rate in calls per second (> 0).
	Rate float64
	// Duration bounds the run: calls are scheduled only before it ends (> 0).
	Duration time.Duration
	// MaxCalls bounds the number of scheduled calls (0: bounded by Duration only).
	MaxCalls int
	// MaxInFlight bounds concurrent calls (default 256); a call due while that many are in
	// flight is not started and counts as dropped.
	MaxInFlight int
	// Window is the width of the per-pod count windows (default 1s).
	Window time.Duration
	// CallTimeout bounds each call (default 5s), and so the wait for in-flight calls at the end.
	CallTimeout time.Duration
}

// Validate reports the first invalid field, in words a command-line user understands.
func (c Config) Validate() error {
	switch {
	case math.IsNaN(c.Rate):
		return fmt.Errorf("load: rate %v is not a number", c.Rate)
	case math.IsInf(c.Rate, 0):
		return fmt.Errorf("load: rate %v is not a finite number: want more than 0 and at most %v calls/s", c.Rate, MaxRate)
	case c.Rate < 0:
		return fmt.Errorf("load: rate %v calls/s is negative: want more than 0", c.Rate)
	case c.Rate == 0:
		return errors.New("load: rate is 0: want more than 0 calls/s")
	case c.Rate > MaxRate:
		return fmt.Errorf("load: rate %v calls/s is over the maximum %v", c.Rate, MaxRate)
	case c.Duration < 0:
		return fmt.Errorf("load: duration %v is negative: want more than 0", c.Duration)
	case c.Duration == 0:
		return errors.New("load: duration is 0: want more than 0 (every run is bounded in time)")
	case c.MaxCalls < 0:
		return fmt.Errorf("load: max calls %d is negative: want 0 (no count limit) or more", c.MaxCalls)
	case c.MaxInFlight < 0:
		return fmt.Errorf("load: max in flight %d is negative: want 0 (default %d) or more", c.MaxInFlight, DefaultMaxInFlight)
	case c.Window < 0:
		return fmt.Errorf("load: window %v is negative", c.Window)
	case c.CallTimeout < 0:
		return fmt.Errorf("load: call timeout %v is negative", c.CallTimeout)
	}
	if w := c.window(); c.Duration/w > MaxWindows {
		return fmt.Errorf("load: duration %v in windows of %v makes over %d windows: widen the window", c.Duration, w, MaxWindows)
	}
	return nil
}

// DefaultConfig returns the configuration `spread load` starts from, declared once: a run
// needs a Rate and a Duration (zero is an error, not a default); the other fields are the
// values a zero field takes.
func DefaultConfig() Config {
	return Config{Rate: 100, Duration: 10 * time.Second, MaxInFlight: DefaultMaxInFlight, Window: DefaultWindow, CallTimeout: DefaultCallTimeout}
}

func (c Config) window() time.Duration {
	if c.Window > 0 {
		return c.Window
	}
	return DefaultWindow
}

func (c *Config) defaults() {
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	c.Window = c.window()
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultCallTimeout
	}
}

// Sample is one finished call.
type Sample struct {
	// At is when the call started.
	At time.Time
	// Pod answered the call ("" when it failed).
	Pod string
	// Code is the call's gRPC status code (codes.OK on success).
	Code codes.Code
	// Latency is how long the call took.
	Latency time.Duration
}

// Option configures a run beyond its Config.
type Option func(*options)

type options struct {
	clock     Clock
	observers []func(Sample)
}

// WithObserver calls fn with every finished call, one call at a time (never concurrently),
// for live charts. fn must be fast: it holds up the run's bookkeeping.
func WithObserver(fn func(Sample)) Option {
	return func(o *options) { o.observers = append(o.observers, fn) }
}

// WithClock replaces the wall clock (for tests).
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// Stop reasons in Report.Stopped.
const (
	StoppedDuration = "duration"
	StoppedMaxCalls = "max-calls"
	StoppedCanceled = "canceled"
)

// Run offers load at cfg.Rate until cfg.Duration has passed or cfg.MaxCalls calls were
// scheduled, then waits for the calls in flight (each bounded by cfg.CallTimeout) and
// returns the report. When ctx ends early, in-flight calls are cancelled and Run returns
// the report so far, with Stopped set to "canceled", and a nil error: a partial report is a
// result, not a failure. Run returns an error only for an invalid Config.
func Run(ctx context.Context, cfg Config, call CallFunc, opts ...Option) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if call == nil {
		return nil, errors.New("load: no call function")
	}
	cfg.defaults()
	o := options{clock: wallClock{}}
	for _, opt := range opts {
		opt(&o)
	}
	clk := o.clock
	start := clk.Now()
	rec := newRecorder(cfg, start, o.observers)
	planned := Planned(cfg)

	callCtx, cancelCalls := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCalls()
	stopCalls := context.AfterFunc(ctx, cancelCalls) // ctx ending cancels calls in flight
	defer stopCalls()

	sem := make(chan struct{}, cfg.MaxInFlight)
	var wg sync.WaitGroup
	stopped := StoppedDuration
	if cfg.MaxCalls > 0 && planned == cfg.MaxCalls {
		stopped = StoppedMaxCalls
	}
	var lastStart time.Time
	i := 0
loop:
	for i < planned {
		due := start.Add(Due(i, cfg.Rate))
		if err := clk.SleepUntil(ctx, due); err != nil {
			stopped = StoppedCanceled
			break
		}
		// Start every call due by now: after a late wake-up the schedule catches up in a
		// burst instead of drifting.
		now := clk.Now()
		n := min(DueBy(now.Sub(start), cfg.Rate, planned), planned)
		for ; i < n; i++ {
			if ctx.Err() != nil {
				stopped = StoppedCanceled
				break loop
			}
			select {
			case sem <- struct{}{}:
			default:
				rec.drop(start.Add(Due(i, cfg.Rate)))
				continue
			}
			lastStart = clk.Now()
			wg.Add(1)
			go func(at time.Time) {
				defer wg.Done()
				defer func() { <-sem }()
				cctx, cancel := context.WithTimeout(callCtx, cfg.CallTimeout)
				pod, err := call(cctx)
				cancel()
				took := clk.Now().Sub(at)
				rec.record(Sample{At: at, Pod: pod, Code: codeOf(err), Latency: took})
			}(lastStart)
		}
	}
	sendEnd := clk.Now()
	wg.Wait()
	return rec.report(stopped, i, lastStart, sendEnd, clk.Now()), nil
}

// codeOf maps a call's error to its gRPC status code.
func codeOf(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return codes.DeadlineExceeded
	}
	if errors.Is(err, context.Canceled) {
		return codes.Canceled
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return codes.Unknown
}
