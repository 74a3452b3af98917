package dnsrefresh_test

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// dnsMode is how the test DNS server answers.
type dnsMode int

const (
	modeAnswer   dnsMode = iota // answer from the zone
	modeServFail                // SERVFAIL to everything
	modeDrop                    // never reply (the client times out)
)

type record struct {
	ips []netip.Addr
	ttl uint32
}

// testDNS is a real DNS server (miekg/dns) on 127.0.0.1, UDP and TCP on the same port, whose
// zone and behaviour tests change while clients run. Its methods may be called concurrently.
type testDNS struct {
	addr string // "127.0.0.1:port"

	mu      sync.Mutex
	zone    map[string]record // by FQDN
	mode    dnsMode
	negTTL  uint32
	queries map[string]int // "A name." → count
	total   int
	queried chan struct{} // capacity 1: a query came in
}

// startDNS starts a server with an empty zone; it stops when the test ends.
func startDNS(t testEnv) *testDNS {
	t.Helper()
	d := &testDNS{zone: map[string]record{}, queries: map[string]int{}, negTTL: 30, queried: make(chan struct{}, 1)}
	var (
		pc net.PacketConn
		l  net.Listener
	)
	for try := 0; ; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if try == 20 {
			t.Fatalf("no UDP+TCP port pair: %v", err)
		}
	}
	d.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: d}, {Listener: l, Handler: d}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan error, 1)
		go func() { done <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("DNS server: %v", err)
		}
		t.Cleanup(func() {
			srv.Shutdown()
			<-done
		})
	}
	return d
}

// Set makes name (FQDN or not) resolve to ips with the given TTL.
func (d *testDNS) Set(name string, ttl uint32, ips ...string) {
	r := record{ttl: ttl}
	for _, s := range ips {
		r.ips = append(r.ips, netip.MustParseAddr(s))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.zone[dns.Fqdn(name)] = r
}

// Delete makes name NXDOMAIN.
func (d *testDNS) Delete(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.zone, dns.Fqdn(name))
}

func (d *testDNS) SetMode(m dnsMode) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mode = m
}

// Total is the number of queries received so far.
func (d *testDNS) Total() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total
}

// waitTotal waits until n queries have come in (at most 10 s).
func (d *testDNS) waitTotal(t testEnv, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for d.Total() < n {
		select {
		case <-d.queried:
		case <-timeout:
			t.Fatalf("%d DNS queries within 10s, want %d", d.Total(), n)
		}
	}
}

// Queries is the number of queries of one type ("A", "AAAA") for one FQDN.
func (d *testDNS) Queries(qtype, fqdn string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[qtype+" "+fqdn]
}

func (d *testDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		dns.HandleFailed(w, req)
		return
	}
	q := req.Question[0]
	d.mu.Lock()
	d.total++
	d.queries[dns.TypeToString[q.Qtype]+" "+q.Name]++
	select {
	case d.queried <- struct{}{}:
	default:
	}
	mode, negTTL := d.mode, d.negTTL
	rec, ok := d.zone[q.Name]
	d.mu.Unlock()

	m := new(dns.Msg)
	switch mode {
	case modeDrop:
		return
	case modeServFail:
		m.SetRcode(req, dns.RcodeServerFailure)
		w.WriteMsg(m)
		return
	}
	m.SetReply(req)
	m.Authoritative = true
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: rec.ttl}
	for _, ip := range rec.ips {
		switch {
		case q.Qtype == dns.TypeA && ip.Is4():
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip.AsSlice()})
		case q.Qtype == dns.TypeAAAA && ip.Is6():
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
		}
	}
	if !ok {
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, &dns.SOA{
			Hdr: dns.RR_Header{Name: "test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: negTTL},
			Ns:  "ns.test.", Mbox: "hostmaster.test.", Serial: 1, Refresh: 60, Retry: 60, Expire: 60,
			Minttl: negTTL,
		})
	}
	if w.LocalAddr().Network() == "udp" {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// target renders a dns+refresh target that asks this server for name on port.
func (d *testDNS) target(name string, port int) string {
	return fmt.Sprintf("dns+refresh://%s/%s", d.addr, net.JoinHostPort(name, strconv.Itoa(port)))
}
