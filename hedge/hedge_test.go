package hedge_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/hedge"
	"github.com/spread-grpc/spread/internal/echotest"
	"github.com/spread-grpc/spread/internal/freeze"
)

func TestMain(m *testing.M) {
	hedge.RegisterBalancer()
	balancer.Register(recorderBuilder{}) // a test-only child policy (outrun_test.go)
	goleak.VerifyTestMain(m)
}

const sayHello = "/echo.EchoServer/SayHello"

// fleet is n real echo backends on loopback, each behind its own freeze switch.
type fleet struct {
	pods     []*echotest.Backend
	switches []*freeze.Switch
}

func startFleet(t testing.TB, n int) *fleet {
	t.Helper()
	f := &fleet{}
	for i := range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		sw := freeze.New()
		b, err := echotest.Serve(sw.Listener(lis), fmt.Sprintf("pod-%d", i), "z")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sw.Set(false); sw.Close(); b.Stop() })
		f.pods = append(f.pods, b)
		f.switches = append(f.switches, sw)
	}
	return f
}

func (f *fleet) index(addr string) int {
	return slices.IndexFunc(f.pods, func(b *echotest.Backend) bool { return b.Addr == addr })
}

// dial connects to every pod of f through spread_hedge over round_robin and waits until
// each pod has answered a call (so that every connection is up before a pod is frozen).
func dial(t testing.TB, ctx context.Context, f *fleet, h *hedge.Client, sc string) echo.EchoServerClient {
	t.Helper()
	if sc == "" {
		var err error
		if sc, err = hedge.ServiceConfig("round_robin", nil); err != nil {
			t.Fatal(err)
		}
	}
	r := manual.NewBuilderWithScheme("hedgetest")
	var addrs []resolver.Address
	for _, b := range f.pods {
		addrs = append(addrs, resolver.Address{Addr: b.Addr})
	}
	r.InitialState(resolver.State{Addresses: addrs})
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(sc),
	}
	if h != nil {
		opts = append(opts, h.DialOptions()...)
	}
	conn, err := grpc.NewClient(r.Scheme()+":///fleet", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// Warm up without the interceptors' policy engine counting: a plain client on the
	// same connection would need another channel, so warm up through this one and let
	// the callers reset their counters (they read Stats deltas).
	c := echo.NewEchoServerClient(conn)
	for {
		all := true
		for _, b := range f.pods {
			all = all && b.Calls() > 0
		}
		if all {
			return c
		}
		if _, err := c.SayHello(ctx, &echo.EchoRequest{Name: "warmup"}); err != nil {
			t.Fatalf("warm-up call: %v", err)
		}
	}
}

// result is one call's outcome, as the test's workers saw it.
type result struct {
	err error
	d   time.Duration
	pod string
	// peer is the address the call was sent to.
	peer string
}

// callMany makes n SayHello calls from workers goroutines, each bounded by timeout.
func callMany(ctx context.Context, c echo.EchoServerClient, n, workers int, timeout time.Duration) []result {
	out := make([]result, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, timeout)
				start := time.Now()
				var p peer.Peer
				rep, err := c.SayHello(cctx, &echo.EchoRequest{Name: fmt.Sprint("call-", i)}, grpc.Peer(&p))
				cancel()
				out[i] = result{err: err, d: time.Since(start), pod: rep.GetPod()}
				if p.Addr != nil {
					out[i].peer = p.Addr.String()
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// observer collects the CallInfo of every call of the test phase.
type observer struct {
	mu    sync.Mutex
	on    bool
	calls []hedge.CallInfo
}

func (o *observer) observe(ci hedge.CallInfo) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.on {
		o.calls = append(o.calls, ci)
	}
}

func (o *observer) start() { o.mu.Lock(); o.on = true; o.mu.Unlock() }

func (o *observer) infos() []hedge.CallInfo {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.calls)
}

func newClient(t testing.TB, obs *observer, opts ...hedge.Option) *hedge.Client {
	t.Helper()
	if obs != nil {
		opts = append(opts, hedge.WithObserver(obs.observe))
	}
	h, err := hedge.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func failed(rs []result) (n int, first error) {
	for _, r := range rs {
		if r.err != nil {
			if n == 0 {
				first = r.err
			}
			n++
		}
	}
	return n, first
}

// checkDistinctPods fails if a call sent two attempts to one pod.
func checkDistinctPods(t *testing.T, infos []hedge.CallInfo) {
	t.Helper()
	for _, ci := range infos {
		seen := map[string]bool{}
		for _, a := range ci.Attempts {
			if a.Addr == "" {
				continue
			}
			if seen[a.Addr] || a.SamePod {
				t.Fatalf("a call sent two attempts to %s although other pods were available: %+v", a.Addr, ci)
			}
			seen[a.Addr] = true
		}
	}
}

// A frozen pod (TCP open, nothing answers) among 10: every one of 2000 idempotent calls
// succeeds, and those whose first attempt went to the frozen pod were answered by another.
func TestFrozenPodAmongTen(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	f := startFleet(t, 10)
	obs := &observer{}
	h := newClient(t, obs,
		hedge.WithPolicy(sayHello, hedge.Policy{Idempotent: true, MaxAttempts: 2, PerAttemptTimeout: 3 * time.Second, HedgeDelay: 100 * time.Millisecond}),
		// Every call may have its one hedge (see TestSlowPodAmongFive), however slow a busy
		// machine makes the healthy pods: what is tested here is where the hedges go.
		hedge.WithBudget(hedge.Budget{Ratio: 1, Burst: 20}))
	c := dial(t, ctx, f, h, "")
	const frozen = 3
	f.switches[frozen].Set(true)
	frozenCalls := f.pods[frozen].Calls()
	obs.start()

	rs := callMany(ctx, c, 2000, 8, 20*time.Second)

	if n, err := failed(rs); n > 0 {
		t.Fatalf("%d of %d calls failed with a frozen pod, first: %v", n, len(rs), err)
	}
	if got := f.pods[frozen].Calls(); got != frozenCalls {
		t.Fatalf("the frozen pod served %d calls while frozen", got-frozenCalls)
	}
	infos := obs.infos()
	if len(infos) != len(rs) {
		t.Fatalf("observed %d calls, made %d", len(infos), len(rs))
	}
	checkDistinctPods(t, infos)
	rescued := 0
	for _, ci := range infos {
		if ci.Winner < 0 {
			t.Fatalf("a successful call without a winner: %+v", ci)
		}
		w := ci.Attempts[ci.Winner]
		if f.index(w.Addr) == frozen || w.Addr == "" {
			t.Fatalf("a call was answered by %q (the frozen pod is %s): %+v", w.Addr, f.pods[frozen].Addr, ci)
		}
		if f.index(ci.Attempts[0].Addr) == frozen {
			rescued++
		}
	}
	// round_robin sends a tenth of the first attempts to the frozen pod.
	if rescued < len(rs)/40 {
		t.Fatalf("only %d calls had their first attempt on the frozen pod: the test did not test hedging", rescued)
	}
	st := h.Stats()
	t.Logf("frozen pod: %d calls rescued by another pod; stats %+v; attempts/call %.3f", rescued, st, st.AttemptsPerCall())
}

// Without hedging, the per-attempt timeout abandons an attempt to a frozen pod and the
// call is retried on another pod.
func TestPerAttemptTimeoutRetries(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	f := startFleet(t, 5)
	obs := &observer{}
	const timeout = time.Second
	h := newClient(t, obs,
		hedge.WithPolicy(sayHello, hedge.Policy{Idempotent: true, PerAttemptTimeout: timeout}),
		hedge.WithBudget(hedge.Budget{Ratio: 0.5, Burst: 20}))
	c := dial(t, ctx, f, h, "")
	f.switches[0].Set(true)
	obs.start()
	rs := callMany(ctx, c, 100, 4, 20*time.Second)
	if n, err := failed(rs); n > 0 {
		t.Fatalf("%d calls failed, first: %v", n, err)
	}
	infos := obs.infos()
	checkDistinctPods(t, infos)
	retried := 0
	for _, ci := range infos {
		if f.index(ci.Attempts[0].Addr) != 0 {
			continue
		}
		retried++
		if len(ci.Attempts) < 2 || !ci.Attempts[0].TimedOut || ci.Attempts[1].Kind != hedge.Retry ||
			ci.Attempts[1].Start < timeout || f.index(ci.Attempts[ci.Winner].Addr) == 0 {
			t.Fatalf("a call to the frozen pod was not retried on another pod after its attempt timed out: %+v", ci)
		}
	}
	if retried == 0 {
		t.Fatal("no call went first to the frozen pod")
	}
	if st := h.Stats(); st.Hedges != 0 {
		t.Fatalf("hedges without a hedge delay: %+v", st)
	}
}

// A slow pod (+200 ms on every call) among 5: every call whose first attempt went to the
// slow pod got a hedge, sent after the hedge delay to another pod, and the hedges answered
// (nearly) all of them, so that no call waited for the slow pod. The raw p99 figures are in
// BenchmarkSlowPod and `spread compare`.
func TestSlowPodAmongFive(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	f := startFleet(t, 5)
	obs := &observer{}
	const delay = 20 * time.Millisecond
	h := newClient(t, obs,
		hedge.WithPolicy(sayHello, hedge.Policy{Idempotent: true, HedgeDelay: delay, MaxAttempts: 2}),
		// Every call may have its one hedge: each deposits a token before it can take one,
		// and 8 callers hold at most 8 of the 20 (the budget's own bound is tested below).
		hedge.WithBudget(hedge.Budget{Ratio: 1, Burst: 20}))
	c := dial(t, ctx, f, h, "")
	const slow = 1
	f.pods[slow].Server.SetDelay(200 * time.Millisecond)
	obs.start()

	rs := callMany(ctx, c, 1000, 8, 5*time.Second)

	if n, err := failed(rs); n > 0 {
		t.Fatalf("%d calls failed, first: %v", n, err)
	}
	infos := obs.infos()
	checkDistinctPods(t, infos)
	slowFirst, hedgeWon := 0, 0
	for _, ci := range infos {
		if f.index(ci.Attempts[0].Addr) != slow {
			continue
		}
		slowFirst++
		if len(ci.Attempts) < 2 {
			t.Fatalf("a call to the slow pod got no hedge: %+v; stats %+v", ci, h.Stats())
		}
		if h := ci.Attempts[1]; h.Kind != hedge.Hedge || h.Start < delay || f.index(h.Addr) == slow {
			t.Fatalf("the second attempt of a call to the slow pod is not a hedge to another pod after %v: %+v", delay, ci)
		}
		if f.index(ci.Attempts[ci.Winner].Addr) != slow {
			hedgeWon++
		}
	}
	if slowFirst < len(rs)/20 {
		t.Fatalf("only %d calls had their first attempt on the slow pod: the test did not test hedging", slowFirst)
	}
	// A healthy pod answers a hedge in a few ms; the slow pod takes 200 ms. Allow a busy
	// machine to lose a few races.
	if hedgeWon*10 < slowFirst*8 {
		t.Fatalf("hedges answered only %d of the %d calls sent first to the slow pod", hedgeWon, slowFirst)
	}
	t.Logf("slow pod: %d calls sent first to it, %d answered by a hedge; stats %+v", slowFirst, hedgeWon, h.Stats())
}

// All pods healthy: the extra attempts stay under 2 % of the calls (the budget guarantees
// it; a hedge delay far above healthy latency keeps them near zero).
func TestHealthyFewExtraAttempts(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	f := startFleet(t, 5)
	h := newClient(t, nil,
		hedge.WithPolicy(sayHello, hedge.Policy{Idempotent: true, HedgeDelay: 100 * time.Millisecond, PerAttemptTimeout: time.Second}),
		hedge.WithBudget(hedge.Budget{Ratio: 0.01, Burst: 5}))
	c := dial(t, ctx, f, h, "")
	before := h.Stats()
	const n = 2000
	rs := callMany(ctx, c, n, 8, 5*time.Second)
	if k, err := failed(rs); k > 0 {
		t.Fatalf("%d calls failed, first: %v", k, err)
	}
	st := h.Stats()
	calls, extra := st.Calls-before.Calls, st.Extra()-before.Extra()
	if calls != n {
		t.Fatalf("the interceptor saw %d calls, want %d", calls, n)
	}
	if extra*50 > n {
		t.Fatalf("%d extra attempts for %d healthy calls: more than 2 %%", extra, n)
	}
	t.Logf("healthy: %d extra attempts for %d calls", extra, n)
}

// Every pod slow: hedges fire for nearly every call, and the budget stops them at
// Burst + Ratio × calls.
func TestAllSlowWithinBudget(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	f := startFleet(t, 3)
	b := hedge.Budget{Ratio: 0.1, Burst: 10}
	reg := prometheus.NewRegistry()
	h := newClient(t, nil,
		hedge.WithPolicy(sayHello, hedge.Policy{Idempotent: true, HedgeDelay: 2 * time.Millisecond}),
		hedge.WithBudget(b), hedge.WithRegisterer(reg))
	c := dial(t, ctx, f, h, "")
	for _, p := range f.pods {
		p.Server.SetDelay(50 * time.Millisecond)
	}
	before := h.Stats()
	const n = 300
	rs := callMany(ctx, c, n, 8, 5*time.Second)
	if k, err := failed(rs); k > 0 {
		t.Fatalf("%d calls failed, first: %v", k, err)
	}
	st := h.Stats()
	calls := st.Calls - before.Calls
	extra := st.Extra() - before.Extra()
	limit := b.Burst + b.Ratio*float64(calls)
	if float64(extra) > limit {
		t.Fatalf("%d extra attempts for %d calls: above the budget's %v", extra, calls, limit)
	}
	if st.BudgetExhausted-before.BudgetExhausted == 0 {
		t.Fatalf("the budget never ran out although every pod is slow: %+v", st)
	}
	// The metrics say the same as Stats.
	for name, want := range map[string]int64{
		"spread_hedge_calls_total":            st.Calls,
		"spread_hedge_attempts_total":         st.Attempts,
		"spread_hedge_budget_exhausted_total": st.BudgetExhausted,
	} {
		if got := counterSum(t, reg, name); got != float64(want) {
			t.Errorf("%s = %v, Stats say %d", name, got, want)
		}
	}
	var served int64
	for _, p := range f.pods {
		served += p.Calls()
	}
	t.Logf("all slow: %d calls, %d extra attempts (budget %v), %d budget refusals, pods saw %d calls",
		calls, extra, limit, st.BudgetExhausted-before.BudgetExhausted, served)
}

// A method not declared idempotent is attempted exactly once, even where an idempotent
// method would be hedged and retried: on slow pods, and on a frozen pod.
func TestNonIdempotentOnce(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	f := startFleet(t, 3)
	h := newClient(t, nil,
		hedge.WithDefaultPolicy(hedge.Policy{Idempotent: true, HedgeDelay: time.Millisecond, PerAttemptTimeout: 20 * time.Millisecond}),
		hedge.WithPolicy(sayHello, hedge.Policy{}))
	c := dial(t, ctx, f, h, "")
	var total int64
	for _, p := range f.pods {
		total += p.Calls()
		p.Server.SetDelay(50 * time.Millisecond)
	}
	const n = 30
	rs := callMany(ctx, c, n, 3, 5*time.Second)
	if k, err := failed(rs); k > 0 {
		t.Fatalf("%d calls failed, first: %v", k, err)
	}
	var after int64
	for _, p := range f.pods {
		after += p.Calls()
	}
	if after-total != n {
		t.Fatalf("the pods saw %d attempts of %d non-idempotent calls", after-total, n)
	}
	if st := h.Stats(); st.Extra() != 0 {
		t.Fatalf("extra attempts for a non-idempotent method: %+v", st)
	}

	// A frozen pod: the calls sent to it fail by their deadline and reach no other pod.
	for _, p := range f.pods {
		p.Server.SetDelay(0)
	}
	f.switches[0].Set(true)
	before := after
	rs = callMany(ctx, c, n, 3, 2*time.Second)
	k := 0
	for _, r := range rs {
		if r.err == nil {
			continue
		}
		k++
		if status.Code(r.err) != codes.DeadlineExceeded || r.peer != f.pods[0].Addr {
			t.Fatalf("a call failed with %v on %s: want only those sent to the frozen pod %s to fail, by their deadline", r.err, r.peer, f.pods[0].Addr)
		}
	}
	if k == 0 {
		t.Fatal("no call went to the frozen pod")
	}
	after = 0
	for _, p := range f.pods {
		after += p.Calls()
	}
	if got := after - before; got != int64(n-k) {
		t.Fatalf("the live pods saw %d calls, want %d (the calls not sent to the frozen pod)", got, n-k)
	}
}

// The policy can come from the service config alone (as the kubernetes:/// and dns+refresh
// resolvers push it): a slow pod gets hedged, and a method the config declares
// non-idempotent is not.
func TestPolicyFromServiceConfig(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	f := startFleet(t, 3)
	sc, err := hedge.ServiceConfig("round_robin", map[string]hedge.Policy{
		sayHello: {Idempotent: true, HedgeDelay: 10 * time.Millisecond, MaxAttempts: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	obs := &observer{}
	h := newClient(t, obs, hedge.WithBudget(hedge.Budget{Ratio: 1, Burst: 10}))
	c := dial(t, ctx, f, h, sc)
	f.pods[0].Server.SetDelay(200 * time.Millisecond)
	obs.start()
	rs := callMany(ctx, c, 60, 3, 5*time.Second)
	if k, err := failed(rs); k > 0 {
		t.Fatalf("%d calls failed, first: %v", k, err)
	}
	infos := obs.infos()
	checkDistinctPods(t, infos)
	hedged := 0
	for _, ci := range infos {
		if f.index(ci.Attempts[0].Addr) == 0 {
			if len(ci.Attempts) < 2 {
				t.Fatalf("a call to the slow pod was not hedged with the policy from the service config: %+v", ci)
			}
			hedged++
		}
	}
	if hedged == 0 {
		t.Fatal("no call went first to the slow pod")
	}
}

// Server-streaming calls are hedged until their first reply; the winner's stream then
// delivers every reply.
func TestStreamFrozenPod(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	f := startFleet(t, 5)
	obs := &observer{}
	h := newClient(t, obs, hedge.WithPolicy("/echo.EchoServer/SayHelloStream",
		hedge.Policy{Idempotent: true, MaxAttempts: 2, HedgeDelay: 50 * time.Millisecond, PerAttemptTimeout: 200 * time.Millisecond}),
		hedge.WithBudget(hedge.Budget{Ratio: 1, Burst: 20}))
	c := dial(t, ctx, f, h, "")
	f.switches[2].Set(true)
	obs.start()
	for i := range 50 {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := c.SayHelloStream(sctx, &echo.EchoRequest{Name: fmt.Sprint("s", i), Count: 3})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		var pods []string
		for {
			rep, err := s.Recv()
			if err != nil {
				if status.Code(err) != codes.OK && err.Error() != "EOF" {
					cancel()
					t.Fatalf("stream %d: %v", i, err)
				}
				break
			}
			pods = append(pods, rep.GetPod())
		}
		cancel()
		if len(pods) != 3 || pods[0] != pods[1] || pods[1] != pods[2] || pods[0] == f.pods[2].Name {
			t.Fatalf("stream %d: replies from %v, want 3 from one live pod", i, pods)
		}
	}
	rescued := 0
	for _, ci := range obs.infos() {
		if f.index(ci.Attempts[0].Addr) == 2 {
			rescued++
		}
	}
	if rescued == 0 {
		t.Fatal("no stream went first to the frozen pod")
	}
}

func TestOptionsValidate(t *testing.T) {
	for name, opt := range map[string]hedge.Option{
		"bad method":       hedge.WithPolicy("a/b/c", hedge.Policy{}),
		"negative delay":   hedge.WithPolicy(sayHello, hedge.Policy{Idempotent: true, HedgeDelay: -1}),
		"too many":         hedge.WithPolicy(sayHello, hedge.Policy{Idempotent: true, MaxAttempts: 9}),
		"adaptive no seed": hedge.WithDefaultPolicy(hedge.Policy{Idempotent: true, AdaptiveHedge: true}),
		"budget NaN":       hedge.WithBudget(hedge.Budget{Ratio: -0.1}),
		"OK retryable":     hedge.WithDefaultPolicy(hedge.Policy{Idempotent: true, RetryableCodes: []codes.Code{codes.OK}}),
	} {
		if _, err := hedge.New(opt); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// The service config ServiceConfig writes is one grpc-go accepts, and bad spread_hedge
// configs are refused by grpc.NewClient with the reason.
func TestServiceConfigParsed(t *testing.T) {
	good, err := hedge.ServiceConfig(`{"round_robin": {}}`, map[string]hedge.Policy{
		"echo.EchoServer": {Idempotent: true, HedgeDelay: 10 * time.Millisecond, AdaptiveHedge: true, RetryableCodes: []codes.Code{codes.Unavailable, codes.ResourceExhausted}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sc, wantErr string
	}{
		{good, ""},
		{`{"loadBalancingConfig": [{"spread_hedge": {"childPolicy": [{"no_such_policy": {}}]}}]}`, "no registered policy"},
		{`{"loadBalancingConfig": [{"spread_hedge": {"childPolicy": [{"round_robin": {}}], "methodPolicy": [{"name": ["a/b/c"]}]}}]}`, "want /package.Service/Method"},
		{`{"loadBalancingConfig": [{"spread_hedge": {"childPolicy": [{"round_robin": {}}], "methodPolicy": [{"name": ["s/m"], "hedgeDelay": "soon"}]}}]}`, "duration"},
		{`{"loadBalancingConfig": [{"spread_hedge": {"childPolicy": [{"round_robin": {}}], "methodPolicy": [{"name": ["s/m"], "retryableStatusCodes": ["NOPE"]}]}}]}`, "status code"},
	} {
		conn, err := grpc.NewClient("passthrough:///127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(tc.sc))
		if conn != nil {
			conn.Close()
		}
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.sc, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one containing %q", tc.sc, err, tc.wantErr)
		}
	}
	if _, err := hedge.ServiceConfig(`{"a": {}, "b": {}}`, nil); err == nil {
		t.Error("two child policies in one object accepted")
	}
}

// counterSum adds up every series of the counter family name in reg.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
