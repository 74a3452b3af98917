package dnsrefresh

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// kind classifies what one lookup learned.
type kind int

const (
	// found: at least one address.
	found kind = iota
	// empty: the DNS said, authoritatively, that there is no address (NXDOMAIN, or NOERROR
	// without A/AAAA records) for every name tried.
	empty
	// failed: no answer that can be trusted (timeout, network error, SERVFAIL, REFUSED, a
	// malformed reply): it says nothing about the endpoints.
	failed
)

// Result labels of spread_dnsrefresh_lookups_total.
const (
	resultSuccess  = "success"
	resultNXDomain = "nxdomain"
	resultNoData   = "nodata"
	resultServFail = "servfail"
	resultTimeout  = "timeout"
	resultError    = "error"
)

// answer is the outcome of one lookup of a host: all its A and AAAA records.
type answer struct {
	kind   kind
	result string       // metric label
	ips    []netip.Addr // sorted, without duplicates; only for found
	// ttl is how long the answer may be cached: the least TTL of the records used (found), or
	// the negative-caching TTL of the SOA (empty). -1 when unknown.
	ttl time.Duration
	err error // why it failed; or, for empty, what was answered
}

// lookuper queries DNS servers for the addresses of a host, with miekg/dns so that TTLs are
// seen (net.Resolver hides them).
type lookuper struct {
	servers []string              // "ip:port", tried in order
	names   func(string) []string // the names to try for a host, in order (search domains)
	qtypes  []uint16
	timeout time.Duration
}

// ednsSize is the UDP payload size advertised (the DNS flag day 2020 value): large enough for
// about 70 A records, and replies that do not fit come back truncated and are asked again over
// TCP.
const ednsSize = 1232

func newLookuper(servers []string, search *dns.ClientConfig, network string, timeout time.Duration) *lookuper {
	l := &lookuper{servers: servers, timeout: timeout}
	switch network {
	case "ip4":
		l.qtypes = []uint16{dns.TypeA}
	case "ip6":
		l.qtypes = []uint16{dns.TypeAAAA}
	default:
		l.qtypes = []uint16{dns.TypeA, dns.TypeAAAA}
	}
	if search != nil {
		l.names = search.NameList
	} else {
		l.names = func(host string) []string { return []string{dns.Fqdn(host)} }
	}
	return l
}

// lookup resolves host. Names from the search list are tried in order: the first with
// addresses wins, an authoritative empty answer moves on to the next, and a failure ends the
// lookup as failed (a later name must not win just because an earlier one could not be asked).
func (l *lookuper) lookup(ctx context.Context, host string) answer {
	names := l.names(host)
	last := answer{kind: empty, result: resultNXDomain, ttl: -1}
	for _, name := range names {
		a := l.lookupName(ctx, name)
		if a.kind != empty {
			return a
		}
		last = a
	}
	if len(names) > 1 {
		last.err = fmt.Errorf("%w (tried %s)", last.err, strings.Join(names, ", "))
	}
	return last
}

// lookupName asks for every record type of one fully qualified name, in parallel.
func (l *lookuper) lookupName(ctx context.Context, name string) answer {
	res := make([]rrset, len(l.qtypes))
	var wg sync.WaitGroup
	for i, qt := range l.qtypes {
		wg.Go(func() { res[i] = l.query(ctx, name, qt) })
	}
	wg.Wait()

	a := answer{kind: empty, result: resultNoData, ttl: -1}
	nx := true
	var errs []error
	for _, r := range res {
		if r.err != nil {
			// The worst failure names the result: timeout, then servfail, then error.
			if a.kind != failed || rank(r.result) < rank(a.result) {
				a.result = r.result
			}
			a.kind = failed
			errs = append(errs, r.err)
			continue
		}
		if !r.nxdomain {
			nx = false
		}
		a.ips = append(a.ips, r.ips...)
		if r.ttl >= 0 && (a.ttl < 0 || r.ttl < a.ttl) {
			a.ttl = r.ttl
		}
	}
	switch {
	case a.kind == failed:
		a.ips, a.ttl = nil, -1
		a.err = errors.Join(errs...)
	case len(a.ips) > 0:
		a.kind, a.result = found, resultSuccess
		slices.SortFunc(a.ips, netip.Addr.Compare)
		a.ips = slices.Compact(a.ips)
	case nx:
		a.result = resultNXDomain
		a.err = fmt.Errorf("%s: no such name (NXDOMAIN)", name)
	default:
		a.err = fmt.Errorf("%s: no address records (NOERROR, no data)", name)
	}
	return a
}

func rank(result string) int {
	switch result {
	case resultTimeout:
		return 0
	case resultServFail:
		return 1
	default:
		return 2
	}
}

// rrset is the outcome of one query type.
type rrset struct {
	ips      []netip.Addr
	ttl      time.Duration // -1: unknown
	nxdomain bool
	err      error  // non-nil: failed
	result   string // metric label of a failure
}

// query asks the servers in order until one gives an answer to trust (NOERROR or NXDOMAIN).
func (l *lookuper) query(ctx context.Context, name string, qtype uint16) rrset {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(ednsSize, false)
	typ := dns.TypeToString[qtype]

	var out rrset
	var errs []error
	for _, srv := range l.servers {
		if ctx.Err() != nil {
			break
		}
		r, err := l.exchange(ctx, m, srv)
		if err != nil {
			out.result = resultError
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
				out.result = resultTimeout
			}
			errs = append(errs, fmt.Errorf("%s %s @%s: %w", typ, name, srv, err))
			continue
		}
		switch r.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			return parse(r, qtype)
		case dns.RcodeServerFailure:
			out.result = resultServFail
		default:
			out.result = resultError
		}
		errs = append(errs, fmt.Errorf("%s %s @%s: %s", typ, name, srv, dns.RcodeToString[r.Rcode]))
	}
	if len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%s %s: %w", typ, name, cmp.Or(ctx.Err(), errors.New("no DNS server"))))
		out.result = resultError
	}
	out.err = errors.Join(errs...)
	return out
}

// exchange sends m to srv over UDP, and again over TCP if the reply was truncated.
func (l *lookuper) exchange(ctx context.Context, m *dns.Msg, srv string) (*dns.Msg, error) {
	r, err := l.exchangeOver(ctx, "udp", m, srv)
	if err == nil && r.Truncated {
		if r, err = l.exchangeOver(ctx, "tcp", m, srv); err != nil {
			err = fmt.Errorf("over TCP after truncation: %w", err)
		}
	}
	return r, err
}

// exchangeOver does one exchange; cancelling ctx ends it at once (miekg/dns only heeds the
// context's deadline, so Close would otherwise wait for the timeout).
func (l *lookuper) exchangeOver(ctx context.Context, network string, m *dns.Msg, srv string) (*dns.Msg, error) {
	c := dns.Client{Net: network, Timeout: l.timeout, UDPSize: ednsSize}
	conn, err := c.DialContext(ctx, srv)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	r, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return r, err
}

// parse reads the addresses of a NOERROR or NXDOMAIN reply. Every A/AAAA record of the answer
// section counts, whatever its owner name, so that CNAME chains the server followed work; the
// TTL is the least of the whole answer section (CNAMEs included). An empty reply's TTL is the
// negative-caching TTL of RFC 2308: the least of the SOA's TTL and MINIMUM.
func parse(r *dns.Msg, qtype uint16) rrset {
	out := rrset{ttl: -1, nxdomain: r.Rcode == dns.RcodeNameError}
	for _, rr := range r.Answer {
		out.ttl = minTTL(out.ttl, rr.Header().Ttl)
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			if qtype == dns.TypeA {
				ip = v.A
			}
		case *dns.AAAA:
			if qtype == dns.TypeAAAA {
				ip = v.AAAA
			}
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			out.ips = append(out.ips, a.Unmap())
		}
	}
	if len(out.ips) == 0 {
		out.ttl = -1
		for _, rr := range r.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				out.ttl = minTTL(minTTL(out.ttl, soa.Hdr.Ttl), soa.Minttl)
			}
		}
	}
	return out
}

func minTTL(cur time.Duration, ttl uint32) time.Duration {
	d := time.Duration(ttl) * time.Second
	if cur < 0 {
		return d
	}
	return min(cur, d)
}

// hostPorts renders ips with port as sorted "ip:port" strings (IPv6 in brackets).
func hostPorts(ips []netip.Addr, port uint16) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = netip.AddrPortFrom(ip, port).String()
	}
	return out
}
