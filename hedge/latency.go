package hedge

import (
	"slices"
	"sync"
	"time"
)

// Sizes of the adaptive hedge delay's window.
const (
	latencyWindow  = 512 // winning attempts remembered per method
	latencyMinSeen = 32  // winning attempts seen before the observed p95 replaces HedgeDelay
	latencyEvery   = 16  // the p95 is recomputed every latencyEvery samples
)

// latencies keeps the recent winning-attempt latencies of one method and their 95th
// percentile. Its methods may be called concurrently.
type latencies struct {
	mu   sync.Mutex
	ring []time.Duration
	next int
	seen int
	p95  time.Duration
	tmp  []time.Duration
}

func (l *latencies) observe(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ring) < latencyWindow {
		l.ring = append(l.ring, d)
	} else {
		l.ring[l.next] = d
		l.next = (l.next + 1) % latencyWindow
	}
	l.seen++
	if l.seen >= latencyMinSeen && l.seen%latencyEvery == 0 {
		l.tmp = append(l.tmp[:0], l.ring...)
		slices.Sort(l.tmp)
		l.p95 = l.tmp[(len(l.tmp)*95)/100]
	}
}

// delay returns the hedge delay: the observed p95 within [lo, hi], or start before enough
// attempts were seen.
func (l *latencies) delay(start, lo, hi time.Duration) time.Duration {
	l.mu.Lock()
	p, ok := l.p95, l.seen >= latencyMinSeen && l.p95 > 0
	l.mu.Unlock()
	if !ok {
		return start
	}
	return min(max(p, lo), hi)
}
