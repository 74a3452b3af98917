package dnsrefresh_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/spread-grpc/spread/resolver/dnsrefresh"
)

const (
	interval = 5 * time.Second
	minIvl   = 1 * time.Second
)

// newBuilder makes a Builder on a fake clock with a fresh metrics registry.
func newBuilder(t *testing.T, opts ...dnsrefresh.Option) (*dnsrefresh.Builder, *fakeClock, *prometheus.Registry) {
	t.Helper()
	clk := newFakeClock()
	reg := prometheus.NewRegistry()
	b, err := dnsrefresh.NewBuilder(append([]dnsrefresh.Option{
		dnsrefresh.WithClock(clk), dnsrefresh.WithRegisterer(reg), dnsrefresh.WithLogger(testLogger(t)),
		dnsrefresh.WithInterval(interval), dnsrefresh.WithMinInterval(minIvl),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return b, clk, reg
}

func TestSpreadsOverInitialPods(t *testing.T) {
	d, c := startDNS(t), startCluster(t, 3)
	d.Set(svc, 30, c.IPs(1, 2, 3)...)
	b, _, _ := newBuilder(t)
	client := dial(t, d.target(svc, c.port), b)

	callUntilAll(t, client, podNames(1, 2, 3)...)
	wantEven(t, callN(t, client, 300), podNames(1, 2, 3)...)
}

func TestPodsAddedGetCallsAfterNextRefresh(t *testing.T) {
	d, c := startDNS(t), startCluster(t, 5)
	d.Set(svc, 30, c.IPs(1, 2, 3)...)
	b, clk, reg := newBuilder(t)
	client := dial(t, d.target(svc, c.port), b)
	callUntilAll(t, client, podNames(1, 2, 3)...)
	within(t, "first refresh delay", clk.nextArmed(t), interval*9/10, interval)

	// Scale up 3 → 5. Until the refresh is due, DNS is not asked again and no call reaches
	// the new pods.
	d.Set(svc, 30, c.IPs(1, 2, 3, 4, 5)...)
	before := d.Total()
	wantEven(t, callN(t, client, 30), podNames(1, 2, 3)...)
	clk.noArmed(t)

	clk.Advance(interval)
	clk.nextArmed(t) // the refresh has run and pushed its state
	if n := d.Total() - before; n != 2 {
		t.Errorf("refresh sent %d queries, want 2 (A and AAAA)", n)
	}
	if n := metric(t, reg, "spread_dnsrefresh_addresses", nil); n != 5 {
		t.Errorf("spread_dnsrefresh_addresses = %v, want 5", n)
	}
	callUntilAll(t, client, podNames(4, 5)...)
	wantEven(t, callN(t, client, 500), podNames(1, 2, 3, 4, 5)...)
}

func TestTTLDecidesNextRefresh(t *testing.T) {
	d := startDNS(t)
	for _, tc := range []struct {
		name   string
		ttl    uint32
		lo, hi time.Duration
	}{
		{"ttl shorter than interval", 2, 1800 * time.Millisecond, 2 * time.Second},
		{"ttl 0 means min interval", 0, minIvl, minIvl},
		{"ttl longer than interval", 3600, interval * 9 / 10, interval},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d.Set(svc, tc.ttl, "192.0.2.1")
			clk := newFakeClock()
			cc, _ := buildFake(t, d.target(svc, 80), dnsrefresh.WithClock(clk),
				dnsrefresh.WithInterval(interval), dnsrefresh.WithMinInterval(minIvl))
			if got, want := cc.nextState(t), addrs(80, "192.0.2.1"); !slices.Equal(got, want) {
				t.Fatalf("state %v, want %v", got, want)
			}
			wait := clk.nextArmed(t)
			within(t, "next refresh", wait, tc.lo, tc.hi)

			// The answer changes; the refresh at the TTL (not the interval) picks it up.
			d.Set(svc, tc.ttl, "192.0.2.2")
			clk.Advance(wait - 1)
			clk.noArmed(t)
			cc.quiet(t)
			clk.Advance(1)
			if got, want := cc.nextState(t), addrs(80, "192.0.2.2"); !slices.Equal(got, want) {
				t.Fatalf("state %v, want %v", got, want)
			}
		})
	}
}

// A failed lookup after a good one keeps the addresses: calls keep succeeding on every pod,
// nothing is pushed or reported, and retries back off from the min interval to the interval.
func TestTransientFailureKeepsAddresses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   dnsMode
		result string
		// The lookup timeout is real time: short where every lookup is to time out, long
		// where an answer must arrive (50 ms let a busy machine turn a SERVFAIL into a timeout).
		timeout time.Duration
	}{
		{"servfail", modeServFail, "servfail", 5 * time.Second},
		{"timeout", modeDrop, "timeout", 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, c := startDNS(t), startCluster(t, 3)
			d.Set(svc, 30, c.IPs(1, 2, 3)...)
			b, clk, reg := newBuilder(t, dnsrefresh.WithTimeout(tc.timeout))
			client := dial(t, d.target(svc, c.port), b)
			callUntilAll(t, client, podNames(1, 2, 3)...)
			clk.nextArmed(t)

			d.SetMode(tc.mode)
			clk.Advance(interval)
			// Backoff: 1 s, 2 s, 4 s, then the interval.
			for i, want := range []time.Duration{minIvl, 2 * minIvl, 4 * minIvl, interval} {
				within(t, fmt.Sprintf("retry %d", i+1), clk.nextArmed(t), max(want*9/10, minIvl), want)
				wantEven(t, callN(t, client, 30), podNames(1, 2, 3)...)
				clk.Advance(want)
			}
			clk.nextArmed(t)
			labels := map[string]string{"result": tc.result}
			if n := metric(t, reg, "spread_dnsrefresh_lookups_total", labels); n != 5 {
				t.Errorf("lookups_total{result=%s} = %v, want 5", tc.result, n)
			}
			if n := metric(t, reg, "spread_dnsrefresh_addresses", nil); n != 3 {
				t.Errorf("spread_dnsrefresh_addresses = %v, want 3 (kept)", n)
			}

			// DNS comes back with a new pod list.
			d.SetMode(modeAnswer)
			d.Set(svc, 30, c.IPs(2, 3)...)
			clk.Advance(interval)
			clk.nextArmed(t)
			callN(t, client, 10) // drains calls racing the switch
			wantEven(t, callN(t, client, 30), podNames(2, 3)...)
		})
	}
}

// The same, watched at the resolver.ClientConn: no state and no error reaches gRPC.
func TestTransientFailurePushesNothing(t *testing.T) {
	for _, mode := range []dnsMode{modeServFail, modeDrop} {
		d := startDNS(t)
		d.Set(svc, 30, "192.0.2.1", "192.0.2.2")
		clk := newFakeClock()
		cc, _ := buildFake(t, d.target(svc, 80), dnsrefresh.WithClock(clk),
			dnsrefresh.WithTimeout(50*time.Millisecond))
		cc.nextState(t)
		clk.nextArmed(t)
		d.SetMode(mode)
		for range 4 {
			clk.Advance(interval)
			clk.nextArmed(t)
			cc.quiet(t)
		}
	}
}

// With nothing to keep, a failure is reported through ReportError, and the first good answer
// after it is pushed.
func TestFailureBeforeFirstStateIsReported(t *testing.T) {
	d := startDNS(t)
	d.Set(svc, 30, "192.0.2.1")
	d.SetMode(modeServFail)
	clk := newFakeClock()
	cc, _ := buildFake(t, d.target(svc, 80), dnsrefresh.WithClock(clk))
	if err := cc.nextError(t); !strings.Contains(err.Error(), "SERVFAIL") {
		t.Errorf("ReportError(%v), want it to name SERVFAIL", err)
	}
	within(t, "retry", clk.nextArmed(t), minIvl, minIvl)
	d.SetMode(modeAnswer)
	clk.Advance(minIvl)
	if got, want := cc.nextState(t), addrs(80, "192.0.2.1"); !slices.Equal(got, want) {
		t.Fatalf("state %v, want %v", got, want)
	}
}

// NXDOMAIN (and NOERROR without records) is authoritative: it empties the list, but only on
// the second answer in a row (confirmed after the min interval), so that calls then fail fast
// instead of going to pods that are gone, while one spurious NXDOMAIN changes nothing.
func TestAuthoritativeEmpty(t *testing.T) {
	d, c := startDNS(t), startCluster(t, 3)
	d.Set(svc, 30, c.IPs(1, 2, 3)...)
	b, clk, reg := newBuilder(t)
	client := dial(t, d.target(svc, c.port), b)
	callUntilAll(t, client, podNames(1, 2, 3)...)
	clk.nextArmed(t)

	// One NXDOMAIN, then the name is back: nothing changes.
	d.Delete(svc)
	clk.Advance(interval)
	within(t, "confirmation", clk.nextArmed(t), minIvl, minIvl)
	wantEven(t, callN(t, client, 30), podNames(1, 2, 3)...)
	d.Set(svc, 30, c.IPs(1, 2, 3)...)
	clk.Advance(minIvl)
	clk.nextArmed(t)
	wantEven(t, callN(t, client, 30), podNames(1, 2, 3)...)

	// Scale to zero: two NXDOMAINs in a row empty the list; calls fail fast.
	d.Delete(svc)
	clk.Advance(interval)
	clk.nextArmed(t)
	clk.Advance(minIvl)
	clk.nextArmed(t)
	if n := metric(t, reg, "spread_dnsrefresh_addresses", nil); n != 0 {
		t.Fatalf("spread_dnsrefresh_addresses = %v, want 0", n)
	}
	if n := metric(t, reg, "spread_dnsrefresh_lookups_total", map[string]string{"result": "nxdomain"}); n != 3 {
		t.Errorf("lookups_total{result=nxdomain} = %v, want 3", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := call(ctx, client)
		if err == nil {
			continue // calls racing the update
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("call after scale to zero: %v, want Unavailable", err)
		}
		break
	}

	// Scale from zero: new pods get calls after the next lookup.
	d.Set(svc, 30, c.IPs(2, 3)...)
	advanceUntil(t, clk, func() bool { return metric(t, reg, "spread_dnsrefresh_addresses", nil) == 2 })
	callUntilAll(t, client, podNames(2, 3)...)
}

func TestEmptyThresholdOne(t *testing.T) {
	d := startDNS(t)
	d.Set(svc, 30, "192.0.2.1")
	clk := newFakeClock()
	cc, _ := buildFake(t, d.target(svc, 80), dnsrefresh.WithClock(clk), dnsrefresh.WithEmptyThreshold(1))
	cc.nextState(t)
	clk.nextArmed(t)
	d.Set(svc, 30) // NOERROR, no records
	clk.Advance(interval)
	if got := cc.nextState(t); len(got) != 0 {
		t.Fatalf("state %v, want empty", got)
	}
}

// An empty answer before any state is pushed at once: there is nothing to keep.
func TestEmptyFirstAnswerIsPushed(t *testing.T) {
	d := startDNS(t)
	clk := newFakeClock()
	cc, _ := buildFake(t, d.target(svc, 80), dnsrefresh.WithClock(clk))
	if got := cc.nextState(t); len(got) != 0 {
		t.Fatalf("state %v, want empty", got)
	}
}

// When a pod dies, gRPC calls ResolveNow; the resolver looks up again once the min interval
// has passed since the last lookup, well before the interval, and the replacement pod gets calls.
func TestResolveNowOnConnectionLoss(t *testing.T) {
	d, c := startDNS(t), startCluster(t, 4)
	d.Set(svc, 30, c.IPs(1, 2, 3)...)
	b, clk, _ := newBuilder(t, dnsrefresh.WithInterval(time.Hour))
	client := dial(t, d.target(svc, c.port), b)
	callUntilAll(t, client, podNames(1, 2, 3)...)
	clk.nextArmed(t)

	// pod-1 is replaced by pod-4 (a rolling restart step).
	d.Set(svc, 30, c.IPs(2, 3, 4)...)
	before := d.Total()
	c.pods[0].Stop()
	// ResolveNow came within the min interval of the last lookup: rate-limited.
	within(t, "rate-limited wait", clk.nextArmed(t), 1, minIvl)
	if n := d.Total() - before; n != 0 {
		t.Fatalf("%d queries before the min interval passed, want 0", n)
	}
	clk.Advance(minIvl)
	callUntilAll(t, client, podNames(4)...)
	wantEven(t, callN(t, client, 30), podNames(2, 3, 4)...)
}

func TestResolveNowIsRateLimited(t *testing.T) {
	d := startDNS(t)
	d.Set(svc, 30, "192.0.2.1")
	clk := newFakeClock()
	cc, r := buildFake(t, d.target(svc, 80), dnsrefresh.WithClock(clk),
		dnsrefresh.WithInterval(time.Hour), dnsrefresh.WithMinInterval(minIvl))
	cc.nextState(t)
	clk.nextArmed(t)
	if n := d.Total(); n != 2 {
		t.Fatalf("%d queries, want 2", n)
	}

	// A burst of ResolveNow right after a lookup: one lookup, after the min interval.
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { r.ResolveNow(resolver.ResolveNowOptions{}) })
	}
	wg.Wait()
	within(t, "rate-limited wait", clk.nextArmed(t), minIvl, minIvl)
	// One more while the resolver waits out the min interval: the coming lookup answers it
	// too (it must not be kept for another lookup a min interval later).
	r.ResolveNow(resolver.ResolveNowOptions{})
	clk.noArmed(t)
	if n := d.Total(); n != 2 {
		t.Fatalf("%d queries before the min interval passed, want 2", n)
	}
	clk.Advance(minIvl)
	if next := clk.nextArmed(t); next <= minIvl {
		t.Fatalf("after the rate-limited lookup the resolver armed a %v timer, want the TTL's (the burst asked for a second lookup)", next)
	}
	if n := d.Total(); n != 4 {
		t.Fatalf("%d queries after the min interval, want 4", n)
	}
	clk.noArmed(t)

	// Long after the last lookup, ResolveNow looks up at once.
	for {
		select {
		case <-clk.armed:
			continue
		default:
		}
		break
	}
	clk.Advance(10 * minIvl)
	queries := d.Total()
	r.ResolveNow(resolver.ResolveNowOptions{})
	clk.nextArmed(t)
	if n := d.Total() - queries; n < 2 {
		t.Fatalf("ResolveNow long after the last lookup sent %d queries, want 2", n)
	}
}

func TestCloseCancelsLookupAndLeaksNothing(t *testing.T) {
	d := startDNS(t)
	d.SetMode(modeDrop)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	b, err := dnsrefresh.NewBuilder(dnsrefresh.WithTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	cc := newFakeCC()
	r, err := b.Build(resolver.Target{URL: mustURL(t, d.target(svc, 80))}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.waitTotal(t, 2) // both queries sent, and hanging
	done := make(chan struct{})
	go func() {
		r.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5s during a hanging lookup")
	}
	cc.quiet(t)
}

func TestLookupDetails(t *testing.T) {
	d := startDNS(t)
	t.Run("A and AAAA, sorted", func(t *testing.T) {
		d.Set("dual.test.", 30, "::1", "192.0.2.9", "192.0.2.1", "192.0.2.1")
		cc, _ := buildFake(t, d.target("dual.test.", 8080), dnsrefresh.WithClock(newFakeClock()))
		want := []string{"192.0.2.1:8080", "192.0.2.9:8080", "[::1]:8080"}
		if got := cc.nextState(t); !slices.Equal(got, want) {
			t.Fatalf("state %v, want %v", got, want)
		}
	})
	t.Run("ip4 only", func(t *testing.T) {
		d.Set("v4.test.", 30, "::1", "192.0.2.1")
		cc, _ := buildFake(t, d.target("v4.test.", 80), dnsrefresh.WithClock(newFakeClock()),
			dnsrefresh.WithNetwork("ip4"))
		if got, want := cc.nextState(t), addrs(80, "192.0.2.1"); !slices.Equal(got, want) {
			t.Fatalf("state %v, want %v", got, want)
		}
		if n := d.Queries("AAAA", "v4.test."); n != 0 {
			t.Errorf("%d AAAA queries, want 0", n)
		}
	})
	t.Run("truncated over UDP, retried over TCP", func(t *testing.T) {
		var ips []string
		for i := 1; i <= 200; i++ {
			ips = append(ips, fmt.Sprintf("10.1.%d.%d", i/250, i%250))
		}
		d.Set("big.test.", 30, ips...)
		cc, _ := buildFake(t, d.target("big.test.", 80), dnsrefresh.WithClock(newFakeClock()))
		if got := cc.nextState(t); len(got) != 200 {
			t.Fatalf("%d addresses, want 200", len(got))
		}
	})
	t.Run("search domains from resolv.conf", func(t *testing.T) {
		d.Set("be-srv.default.svc.cluster.local.", 30, "192.0.2.7")
		conf := filepath.Join(t.TempDir(), "resolv.conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(
			"nameserver %s\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
			d.addr)), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"be-srv", "be-srv.default", "be-srv.default.svc.cluster.local."} {
			cc, _ := buildFake(t, "dns+refresh:///"+name+":80", dnsrefresh.WithClock(newFakeClock()),
				dnsrefresh.WithResolvConf(conf))
			if got, want := cc.nextState(t), addrs(80, "192.0.2.7"); !slices.Equal(got, want) {
				t.Fatalf("%s: state %v, want %v", name, got, want)
			}
		}
		if n := d.Queries("A", "be-srv.default.svc.cluster.local.svc.cluster.local."); n != 0 {
			t.Errorf("a name found through search was tried further")
		}
	})
	t.Run("IP literal target needs no DNS", func(t *testing.T) {
		before := d.Total()
		cc, _ := buildFake(t, "dns+refresh:///127.0.0.1:50051")
		if got, want := cc.nextState(t), []string{"127.0.0.1:50051"}; !slices.Equal(got, want) {
			t.Fatalf("state %v, want %v", got, want)
		}
		if d.Total() != before {
			t.Error("an IP target was looked up")
		}
	})
	t.Run("service config", func(t *testing.T) {
		d.Set("sc.test.", 30, "192.0.2.1")
		for _, tc := range []struct {
			opt  dnsrefresh.Option
			want string
		}{
			{nil, `{"loadBalancingConfig":[{"round_robin":{}}]}`},
			{dnsrefresh.WithHealthCheck("echo.EchoServer"), `{"healthCheckConfig":{"serviceName":"echo.EchoServer"},"loadBalancingConfig":[{"round_robin":{}}]}`},
		} {
			opts := []dnsrefresh.Option{dnsrefresh.WithClock(newFakeClock())}
			if tc.opt != nil {
				opts = append(opts, tc.opt)
			}
			cc, _ := buildFake(t, d.target("sc.test.", 80), opts...)
			s := <-cc.states
			if got := s.ServiceConfig.Config.(fakeSC).json; got != tc.want {
				t.Errorf("service config %s, want %s", got, tc.want)
			}
		}
	})
}

func TestMetricsFollowResolvers(t *testing.T) {
	d := startDNS(t)
	d.Set(svc, 30, "192.0.2.1", "192.0.2.2")
	reg := prometheus.NewRegistry()
	clk := newFakeClock()
	// Two builders on one registry share the metrics.
	for range 2 {
		if _, err := dnsrefresh.NewBuilder(dnsrefresh.WithRegisterer(reg)); err != nil {
			t.Fatal(err)
		}
	}
	cc, r := buildFake(t, d.target(svc, 80), dnsrefresh.WithRegisterer(reg), dnsrefresh.WithClock(clk))
	cc.nextState(t)
	clk.nextArmed(t)
	target := map[string]string{"target": svc + ":80"}
	if n := metric(t, reg, "spread_dnsrefresh_addresses", target); n != 2 {
		t.Errorf("addresses = %v, want 2", n)
	}
	if n := metric(t, reg, "spread_dnsrefresh_lookups_total", map[string]string{"target": svc + ":80", "result": "success"}); n != 1 {
		t.Errorf("lookups_total{success} = %v, want 1", n)
	}
	if ts := metric(t, reg, "spread_dnsrefresh_last_success_timestamp_seconds", target); ts != float64(clk.Now().Unix()) {
		t.Errorf("last_success = %v, want %v", ts, clk.Now().Unix())
	}
	r.Close()
	if n, err := reg.Gather(); err != nil || len(n) != 0 {
		t.Errorf("after Close: %d metric families (%v), want none", len(n), err)
	}
}

func TestBuildErrors(t *testing.T) {
	for _, target := range []string{
		"dns+refresh:///",
		"dns+refresh:///host:",
		"dns+refresh:///host:99999",
		"dns+refresh://not-an-ip/host:80",
	} {
		b, _ := dnsrefresh.NewBuilder()
		if r, err := b.Build(resolver.Target{URL: mustURL(t, target)}, newFakeCC(), resolver.BuildOptions{}); err == nil {
			r.Close()
			t.Errorf("Build(%s) succeeded, want an error", target)
		}
	}
	for _, opts := range [][]dnsrefresh.Option{
		{dnsrefresh.WithInterval(0)},
		{dnsrefresh.WithInterval(500 * time.Millisecond)}, // below the default min interval
		{dnsrefresh.WithMinInterval(-1)},
		{dnsrefresh.WithServer("dns.example")},
		{dnsrefresh.WithNetwork("tcp")},
		{dnsrefresh.WithEmptyThreshold(0)},
		{dnsrefresh.WithTimeout(0)},
	} {
		if _, err := dnsrefresh.NewBuilder(opts...); err == nil {
			t.Errorf("NewBuilder with a bad option succeeded")
		}
	}
}
