package dnsrefresh

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
)

// dnsResolver re-resolves one target. Everything below wg is owned by the watch goroutine.
type dnsResolver struct {
	host    string
	port    uint16
	target  string // metric label and log field: the target's endpoint
	cc      resolver.ClientConn
	sc      *serviceconfig.ParseResult
	clock   Clock
	timeout time.Duration
	metrics *metrics
	log     *slog.Logger

	rn     chan struct{} // capacity 1: a ResolveNow is pending
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	lk    *lookuper
	track tracker
}

// ResolveNow asks for a lookup soon: at once if the last one is at least the min interval
// old, else when it will be. It never blocks; calls while one is pending are merged. It may be
// called concurrently.
func (r *dnsResolver) ResolveNow(resolver.ResolveNowOptions) {
	select {
	case r.rn <- struct{}{}:
	default:
	}
}

// Close stops the resolver and waits until its goroutine has exited (an ongoing lookup is
// cancelled). The ClientConn is not called after Close returns.
func (r *dnsResolver) Close() {
	r.cancel()
	r.wg.Wait()
	r.metrics.release(r.target)
}

func (r *dnsResolver) watch() {
	defer r.wg.Done()
	for {
		// A ResolveNow made before this lookup starts is answered by it: drop it, so that
		// one made while the lookup waited out the min interval does not ask for another.
		select {
		case <-r.rn:
		default:
		}
		started := r.clock.Now()
		a := r.lk.lookup(r.ctx, r.host)
		if r.ctx.Err() != nil {
			return
		}
		wait := r.apply(a)
		if !r.sleep(jitter(wait, r.track.minInterval), started) {
			return
		}
	}
}

// apply acts on one answer and returns the time until the next lookup.
func (r *dnsResolver) apply(a answer) time.Duration {
	r.metrics.lookup(r.target, a.result)
	if a.kind != failed {
		r.metrics.success(r.target, r.clock.Now())
	}
	addrs := hostPorts(a.ips, r.port)
	d := r.track.observe(a, addrs)
	switch {
	case d.report:
		r.log.Warn("DNS lookup failed; no addresses yet", "result", a.result, "err", a.err, "retry", d.wait)
		r.cc.ReportError(a.err)
	case d.kept && a.kind == failed:
		r.log.Warn("DNS lookup failed; keeping the last addresses", "result", a.result, "err", a.err,
			"addresses", len(r.track.current), "retry", d.wait)
	case d.kept:
		r.log.Info("DNS says no addresses; keeping the last ones until confirmed", "result", a.result,
			"addresses", len(r.track.current), "confirm_in", d.wait)
	}
	if !d.push {
		return d.wait
	}
	r.log.Info("addresses changed", "addresses", d.addrs, "ttl", a.ttl, "next", d.wait)
	r.metrics.setAddresses(r.target, len(d.addrs))
	if err := r.cc.UpdateState(state(d.addrs, r.sc)); err != nil {
		wait := r.track.rejected()
		r.log.Info("gRPC rejected the addresses; will push again", "err", err, "retry", wait)
		return wait
	}
	return d.wait
}

// sleep waits d, or less if ResolveNow is called, but never past the min interval after the
// start of the last lookup (started). It returns false when the resolver is closed.
func (r *dnsResolver) sleep(d time.Duration, started time.Time) bool {
	t := r.clock.NewTimer(d)
	select {
	case <-r.ctx.Done():
		t.Stop()
		return false
	case <-t.C():
		return true
	case <-r.rn:
		t.Stop()
	}
	rest := started.Add(r.track.minInterval).Sub(r.clock.Now())
	if rest <= 0 {
		return true
	}
	t = r.clock.NewTimer(rest)
	select {
	case <-r.ctx.Done():
		t.Stop()
		return false
	case <-t.C():
		return true
	}
}

// state builds the resolver state: one endpoint per address, and the same addresses in the
// older Addresses field for LB policies that still read it.
func state(addrs []string, sc *serviceconfig.ParseResult) resolver.State {
	s := resolver.State{
		Addresses:     make([]resolver.Address, len(addrs)),
		Endpoints:     make([]resolver.Endpoint, len(addrs)),
		ServiceConfig: sc,
	}
	for i, a := range addrs {
		s.Addresses[i] = resolver.Address{Addr: a}
		s.Endpoints[i] = resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}}
	}
	return s
}
