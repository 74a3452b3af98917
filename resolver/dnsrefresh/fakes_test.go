package dnsrefresh_test

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/spread-grpc/spread/resolver/dnsrefresh"
)

// fakeClock is a dnsrefresh.Clock that moves only when the test calls Advance. Each NewTimer
// is announced on armed, so a test knows when the resolver has finished a round and waits.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	armed  chan time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_700_000_000, 0), armed: make(chan time.Duration, 1000)}
}

type fakeTimer struct {
	c       chan time.Time
	at      time.Time
	clk     *fakeClock
	pending bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) dnsrefresh.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: make(chan time.Time, 1), at: c.now.Add(d), clk: c, pending: true}
	c.timers = append(c.timers, t)
	c.fireLocked()
	c.armed <- d
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	was := t.pending
	t.pending = false
	return was
}

// Advance moves time forward by d and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fireLocked()
}

func (c *fakeClock) fireLocked() {
	keep := c.timers[:0]
	for _, t := range c.timers {
		switch {
		case !t.pending:
		case !t.at.After(c.now):
			t.pending = false
			t.c <- c.now
		default:
			keep = append(keep, t)
		}
	}
	c.timers = keep
}

// advanceToNext moves time to the earliest pending timer, waiting (at most 10 s) for the
// resolver to arm one if none is pending.
func (c *fakeClock) advanceToNext(t testing.TB) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		var next *fakeTimer
		for _, tm := range c.timers {
			if tm.pending && (next == nil || tm.at.Before(next.at)) {
				next = tm
			}
		}
		if next != nil {
			c.now = next.at
			c.fireLocked()
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		select {
		case <-c.armed:
		case <-timeout:
			t.Fatal("no timer pending within 10s")
		}
	}
}

// nextArmed waits for the resolver to arm its next timer and returns its duration.
func (c *fakeClock) nextArmed(t testing.TB) time.Duration {
	t.Helper()
	select {
	case d := <-c.armed:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("the resolver armed no timer within 10s")
		return 0
	}
}

// noArmed checks that the resolver arms no timer for a short while.
func (c *fakeClock) noArmed(t testing.TB) {
	t.Helper()
	select {
	case d := <-c.armed:
		t.Fatalf("the resolver armed a %v timer, want none", d)
	case <-time.After(100 * time.Millisecond):
	}
}

// fakeCC is a resolver.ClientConn that records what the resolver hands it.
type fakeCC struct {
	resolver.ClientConn // not called; panics if it is
	states              chan resolver.State
	errs                chan error
}

func newFakeCC() *fakeCC {
	return &fakeCC{states: make(chan resolver.State, 100), errs: make(chan error, 100)}
}

type fakeSC struct {
	serviceconfig.Config
	json string
}

func (f *fakeCC) UpdateState(s resolver.State) error { f.states <- s; return nil }
func (f *fakeCC) ReportError(err error)              { f.errs <- err }
func (f *fakeCC) ParseServiceConfig(js string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{Config: fakeSC{json: js}}
}

// nextState waits for the next pushed state and returns its addresses.
func (f *fakeCC) nextState(t testing.TB) []string {
	t.Helper()
	select {
	case s := <-f.states:
		var out []string
		for _, e := range s.Endpoints {
			out = append(out, e.Addresses[0].Addr)
		}
		if out == nil {
			out = []string{}
		}
		return out
	case err := <-f.errs:
		t.Fatalf("ReportError(%v), want a state", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no state within 10s")
	}
	return nil
}

// nextError waits for the next ReportError.
func (f *fakeCC) nextError(t testing.TB) error {
	t.Helper()
	select {
	case err := <-f.errs:
		return err
	case s := <-f.states:
		t.Fatalf("UpdateState(%v), want ReportError", s)
	case <-time.After(10 * time.Second):
		t.Fatal("no ReportError within 10s")
	}
	return nil
}

// quiet checks that nothing was handed to the ClientConn since the last check.
func (f *fakeCC) quiet(t testing.TB) {
	t.Helper()
	select {
	case s := <-f.states:
		t.Fatalf("unexpected UpdateState(%v)", s)
	case err := <-f.errs:
		t.Fatalf("unexpected ReportError(%v)", err)
	default:
	}
}
