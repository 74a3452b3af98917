package cluster

import (
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"
)

// Start returns with every ready pod already in the headless Service's DNS records and behind
// the VIP. Before, the first set reached them through the subscription's goroutine, after Start
// returned: a client that resolved at once (spread load in cmd/spread TestLoadRuns, under
// make test-stress) got no address, and round_robin failed its first call with "no children
// to pick from". With one P, no other goroutine runs between Start's return and the checks
// below, so they see what Start itself did.
func TestStartPublishesDNSAndVIPAtOnce(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	c, err := Start(Config{Replicas: 3, Grace: 200 * time.Millisecond, FirstPodIP: netip.MustParseAddr("127.0.19.1"),
		VIP: "127.96.19.10:0", DNSAddr: "127.0.0.1:0", XDSAddr: "-"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dnsAddrs := c.dns.Addrs(c.ServiceName(HeadlessService))
	backends := c.vip.Backends()
	defer func() {
		if err := c.Stop(t.Context()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}()
	var wantDNS []netip.Addr
	var wantVIP []string
	for _, e := range c.Endpoints().Ready() {
		wantDNS = append(wantDNS, netip.MustParseAddr(e.Address))
	}
	wantVIP = c.Endpoints().Ready().HostPorts()
	if len(wantDNS) != 3 {
		t.Fatalf("%d ready pods, want 3", len(wantDNS))
	}
	slices.SortFunc(dnsAddrs, netip.Addr.Compare)
	slices.SortFunc(wantDNS, netip.Addr.Compare)
	if !slices.Equal(dnsAddrs, wantDNS) {
		t.Errorf("headless DNS records when Start returned: %v, want %v", dnsAddrs, wantDNS)
	}
	slices.Sort(backends)
	slices.Sort(wantVIP)
	if !slices.Equal(backends, wantVIP) {
		t.Errorf("VIP backends when Start returned: %v, want %v", backends, wantVIP)
	}
}
