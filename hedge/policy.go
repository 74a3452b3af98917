package hedge

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// Policy says how the calls of one method are attempted. The zero Policy sends one attempt
// and never retries: a method is retried or hedged only when it is declared Idempotent.
type Policy struct {
	// Idempotent declares that the method may run more than once on the servers with the
	// same effect as once (a read, or a write keyed by a request id). Only idempotent
	// methods get per-attempt timeouts, retries and hedges; any other method is passed
	// through untouched and attempted exactly once (grpc-go's own transparent retry of a
	// request that never left the client still applies).
	Idempotent bool
	// MaxAttempts bounds the attempts of one call, the first included (default 3 when the
	// method is idempotent; at most 5, as in gRFC A6).
	MaxAttempts int
	// PerAttemptTimeout abandons an attempt that has not answered (unary) or sent its first
	// message (server streaming) within it and tries another pod (0: none; the call's own
	// deadline still applies). When no other attempt may be sent (MaxAttempts reached, or
	// the budget spent), the attempt is kept and the call waits for it until its deadline (trying a retry
	// again after each further PerAttemptTimeout, in case the budget has a token again).
	PerAttemptTimeout time.Duration
	// HedgeDelay sends another attempt, to another pod, when no answer came within it of
	// the last attempt; the first answer wins and the others are cancelled (0: no hedging,
	// only retries after a failure or a per-attempt timeout).
	HedgeDelay time.Duration
	// AdaptiveHedge replaces HedgeDelay, once enough calls have been seen, by the observed
	// 95th percentile latency of the method's winning attempts, bounded by MinHedgeDelay
	// and MaxHedgeDelay. HedgeDelay is used until then (it must be set).
	AdaptiveHedge bool
	// MinHedgeDelay and MaxHedgeDelay bound the adaptive delay (defaults 5 ms, so that
	// scheduling jitter of sub-millisecond calls does not spend the budget, and
	// PerAttemptTimeout, or 1 s without one).
	MinHedgeDelay, MaxHedgeDelay time.Duration
	// RetryableCodes are the status codes after which another attempt is made (default
	// Unavailable). A per-attempt timeout is always retryable. Any other code ends the call.
	RetryableCodes []codes.Code
}

// maxAttemptsLimit caps MaxAttempts, as gRFC A6 caps maxAttempts.
const maxAttemptsLimit = 5

// Validate reports the first invalid field.
func (p Policy) Validate() error {
	switch {
	case p.MaxAttempts < 0 || p.MaxAttempts > maxAttemptsLimit:
		return fmt.Errorf("hedge: max attempts %d: want 0 (default) to %d", p.MaxAttempts, maxAttemptsLimit)
	case p.PerAttemptTimeout < 0 || p.HedgeDelay < 0 || p.MinHedgeDelay < 0 || p.MaxHedgeDelay < 0:
		return errors.New("hedge: per-attempt timeout and hedge delays must not be negative")
	case p.AdaptiveHedge && p.HedgeDelay == 0:
		return errors.New("hedge: adaptive hedging needs a HedgeDelay to start with")
	case p.MaxHedgeDelay > 0 && p.MinHedgeDelay > p.MaxHedgeDelay:
		return fmt.Errorf("hedge: min hedge delay %v above max %v", p.MinHedgeDelay, p.MaxHedgeDelay)
	}
	for _, c := range p.RetryableCodes {
		if c == codes.OK {
			return errors.New("hedge: OK is not a retryable code")
		}
	}
	return nil
}

// withDefaults fills the defaults of an idempotent policy.
func (p Policy) withDefaults() Policy {
	if !p.Idempotent {
		return Policy{}
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = 3
	}
	if len(p.RetryableCodes) == 0 {
		p.RetryableCodes = []codes.Code{codes.Unavailable}
	}
	if p.AdaptiveHedge {
		if p.MinHedgeDelay == 0 {
			p.MinHedgeDelay = 5 * time.Millisecond
		}
		if p.MaxHedgeDelay == 0 {
			p.MaxHedgeDelay = p.PerAttemptTimeout
			if p.MaxHedgeDelay == 0 {
				p.MaxHedgeDelay = time.Second
			}
		}
	}
	return p
}

func (p Policy) retryable(c codes.Code) bool {
	for _, r := range p.RetryableCodes {
		if r == c {
			return true
		}
	}
	return false
}

// methodKey splits a policy name: "/pkg.Service/Method", "pkg.Service/Method",
// "pkg.Service" or "/pkg.Service/" (every method of the service).
func methodKey(name string) (string, error) {
	n := strings.TrimPrefix(name, "/")
	svc, m, _ := strings.Cut(n, "/")
	if svc == "" || strings.Contains(m, "/") {
		return "", fmt.Errorf("hedge: method %q: want /package.Service/Method or package.Service", name)
	}
	if m == "" {
		return "/" + svc + "/", nil
	}
	return "/" + svc + "/" + m, nil
}

// policies maps full method names, then service prefixes ("/svc/"), to policies.
type policies map[string]Policy

func (ps policies) lookup(fullMethod string) (Policy, bool) {
	if p, ok := ps[fullMethod]; ok {
		return p, true
	}
	if i := strings.LastIndex(fullMethod, "/"); i > 0 {
		if p, ok := ps[fullMethod[:i+1]]; ok {
			return p, true
		}
	}
	return Policy{}, false
}

// Budget is a token bucket bounding the extra attempts (hedges and retries) to a share of
// the calls, so that a sick fleet is not hit twice as hard: every call adds Ratio tokens
// (up to Burst), every extra attempt takes one, and none is sent when the bucket holds less
// than one. Over any stretch of calls, extra attempts ≤ Burst + Ratio × calls.
// This is gRFC A6's retry throttling turned into a hard bound on the extra load.
type Budget struct {
	// Ratio is the share of calls that may get an extra attempt (default 0.1).
	Ratio float64
	// Burst is the bucket's size and its content at the start (default 10).
	Burst float64
}

func (b Budget) validate() error {
	if math.IsNaN(b.Ratio) || math.IsNaN(b.Burst) || b.Ratio < 0 || b.Burst < 0 || math.IsInf(b.Ratio, 0) || math.IsInf(b.Burst, 0) {
		return fmt.Errorf("hedge: budget ratio %v, burst %v: want finite values, not negative", b.Ratio, b.Burst)
	}
	return nil
}

// bucket is the running Budget. Its methods may be called concurrently.
type bucket struct {
	mu           sync.Mutex
	tokens       float64
	ratio, burst float64
}

func newBucket(b Budget) *bucket { return &bucket{tokens: b.Burst, ratio: b.Ratio, burst: b.Burst} }

// deposit credits one call.
func (b *bucket) deposit() {
	b.mu.Lock()
	b.tokens = min(b.tokens+b.ratio, b.burst)
	b.mu.Unlock()
}

// take takes a token for one extra attempt, if there is one.
func (b *bucket) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
