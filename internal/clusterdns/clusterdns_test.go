package clusterdns

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAnswers(t *testing.T) {
	s := New("cluster.local", 5*time.Second)
	addr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	s.Set("be-srv.default.svc.cluster.local", []netip.Addr{netip.MustParseAddr("127.96.0.10")})
	s.Set("be-srv-lb.default.svc.cluster.local", []netip.Addr{netip.MustParseAddr("127.0.1.2"), netip.MustParseAddr("127.0.1.1"), netip.MustParseAddr("::1")})
	s.Set("empty.default.svc.cluster.local", nil)

	for _, net := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: net, Timeout: 5 * time.Second}
		ask := func(name string, qtype uint16) *dns.Msg {
			t.Helper()
			m := new(dns.Msg)
			m.SetQuestion(name, qtype)
			r, _, err := c.Exchange(m, addr)
			if err != nil {
				t.Fatalf("%s %s: %v", net, name, err)
			}
			return r
		}
		ips := func(r *dns.Msg) []string {
			var out []string
			for _, rr := range r.Answer {
				switch a := rr.(type) {
				case *dns.A:
					out = append(out, a.A.String())
					if a.Hdr.Ttl != 5 {
						t.Errorf("TTL %d, want 5", a.Hdr.Ttl)
					}
				case *dns.AAAA:
					out = append(out, a.AAAA.String())
				}
			}
			return out
		}
		if r := ask("be-srv.default.svc.cluster.local.", dns.TypeA); r.Rcode != dns.RcodeSuccess || !slices.Equal(ips(r), []string{"127.96.0.10"}) {
			t.Errorf("%s ClusterIP A: %v", net, r)
		}
		if r := ask("BE-SRV-LB.default.svc.cluster.local.", dns.TypeA); !slices.Equal(ips(r), []string{"127.0.1.2", "127.0.1.1"}) {
			t.Errorf("%s headless A: %v", net, ips(r))
		}
		if r := ask("be-srv-lb.default.svc.cluster.local.", dns.TypeAAAA); !slices.Equal(ips(r), []string{"::1"}) {
			t.Errorf("%s headless AAAA: %v", net, ips(r))
		}
		if r := ask("be-srv.default.svc.cluster.local.", dns.TypeAAAA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 {
			t.Errorf("%s NODATA: %v", net, r)
		}
		if r := ask("_grpc_config.be-srv.default.svc.cluster.local.", dns.TypeTXT); r.Rcode != dns.RcodeNameError {
			t.Errorf("%s TXT of unknown name: rcode %d, want NXDOMAIN", net, r.Rcode)
		}
		if r := ask("empty.default.svc.cluster.local.", dns.TypeA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
			t.Errorf("%s empty service: %v", net, r)
		}
		if r := ask("nope.default.svc.cluster.local.", dns.TypeA); r.Rcode != dns.RcodeNameError {
			t.Errorf("%s unknown: rcode %d, want NXDOMAIN", net, r.Rcode)
		}
		if r := ask("example.com.", dns.TypeA); r.Rcode != dns.RcodeRefused {
			t.Errorf("%s outside zone: rcode %d, want REFUSED", net, r.Rcode)
		}
	}
	if q := s.Queries("be-srv-lb.default.svc.cluster.local"); q != 4 {
		t.Errorf("Queries = %d, want 4", q)
	}
}

func TestListenTaken(t *testing.T) {
	a := New("cluster.local", time.Second)
	addr, err := a.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	if _, err := New("cluster.local", time.Second).Listen(addr); err == nil {
		t.Error("second Listen on the same address: no error")
	}
}
