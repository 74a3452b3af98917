package fairshare

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a Server.
type Option func(*options) error

type options struct {
	name       string
	peers      Peers
	policy     Policy
	interval   time.Duration
	jitter     float64
	grace      time.Duration
	maxRefuse  int
	now        func() time.Time
	log        *slog.Logger
	registerer prometheus.Registerer
}

func defaultOptions() options {
	return options{
		policy:    DefaultPolicy(),
		interval:  5 * time.Second,
		jitter:    0.2,
		grace:     30 * time.Second,
		maxRefuse: 8,
		now:       time.Now,
		log:       slog.New(slog.DiscardHandler),
	}
}

// WithName names this backend as its peers know it (its pod name). Required with WithPeers.
func WithName(name string) Option {
	return func(o *options) error { o.name = name; return nil }
}

// WithPeers sets where the peers' connection counts come from. Without peers the Server
// never sheds: it cannot know the total.
func WithPeers(p Peers) Option {
	return func(o *options) error { o.peers = p; return nil }
}

// WithPolicy sets the decision's bounds (see Policy; zero fields keep their defaults).
func WithPolicy(p Policy) Option {
	return func(o *options) error {
		if p.Tolerance < 0 || p.MaxFraction < 0 || p.MaxFraction > 1 || p.MaxPerRound < 0 || p.MinAge < 0 {
			return fmt.Errorf("fairshare: policy %+v: tolerance, fraction (≤1), per-round and min age must not be negative", p)
		}
		o.policy = p.withDefaults()
		return nil
	}
}

// WithInterval sets the time between rounds (default 5s), each jittered by ±jitter (default
// 0.2) so that pods do not act in lockstep.
func WithInterval(d time.Duration, jitter float64) Option {
	return func(o *options) error {
		if d <= 0 || jitter < 0 || jitter >= 1 {
			return fmt.Errorf("fairshare: interval %v must be positive and jitter %v in [0, 1)", d, jitter)
		}
		o.interval, o.jitter = d, jitter
		return nil
	}
}

// WithGrace bounds how long a shed connection's calls may run after its GOAWAY (default
// 30s); then they are cancelled.
func WithGrace(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return errors.New("fairshare: grace must be positive")
		}
		o.grace = d
		return nil
	}
}

// WithMaxRefusals bounds the new connections turned away per round (default 8; 0 never
// turns any away, and then every move is a shed).
func WithMaxRefusals(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return errors.New("fairshare: max refusals must not be negative")
		}
		o.maxRefuse = n
		return nil
	}
}

// WithClock injects the time source (default time.Now), for tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) error { o.now = now; return nil }
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithRegisterer registers the Server's metrics (spread_fairshare_*) with r.
func WithRegisterer(r prometheus.Registerer) Option {
	return func(o *options) error { o.registerer = r; return nil }
}
