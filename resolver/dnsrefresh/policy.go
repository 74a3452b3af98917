package dnsrefresh

import (
	"math/rand/v2"
	"slices"
	"time"
)

// timing is the part of the config that decides when to look up again.
type timing struct {
	interval       time.Duration
	minInterval    time.Duration
	emptyThreshold int
}

// decision is what to do after one lookup.
type decision struct {
	push   bool     // hand addrs to the ClientConn
	addrs  []string // the new address list, when push
	report bool     // report the lookup error through ReportError (no state to keep yet)
	kept   bool     // the lookup failed or was an unconfirmed empty: the old list stays
	wait   time.Duration
}

// tracker holds what the resolver goroutine knows between lookups and decides, as a pure
// function of the answers seen, what to push and when to look up next. It is owned by that one
// goroutine.
type tracker struct {
	timing
	pushed   bool     // a state has been handed to the ClientConn
	current  []string // the last state pushed
	empties  int      // consecutive authoritative empty answers
	failures int      // consecutive failed lookups (or rejected pushes)
}

// observe takes the answer of one lookup, rendered as sorted "ip:port" addrs.
//
// Rules (docs/dns-refresh.md explains them):
//   - addresses: push if they differ from the last state; next lookup after the TTL, between
//     the min interval and the interval.
//   - authoritative empty: push at once if nothing was pushed yet or the list is already empty;
//     otherwise only on the emptyThreshold-th empty answer in a row, confirming after the min
//     interval meanwhile.
//   - failure: keep the last state (report the error if there is none) and retry with
//     exponential backoff from the min interval up to the interval.
func (t *tracker) observe(a answer, addrs []string) decision {
	switch a.kind {
	case found:
		t.failures, t.empties = 0, 0
		return t.set(addrs, t.ttlWait(a.ttl))
	case empty:
		t.failures = 0
		t.empties++
		if !t.pushed || len(t.current) == 0 || t.empties >= t.emptyThreshold {
			return t.set([]string{}, t.ttlWait(a.ttl))
		}
		return decision{kept: true, wait: t.minInterval}
	default:
		t.failures++
		return decision{report: !t.pushed, kept: t.pushed, wait: t.backoff()}
	}
}

func (t *tracker) set(addrs []string, wait time.Duration) decision {
	if t.pushed && slices.Equal(t.current, addrs) {
		return decision{wait: wait}
	}
	t.pushed, t.current = true, addrs
	return decision{push: true, addrs: addrs, wait: wait}
}

// rejected records that the ClientConn returned an error for the last push: the next lookup
// pushes again, after a backoff, as the resolver.ClientConn contract asks.
func (t *tracker) rejected() time.Duration {
	t.pushed = false
	t.failures++
	return t.backoff()
}

// ttlWait is min(interval, ttl), at least the min interval; the interval if the TTL is unknown.
func (t *tracker) ttlWait(ttl time.Duration) time.Duration {
	if ttl < 0 {
		return t.interval
	}
	return min(t.interval, max(ttl, t.minInterval))
}

// backoff is minInterval·2^(failures-1), at most the interval.
func (t *tracker) backoff() time.Duration {
	d := t.minInterval
	for i := 1; i < t.failures && d < t.interval; i++ {
		d *= 2
	}
	return min(d, t.interval)
}

// jitter shortens d by up to 10% so that clients started together drift apart, never below
// floor. It only ever shortens: a refresh is never later than the TTL or interval promises.
func jitter(d, floor time.Duration) time.Duration {
	if d <= floor {
		return floor
	}
	return max(d-rand.N(d/10+1), floor)
}
