package load

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
)

// StreamFunc runs one long-lived stream until it completes, fails or ctx ends, calling got
// with the answering pod of every message. got may be called from one goroutine at a time
// per stream.
type StreamFunc func(ctx context.Context, got func(pod string)) error

// MaxStreams bounds RunStreams' stream count.
const MaxStreams = 10000

// RunStreams keeps streams long-lived streams open for cfg.Duration (or until cfg.MaxCalls
// messages arrived, or ctx ends) and records every message as a Sample: Pod is the pod that
// sent it, Latency the gap since the stream's previous message (or since it was opened).
// A stream that ends is re-opened (after a failure, the failure is recorded and the stream
// waits briefly first), so the run is bounded by time and count only. cfg.Rate is not used
// for pacing: the server paces the messages (the caller sets the interval in open).
func RunStreams(ctx context.Context, cfg Config, streams int, open StreamFunc, opts ...Option) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if streams < 1 || streams > MaxStreams {
		return nil, fmt.Errorf("load: %d streams: want 1 to %d", streams, MaxStreams)
	}
	if open == nil {
		return nil, errors.New("load: no stream function")
	}
	cfg.defaults()
	o := options{clock: wallClock{}}
	for _, opt := range opts {
		opt(&o)
	}
	clk := o.clock
	start := clk.Now()
	rec := newRecorder(cfg, start, o.observers)
	// Cancelled, not given a deadline: a deadline would travel to the servers (grpc-timeout),
	// whose timers may end a stream with DEADLINE_EXCEEDED a moment before ours fires, which
	// would count as a failure.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	endTimer := time.AfterFunc(cfg.Duration, cancel)
	defer endTimer.Stop()
	var received atomic.Int64
	stopped := StoppedDuration
	var stopOnce sync.Once
	stop := func(why string) { stopOnce.Do(func() { stopped = why; cancel() }) }
	var wg sync.WaitGroup
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				last := clk.Now()
				err := open(runCtx, func(pod string) {
					now := clk.Now()
					n := received.Add(1)
					if cfg.MaxCalls > 0 && n > int64(cfg.MaxCalls) {
						stop(StoppedMaxCalls)
						return
					}
					rec.record(Sample{At: now, Pod: pod, Code: codes.OK, Latency: now.Sub(last)})
					last = now
					if cfg.MaxCalls > 0 && n == int64(cfg.MaxCalls) {
						stop(StoppedMaxCalls)
					}
				})
				if runCtx.Err() != nil {
					return
				}
				if err != nil {
					now := clk.Now()
					rec.record(Sample{At: now, Code: codeOf(err), Latency: now.Sub(last)})
					clk.SleepUntil(runCtx, now.Add(100*time.Millisecond))
				}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		stopped = StoppedCanceled
	}
	end := clk.Now()
	r := rec.report(stopped, 0, end, end, end)
	r.Scheduled = r.Started
	if r.Started > 0 {
		r.AchievedRate = float64(r.Started) / end.Sub(start).Seconds()
	}
	return r, nil
}
