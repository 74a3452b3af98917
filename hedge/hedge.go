package hedge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Kind says why an attempt was sent.
type Kind string

// The kinds of attempts.
const (
	// First is a call's first attempt.
	First Kind = "first"
	// Hedge was sent because no answer came within the hedge delay.
	Hedge Kind = "hedge"
	// Retry was sent after an attempt failed with a retryable code or timed out.
	Retry Kind = "retry"
)

// AttemptInfo describes one attempt of a finished call.
type AttemptInfo struct {
	Kind Kind
	// Addr is the pod (address) the attempt was sent to, as the spread_hedge balancer picked
	// it; empty when the channel does not run spread_hedge or the attempt was never picked.
	Addr string
	// SamePod is set when the attempt went to a pod the call had already tried because no
	// other was available.
	SamePod bool
	// Start is when the attempt was sent, from the start of the call.
	Start time.Duration
	// TimedOut is set when the per-attempt timeout abandoned it.
	TimedOut bool
	// Err is the attempt's error, if it ended before the call (nil for the winner and for
	// attempts cancelled because another won).
	Err error
}

// CallInfo describes one finished call, for an Observer.
type CallInfo struct {
	Method   string
	Attempts []AttemptInfo
	// Winner indexes the attempt whose answer the call returned (-1: none did).
	Winner int
	// Err is the call's error.
	Err error
	// Duration is how long the call took (for streams: until the first message).
	Duration time.Duration
	// BudgetExhausted is set when an extra attempt was wanted but the budget had no token.
	BudgetExhausted bool
}

// Stats are a Client's running totals.
type Stats struct {
	// Calls counts calls (idempotent or not) that went through the interceptors.
	Calls int64
	// Attempts counts attempts sent, first ones included.
	Attempts int64
	// Hedges and Retries count the extra attempts by kind.
	Hedges, Retries int64
	// HedgesWon and RetriesWon count calls answered by a hedge or a retry.
	HedgesWon, RetriesWon int64
	// BudgetExhausted counts calls that wanted an extra attempt the budget had no token for
	// (once per call; the call tries again at its next hedge or per-attempt timeout).
	BudgetExhausted int64
}

// Extra is the number of extra attempts (hedges and retries).
func (s Stats) Extra() int64 { return s.Hedges + s.Retries }

// AttemptsPerCall is Attempts / Calls (0 without calls).
func (s Stats) AttemptsPerCall() float64 {
	if s.Calls == 0 {
		return 0
	}
	return float64(s.Attempts) / float64(s.Calls)
}

// Option configures a Client.
type Option func(*options) error

type options struct {
	methods  policies
	def      *Policy
	budget   Budget
	reg      prometheus.Registerer
	observer func(CallInfo)
}

// WithPolicy sets the policy of one method ("/package.Service/Method") or of every method of
// a service ("package.Service"). It takes precedence over WithDefaultPolicy and over a
// policy the spread_hedge balancer carries in the service config.
func WithPolicy(method string, p Policy) Option {
	return func(o *options) error {
		k, err := methodKey(method)
		if err != nil {
			return err
		}
		if err := p.Validate(); err != nil {
			return fmt.Errorf("hedge: method %s: %w", method, err)
		}
		o.methods[k] = p
		return nil
	}
}

// WithDefaultPolicy sets the policy of the methods WithPolicy does not name. Without it,
// such methods take their policy from the service config (spread_hedge), or are attempted
// once.
func WithDefaultPolicy(p Policy) Option {
	return func(o *options) error {
		if err := p.Validate(); err != nil {
			return err
		}
		o.def = &p
		return nil
	}
}

// WithBudget sets the budget bounding the extra attempts (default Ratio 0.1, Burst 10).
func WithBudget(b Budget) Option {
	return func(o *options) error {
		if err := b.validate(); err != nil {
			return err
		}
		o.budget = b
		return nil
	}
}

// WithRegisterer registers the Client's metrics with r (default: none are registered).
func WithRegisterer(r prometheus.Registerer) Option {
	return func(o *options) error { o.reg = r; return nil }
}

// WithObserver calls fn after each call handled by the policy engine (idempotent methods),
// with what each of its attempts did. fn must be quick; it may be called concurrently.
func WithObserver(fn func(CallInfo)) Option {
	return func(o *options) error { o.observer = fn; return nil }
}

// Client holds the policies, the budget and the metrics shared by the interceptors of one
// or more channels. Its methods may be called concurrently.
type Client struct {
	o      options
	bucket *bucket
	lat    sync.Map // method → *latencies
	m      metrics

	calls, attempts, hedges, retries, hedgesWon, retriesWon, exhausted atomic.Int64
}

// New returns a Client.
func New(opts ...Option) (*Client, error) {
	o := options{methods: policies{}, budget: Budget{Ratio: 0.1, Burst: 10}}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	c := &Client{o: o, bucket: newBucket(o.budget), m: newMetrics()}
	if o.reg != nil {
		if err := c.m.register(o.reg); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// DialOptions returns the dial options installing both interceptors.
func (c *Client) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(c.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(c.StreamClientInterceptor()),
	}
}

// Stats returns the running totals.
func (c *Client) Stats() Stats {
	return Stats{
		Calls: c.calls.Load(), Attempts: c.attempts.Load(), Hedges: c.hedges.Load(), Retries: c.retries.Load(),
		HedgesWon: c.hedgesWon.Load(), RetriesWon: c.retriesWon.Load(), BudgetExhausted: c.exhausted.Load(),
	}
}

// goPolicy returns the Go-option policy for method, if any.
func (c *Client) goPolicy(method string) (Policy, bool) {
	if p, ok := c.o.methods.lookup(method); ok {
		return p, true
	}
	if c.o.def != nil {
		return *c.o.def, true
	}
	return Policy{}, false
}

func (c *Client) latencies(method string) *latencies {
	if l, ok := c.lat.Load(method); ok {
		return l.(*latencies)
	}
	l, _ := c.lat.LoadOrStore(method, &latencies{})
	return l.(*latencies)
}

// attemptFunc runs one attempt under ctx and returns its outcome.
type attemptFunc func(ctx context.Context) (any, error)

// outcome is what one attempt returned.
type outcome struct {
	n   int
	val any
	err error
}

// live is an attempt in flight.
type live struct {
	a        *attempt
	kind     Kind
	start    time.Time
	deadline time.Time // per-attempt timeout (zero: none yet)
	cancel   context.CancelFunc
	done     bool // ended, or abandoned by us
	timedOut bool
	err      error
}

// errAttemptTimeout is the error of an attempt abandoned by its per-attempt timeout.
var errAttemptTimeout = status.Error(codes.DeadlineExceeded, "hedge: per-attempt timeout")

// run sends the attempts of one call until one answers, following the Go policy pol (if
// known) or the policy the balancer finds for the method at the first pick. It returns the
// winner's value and the function releasing the winner's context.
func (c *Client) run(ctx context.Context, method string, pol Policy, known bool, do attemptFunc) (any, context.CancelFunc, error) {
	c.calls.Add(1)
	c.m.calls.WithLabelValues(method).Inc()
	c.bucket.deposit()
	cl := newCall()
	begin := time.Now()
	results := make(chan outcome, maxAttemptsLimit)
	var atts []*live
	alive := 0
	startAttempt := func(kind Kind) {
		a := &attempt{call: cl}
		actx, cancel := context.WithCancel(withAttempt(ctx, a))
		l := &live{a: a, kind: kind, start: time.Now(), cancel: cancel}
		if known && pol.PerAttemptTimeout > 0 {
			l.deadline = l.start.Add(pol.PerAttemptTimeout)
		}
		n := len(atts)
		atts = append(atts, l)
		alive++
		c.attempts.Add(1)
		c.m.attempts.WithLabelValues(method, string(kind)).Inc()
		switch kind {
		case Hedge:
			c.hedges.Add(1)
		case Retry:
			c.retries.Add(1)
		}
		go func() {
			v, err := do(actx)
			results <- outcome{n: n, val: v, err: err}
		}()
	}
	exhausted := false
	extra := func(kind Kind) bool {
		if len(atts) >= pol.MaxAttempts {
			return false
		}
		if !c.bucket.take() {
			if !exhausted { // counted once per call
				exhausted = true
				c.exhausted.Add(1)
				c.m.exhausted.WithLabelValues(method).Inc()
			}
			return false
		}
		startAttempt(kind)
		return true
	}
	var hedgeAt time.Time // zero: no (more) hedges
	hedgeDelay := func() time.Duration {
		if pol.AdaptiveHedge {
			return c.latencies(method).delay(pol.HedgeDelay, pol.MinHedgeDelay, pol.MaxHedgeDelay)
		}
		return pol.HedgeDelay
	}
	armHedge := func(from time.Time) {
		hedgeAt = time.Time{}
		if pol.HedgeDelay > 0 && len(atts) < pol.MaxAttempts {
			hedgeAt = from.Add(hedgeDelay())
		}
	}
	if known {
		pol = pol.withDefaults()
	}
	startAttempt(First)
	picked := cl.pickedOne
	if known {
		picked = nil
		armHedge(begin)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var lastErr error
	winner := -1

	finish := func(err error) {
		for i, l := range atts {
			if i != winner {
				if winner >= 0 && i > winner {
					l.a.outrun.Store(true)
				}
				l.cancel()
			}
		}
		if c.o.observer != nil {
			info := CallInfo{Method: method, Winner: winner, Err: err, Duration: time.Since(begin), BudgetExhausted: exhausted}
			for _, l := range atts {
				addr, same := l.a.pick()
				info.Attempts = append(info.Attempts, AttemptInfo{
					Kind: l.kind, Addr: addr, SamePod: same, Start: l.start.Sub(begin), TimedOut: l.timedOut, Err: l.err,
				})
			}
			c.o.observer(info)
		}
	}

	for {
		// The next event: the earliest per-attempt deadline or hedge.
		var next time.Time
		for _, l := range atts {
			if !l.done && !l.deadline.IsZero() && (next.IsZero() || l.deadline.Before(next)) {
				next = l.deadline
			}
		}
		if !hedgeAt.IsZero() && (next.IsZero() || hedgeAt.Before(next)) {
			next = hedgeAt
		}
		var tick <-chan time.Time
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), 0))
			tick = timer.C
		}
		select {
		case <-ctx.Done():
			err := status.FromContextError(ctx.Err()).Err()
			finish(err)
			return nil, nil, err
		case <-picked:
			picked = nil
			if p, ok := cl.lbPolicy(); ok && p.Idempotent {
				pol, known = p.withDefaults(), true
				if pol.PerAttemptTimeout > 0 {
					atts[0].deadline = atts[0].start.Add(pol.PerAttemptTimeout)
				}
				armHedge(begin)
			}
			// else: not idempotent, or not spread_hedge: the one attempt is the call.
			if !known {
				pol = Policy{}.withDefaults()
			}
		case o := <-results:
			l := atts[o.n]
			if l.done { // abandoned by its per-attempt timeout or by the call
				continue
			}
			l.done = true
			alive--
			if o.err == nil {
				winner = o.n
				c.winMetrics(method, l.kind)
				c.latencies(method).observe(time.Since(l.start))
				finish(nil)
				return o.val, l.cancel, nil
			}
			l.err = o.err
			lastErr = o.err
			if !known || !pol.retryable(status.Code(o.err)) || ctx.Err() != nil {
				finish(o.err)
				return nil, nil, o.err
			}
			if extra(Retry) {
				armHedge(time.Now())
				continue
			}
			if alive == 0 {
				finish(lastErr)
				return nil, nil, lastErr
			}
		case <-tick:
			now := time.Now() // not the tick's time: this goroutine may have run late
			for _, l := range atts {
				if l.done || l.deadline.IsZero() || now.Before(l.deadline) {
					continue
				}
				// Abandon the attempt for a retry on another pod; with no retry to send
				// (attempts or budget spent), keep waiting for it rather than fail a call
				// that may still be answered within its own deadline.
				if !extra(Retry) {
					// Try again after another timeout if the budget was what stopped it.
					l.deadline = time.Time{}
					if len(atts) < pol.MaxAttempts {
						l.deadline = now.Add(pol.PerAttemptTimeout)
					}
					continue
				}
				l.done, l.timedOut, l.err = true, true, errAttemptTimeout
				l.cancel()
				alive--
				lastErr = errAttemptTimeout
				armHedge(now)
			}
			if !hedgeAt.IsZero() && !now.Before(hedgeAt) {
				// Sent or not (the budget may have had no token), the next hedge is due a
				// delay later; armHedge stops at MaxAttempts.
				extra(Hedge)
				armHedge(now)
			}
			if alive == 0 {
				finish(lastErr)
				return nil, nil, lastErr
			}
		}
	}
}

func (c *Client) winMetrics(method string, k Kind) {
	c.m.wins.WithLabelValues(method, string(k)).Inc()
	switch k {
	case Hedge:
		c.hedgesWon.Add(1)
	case Retry:
		c.retriesWon.Add(1)
	}
}

// errNotProto is returned for attempt values that are not protobuf messages.
var errNotProto = errors.New("hedge: message is not a protobuf message")
