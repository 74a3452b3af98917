package dnsrefresh_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/resolver/dnsrefresh"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// svc is the headless Service name the tests resolve.
const svc = "be-srv-lb.default.svc.cluster.local."

// buildFake builds a resolver for target directly, with a fakeCC; it is closed when the test
// ends.
func buildFake(t *testing.T, target string, opts ...dnsrefresh.Option) (*fakeCC, resolver.Resolver) {
	t.Helper()
	b, err := dnsrefresh.NewBuilder(opts...)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	cc := newFakeCC()
	r, err := b.Build(resolver.Target{URL: *u}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatalf("Build(%s): %v", target, err)
	}
	t.Cleanup(r.Close)
	return cc, r
}

// dial makes a real gRPC client for target that uses b; it is closed when the test ends.
func dial(t testEnv, target string, b *dnsrefresh.Builder) echo.EchoServerClient {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithResolvers(b),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return echo.NewEchoServerClient(conn)
}

// call makes one unary call and returns the answering pod.
func call(ctx context.Context, c echo.EchoServerClient) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := c.SayHello(ctx, &echo.EchoRequest{Name: "test"})
	if err != nil {
		return "", err
	}
	return r.GetPod(), nil
}

// callN makes n calls, all of which must succeed, and counts them per pod.
func callN(t testEnv, c echo.EchoServerClient, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		pod, err := call(context.Background(), c)
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		got[pod]++
	}
	return got
}

// callUntilAll calls until every one of pods has answered (all calls must succeed), at most
// for 10 s, and returns how many calls it took.
func callUntilAll(t testEnv, c echo.EchoServerClient, pods ...string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seen := map[string]bool{}
	for n := 1; ; n++ {
		pod, err := call(ctx, c)
		if err != nil {
			t.Fatalf("call %d (seen %v, want %v): %v", n, seen, pods, err)
		}
		seen[pod] = true
		if !slices.ContainsFunc(pods, func(p string) bool { return !seen[p] }) {
			return n
		}
	}
}

// wantEven checks that counts spread over exactly pods, evenly (at most one apart).
func wantEven(t testEnv, counts map[string]int, pods ...string) {
	t.Helper()
	if len(counts) != len(pods) {
		t.Fatalf("calls went to %v, want exactly %v", counts, pods)
	}
	lo, hi := int(^uint(0)>>1), 0
	for _, p := range pods {
		n, ok := counts[p]
		if !ok {
			t.Fatalf("calls went to %v, want exactly %v", counts, pods)
		}
		lo, hi = min(lo, n), max(hi, n)
	}
	if hi-lo > 1 {
		t.Fatalf("calls %v are not spread evenly over %v", counts, pods)
	}
}

func podNames(ids ...int) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprintf("pod-%d", id)
	}
	return out
}

// addrs renders "ip:port" for ips, as the resolver pushes them.
func addrs(port int, ips ...string) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = net.JoinHostPort(ip, strconv.Itoa(port))
	}
	return out
}

// within checks lo ≤ d ≤ hi.
func within(t testing.TB, what string, d, lo, hi time.Duration) {
	t.Helper()
	if d < lo || d > hi {
		t.Fatalf("%s = %v, want within [%v, %v]", what, d, lo, hi)
	}
}

// metric returns the value of the series of name with the given labels (0 if absent).
func metric(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				switch {
				case m.Counter != nil:
					return m.GetCounter().GetValue()
				case m.Gauge != nil:
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

func matches(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := labels[lp.GetName()]; ok {
			if v != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

// advanceUntil moves the fake clock to the resolver's next timer, round after round, until
// cond holds (at most 20 rounds).
func advanceUntil(t testing.TB, clk *fakeClock, cond func() bool) {
	t.Helper()
	for range 20 {
		if cond() {
			return
		}
		clk.advanceToNext(t)
		clk.nextArmed(t)
	}
	t.Fatal("condition not met after 20 resolver rounds")
}

func mustURL(t testing.TB, s string) url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return *u
}

// testLogger logs to the test's output: shown with -v or when the test fails.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
