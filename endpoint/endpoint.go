// Package endpoint is Spread's one model of a Service's backends. Every source (the Kubernetes
// EndpointSlice watcher, the demo's local cluster) trims what it sees into a Set of Endpoints in
// one place, and every consumer (the kubernetes resolver, the xDS control plane, the demo's DNS
// server) reads only that: source → endpoint.Set → resolver state / xDS snapshot / DNS answer.
package endpoint

import (
	"cmp"
	"net"
	"slices"
	"strconv"
)

// Endpoint is one backend address of a Service port, trimmed from an EndpointSlice entry.
type Endpoint struct {
	// Address is the IP address (no port).
	Address string
	// Port is the resolved port number.
	Port int32
	// Pod names the backend pod (targetRef), if known.
	Pod string
	// Node names the node the pod runs on, if known.
	Node string
	// Zone is the topology zone of the endpoint, if known.
	Zone string
	// Ready means the endpoint should receive new traffic. Kubernetes treats a nil ready
	// condition as ready, and so must every source.
	Ready bool
	// Serving means the endpoint can still answer, even when not Ready (a terminating pod
	// that drains).
	Serving bool
	// Terminating means the pod is shutting down.
	Terminating bool
}

// HostPort returns "address:port", bracketing IPv6 addresses.
func (e Endpoint) HostPort() string {
	return net.JoinHostPort(e.Address, strconv.Itoa(int(e.Port)))
}

// Health is the traffic state of an endpoint, derived from its conditions.
type Health int

const (
	// Healthy endpoints (ready) take new calls.
	Healthy Health = iota
	// Draining endpoints (serving and terminating, not ready) only finish what they have.
	Draining
	// Unhealthy endpoints take nothing.
	Unhealthy
)

func (h Health) String() string {
	switch h {
	case Healthy:
		return "healthy"
	case Draining:
		return "draining"
	default:
		return "unhealthy"
	}
}

// Health derives the traffic state: ready → Healthy, serving (whether or not terminating) →
// Draining, else Unhealthy.
func (e Endpoint) Health() Health {
	switch {
	case e.Ready:
		return Healthy
	case e.Serving:
		return Draining
	default:
		return Unhealthy
	}
}

// Set is the whole endpoint set of one Service port, sorted by address then port, without
// duplicates. An empty Set is a valid state: the Service has no backends.
type Set []Endpoint

// NewSet sorts eps and removes duplicate address:port entries (the first one seen of a
// duplicate wins, preferring a ready one, as Kubernetes does when slices overlap during
// updates). It does not modify eps.
func NewSet(eps []Endpoint) Set {
	s := slices.Clone(eps)
	slices.SortStableFunc(s, func(a, b Endpoint) int {
		if c := cmp.Compare(a.Address, b.Address); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Port, b.Port); c != 0 {
			return c
		}
		// Ready before not ready, so that Compact keeps the ready duplicate.
		return cmp.Compare(a.Health(), b.Health())
	})
	return slices.CompactFunc(s, func(a, b Endpoint) bool {
		return a.Address == b.Address && a.Port == b.Port
	})
}

// Usable returns the endpoints that should take new calls: the ready ones, or, only when none
// is ready, the serving ones (terminating pods that still answer). The result may be empty.
func (s Set) Usable() Set {
	ready := s.filter(func(e Endpoint) bool { return e.Ready })
	if len(ready) > 0 {
		return ready
	}
	return s.filter(func(e Endpoint) bool { return e.Serving })
}

// Ready returns the ready endpoints.
func (s Set) Ready() Set {
	return s.filter(func(e Endpoint) bool { return e.Ready })
}

func (s Set) filter(keep func(Endpoint) bool) Set {
	out := make(Set, 0, len(s))
	for _, e := range s {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// Equal reports whether two sets hold the same endpoints with the same conditions.
func (s Set) Equal(o Set) bool {
	return slices.Equal(s, o)
}

// HostPorts lists "address:port" for every endpoint, in order.
func (s Set) HostPorts() []string {
	out := make([]string, len(s))
	for i, e := range s {
		out[i] = e.HostPort()
	}
	return out
}
