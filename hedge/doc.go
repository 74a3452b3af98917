// Package hedge makes grpc-go calls tail-tolerant: per-attempt timeouts, retries on another
// pod and hedging (a second attempt after a delay, the first answer wins and the others are
// cancelled) for methods declared idempotent, bounded by a token-bucket budget so that a
// sick fleet is not hit twice as hard. grpc-go implements retries (gRFC A6) but neither
// hedging nor per-attempt timeouts; this package adds them as a pair of client
// interceptors (unary, and server-streaming until the first reply).
//
// A Client holds the per-method policies (WithPolicy, WithDefaultPolicy, or the service
// config: see ServiceConfig), the Budget and the metrics (WithRegisterer). Its DialOptions
// install the interceptors on a channel:
//
//	hedge.RegisterBalancer() // once, in main
//	h, err := hedge.New(
//		hedge.WithPolicy("/echo.EchoServer/SayHello", hedge.Policy{
//			Idempotent: true, PerAttemptTimeout: 300 * time.Millisecond, HedgeDelay: 50 * time.Millisecond}),
//		hedge.WithBudget(hedge.Budget{Ratio: 0.1, Burst: 10}),
//		hedge.WithRegisterer(reg))
//	sc, _ := hedge.ServiceConfig("round_robin", nil)
//	conn, err := grpc.NewClient(target, append(h.DialOptions(), grpc.WithDefaultServiceConfig(sc))...)
//
// # Never the same pod twice
//
// An interceptor cannot choose a pod: the channel's load-balancing policy does. The
// spread_hedge policy (BalancerName) wraps a child policy such as round_robin and reads the
// call's attempt from the pick's context: it asks the child again while the pick is a pod an
// earlier attempt of the same call went to, and takes a repeated pod only when no other is
// available. Channels that do not run spread_hedge (xDS, whose policy the control plane
// chooses) still get timeouts, retries and hedges, but an attempt may land on a pod already
// tried.
//
// RegisterBalancer is the package's only global effect, and importing the package does not
// do it: grpc-go knows load-balancing policies only through its global registry, so main
// registers spread_hedge once, as it would any policy.
//
// # Idempotency
//
// Only a method whose Policy says Idempotent is ever attempted more than once. Any other
// method passes through untouched: attempted exactly once, whatever happens to it after the
// request may have reached a server (grpc-go still retries, transparently, a request that
// never left the client).
//
// # Metrics
//
// spread_hedge_calls_total{method}, spread_hedge_attempts_total{method,kind},
// spread_hedge_wins_total{method,kind} and spread_hedge_budget_exhausted_total{method}, with
// kind one of first, hedge, retry. Client.Stats returns the same totals.
package hedge
