package hedge

import (
	"context"
	"sync"
	"sync/atomic"
)

// call is the state the attempts of one call share with the picker.
type call struct {
	mu        sync.Mutex
	addrs     []string // pods picked for the call's attempts, in order
	lb        *Policy  // the method's policy from the balancer's config, if any
	lbSeen    bool
	pickedOne chan struct{} // closed at the first pick
	once      sync.Once
}

func newCall() *call { return &call{pickedOne: make(chan struct{})} }

func (c *call) tried(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.addrs {
		if a == addr {
			return true
		}
	}
	return false
}

// setLBPolicy records the balancer's policy for the method, at the call's first pick.
func (c *call) setLBPolicy(ps policies, method string) {
	c.mu.Lock()
	if !c.lbSeen {
		c.lbSeen = true
		if p, ok := ps.lookup(method); ok {
			c.lb = &p
		}
	}
	c.mu.Unlock()
	c.once.Do(func() { close(c.pickedOne) })
}

func (c *call) lbPolicy() (Policy, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lb == nil {
		return Policy{}, false
	}
	return *c.lb, true
}

// attempt is one attempt of a call.
type attempt struct {
	call *call
	mu   sync.Mutex
	addr string
	same bool // sent to a pod already tried, as no other was available
	// outrun is set (before the attempt is cancelled) when an attempt sent earlier won:
	// this one lost no race of its own, and the balancer is told it succeeded rather than
	// failed, so that outlier detection does not eject a healthy pod for the hedges it was
	// sent and did not need. An attempt overtaken by a later one is reported as failed.
	outrun atomic.Bool
}

func (a *attempt) picked(addr string, same bool) {
	a.call.mu.Lock()
	a.call.addrs = append(a.call.addrs, addr)
	a.call.mu.Unlock()
	a.mu.Lock()
	a.addr, a.same = addr, same
	a.mu.Unlock()
}

func (a *attempt) pick() (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.addr, a.same
}

type attemptKey struct{}

func withAttempt(ctx context.Context, a *attempt) context.Context {
	return context.WithValue(ctx, attemptKey{}, a)
}

func attemptFrom(ctx context.Context) *attempt {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	return a
}
