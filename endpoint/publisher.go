package endpoint

import (
	"context"
	"sync"
)

// Publisher holds the current Set of one Service port and hands it to subscribers: each new
// subscriber first gets the current set (once one has been published), then every later
// change. Delivery coalesces: a slow subscriber skips intermediate sets and always ends on the
// newest one. The zero Publisher is ready to use; its methods may be called concurrently.
//
// A Publisher is the per-key building block of a Source: a source keeps one Publisher per Key
// it follows, publishes into it, and implements Source.Subscribe with Publisher.Subscribe,
// which keeps every delivery promise of the Source contract.
type Publisher struct {
	mu      sync.Mutex
	cur     Set
	version uint64 // 0: nothing published yet
	subs    map[*subscription]struct{}
}

type subscription struct {
	notify chan struct{} // capacity 1: "something newer is there"
}

// Publish makes s the current set and notifies every subscriber. Publishing a set equal to the
// current one is a no-op, so sources may publish on every event.
func (p *Publisher) Publish(s Set) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.version > 0 && p.cur.Equal(s) {
		return
	}
	if s == nil {
		s = Set{}
	}
	p.cur = s
	p.version++
	for sub := range p.subs {
		select {
		case sub.notify <- struct{}{}:
		default: // already notified; it will read the newest set
		}
	}
}

// Current returns the current set and whether any set has been published yet.
func (p *Publisher) Current() (Set, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur, p.version > 0
}

// Subscribe calls fn with the current set (if any; else with the first one published), then
// with each newer set, from one goroutine, until ctx is done. It returns at once, with the
// same results as Source.Subscribe: an error (ctx's cause) and no subscription when ctx is
// already done, else wait, which blocks until the delivery goroutine has exited (call it
// after cancelling ctx). fn must not modify the set.
func (p *Publisher) Subscribe(ctx context.Context, fn func(Set)) (wait func(), err error) {
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	sub := &subscription{notify: make(chan struct{}, 1)}
	p.mu.Lock()
	if p.subs == nil {
		p.subs = make(map[*subscription]struct{})
	}
	p.subs[sub] = struct{}{}
	if p.version > 0 {
		sub.notify <- struct{}{}
	}
	p.mu.Unlock()

	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			p.mu.Lock()
			delete(p.subs, sub)
			p.mu.Unlock()
		}()
		var seen uint64
		for {
			select {
			case <-ctx.Done():
				return
			case <-sub.notify:
			}
			if ctx.Err() != nil {
				return // both were ready: never deliver after ctx is done
			}
			p.mu.Lock()
			s, v := p.cur, p.version
			p.mu.Unlock()
			if v == seen {
				continue
			}
			seen = v
			fn(s)
		}
	}()
	return func() { <-done }, nil
}
