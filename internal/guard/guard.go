// Package guard protects HTTP servers whose routes change state (the demo's cluster
// controls) from the two ways a web page on another site reaches a server on loopback
// through a visitor's browser:
//
//   - cross-site requests: a state-changing request (any method but GET, HEAD and OPTIONS)
//     whose Sec-Fetch-Site or Origin says it comes from another site is refused
//     (http.CrossOriginProtection);
//   - DNS rebinding: a name the attacker controls resolves to 127.0.0.1, so the browser sends
//     the attacker's name as Host and treats the server as same-origin. Every request whose
//     Host is not one of the addresses the server listens on (or localhost on their ports) is
//     refused.
//
// Both refusals are 403 with a JSON error. Requests without browser headers (curl, spread
// ctl) pass the cross-site check; the Host check applies to them too.
package guard

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/spread-grpc/spread/internal/httpjson"
)

// Guard holds the addresses a server answers to. Create it with New, add the listeners'
// addresses with Allow, and wrap handlers with Wrap (or CrossSite alone).
type Guard struct {
	mu    sync.RWMutex
	hosts map[string]bool // host:port, lowercase
	cop   *http.CrossOriginProtection
}

// New returns a guard that allows no Host yet.
func New() *Guard {
	g := &Guard{hosts: map[string]bool{}, cop: http.NewCrossOriginProtection()}
	g.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpjson.Error(w, http.StatusForbidden, errors.New("cross-site request refused"))
	}))
	return g
}

// Allow adds the Host values a listener bound to addr answers to: addr itself and, for a
// loopback address, localhost on the same port. A wildcard address (0.0.0.0, ::) adds
// nothing: name the hosts with AllowHost.
func (g *Guard) Allow(addr net.Addr) {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return
	}
	port := strconv.Itoa(int(ap.Port()))
	ip := ap.Addr().Unmap()
	if ip.IsUnspecified() {
		return
	}
	g.AllowHost(net.JoinHostPort(ip.String(), port))
	if ip.IsLoopback() {
		g.AllowHost(net.JoinHostPort("localhost", port))
	}
}

// AllowHost adds one Host value, host:port.
func (g *Guard) AllowHost(hostport string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hosts[strings.ToLower(hostport)] = true
}

// Hosts lists the allowed Host values, sorted.
func (g *Guard) Hosts() []string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make([]string, 0, len(g.hosts))
	for h := range g.hosts {
		out = append(out, h)
	}
	slices.Sort(out)
	return out
}

// HostAllowed reports whether a request's Host (as in http.Request.Host) is allowed. A Host
// without a port means port 80.
func (g *Guard) HostAllowed(host string) bool {
	h := strings.ToLower(host)
	if _, _, err := net.SplitHostPort(h); err != nil {
		h = net.JoinHostPort(strings.Trim(h, "[]"), "80")
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.hosts[h]
}

// Wrap refuses requests to h whose Host is not allowed, and cross-site state-changing ones.
func (g *Guard) Wrap(h http.Handler) http.Handler {
	cs := g.CrossSite(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.HostAllowed(r.Host) {
			httpjson.Error(w, http.StatusForbidden, fmt.Errorf("host %q refused: this server answers to %s only (DNS rebinding protection)", r.Host, strings.Join(g.Hosts(), ", ")))
			return
		}
		cs.ServeHTTP(w, r)
	})
}

// CrossSite refuses cross-site state-changing requests to h, whatever their Host.
func (g *Guard) CrossSite(h http.Handler) http.Handler { return g.cop.Handler(h) }
