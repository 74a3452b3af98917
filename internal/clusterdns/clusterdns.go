// Package clusterdns is a small authoritative DNS server for the demo's simulated cluster
// (miekg/dns over UDP and TCP): it answers A/AAAA queries for the names in its table, like
// Kubernetes DNS does for Services — one VIP for a ClusterIP Service, every ready pod IP for a
// headless one. Names in its zone that it does not know get NXDOMAIN; names outside the zone
// get REFUSED.
package clusterdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Server is the DNS server. Its methods may be called concurrently.
type Server struct {
	zone string
	ttl  uint32

	mu      sync.RWMutex
	records map[string][]netip.Addr // fqdn (lowercase, trailing dot) → addresses
	queries map[string]int          // fqdn → A/AAAA queries answered, for tests and stats

	udp, tcp *dns.Server
}

// New returns a server authoritative for zone (e.g. "cluster.local") answering with ttl.
func New(zone string, ttl time.Duration) *Server {
	return &Server{
		zone:    dns.Fqdn(strings.ToLower(zone)),
		ttl:     uint32(ttl / time.Second),
		records: map[string][]netip.Addr{},
		queries: map[string]int{},
	}
}

// Set replaces the addresses of name (a name inside the zone). An empty list keeps the name
// existing with no addresses (NOERROR, no answer), as a Service with no ready pods.
func (s *Server) Set(name string, addrs []netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[dns.Fqdn(strings.ToLower(name))] = append([]netip.Addr(nil), addrs...)
}

// Addrs returns the addresses name has now (nil for a name not in the table), as a query
// would be answered.
func (s *Server) Addrs(name string) []netip.Addr {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return append([]netip.Addr(nil), s.records[dns.Fqdn(strings.ToLower(name))]...)
}

// Queries returns how many A/AAAA queries for name were answered.
func (s *Server) Queries(name string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.queries[dns.Fqdn(strings.ToLower(name))]
}

// Listen binds UDP and TCP on addr ("127.0.0.1:8053"; port 0 picks one, the same for both)
// and starts serving. The returned address is the one bound.
func (s *Server) Listen(addr string) (string, error) {
	pc, l, err := listenPair(addr)
	if err != nil {
		return "", err
	}
	started := make(chan struct{}, 2)
	notify := func() { started <- struct{}{} }
	s.udp = &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: notify}
	s.tcp = &dns.Server{Listener: l, Handler: s, NotifyStartedFunc: notify}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	<-started
	<-started
	return pc.LocalAddr().String(), nil
}

// listenPair binds UDP and TCP on the same address. With port 0 the UDP port is free but its
// TCP twin may be taken by another process: then it tries other ports, a bounded number of
// times.
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listen udp %s: %w", addr, err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if port != "0" || attempt >= 20 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("dns: listen tcp %s: %w", pc.LocalAddr(), err)
		}
	}
}

// Shutdown stops serving.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		if srv != nil {
			errs = append(errs, srv.ShutdownContext(ctx))
		}
	}
	return errors.Join(errs...)
}

// ServeDNS answers one query.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if !dns.IsSubDomain(s.zone, name) {
		m.Rcode = dns.RcodeRefused
		m.Authoritative = false
		w.WriteMsg(m)
		return
	}
	s.mu.Lock()
	addrs, ok := s.records[name]
	if ok && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA) {
		s.queries[name]++
	}
	s.mu.Unlock()
	if !ok {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{s.soa()}
		w.WriteMsg(m)
		return
	}
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: s.ttl}
	for _, a := range addrs {
		switch {
		case q.Qtype == dns.TypeA && a.Is4():
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IP(a.AsSlice())})
		case q.Qtype == dns.TypeAAAA && a.Is6() && !a.Is4In6():
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.IP(a.AsSlice())})
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{s.soa()} // NODATA
	}
	w.WriteMsg(m)
}

func (s *Server) soa() dns.RR {
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: s.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.ttl},
		Ns:  "ns.dns." + s.zone, Mbox: "hostmaster." + s.zone,
		Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: s.ttl,
	}
}
