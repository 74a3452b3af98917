package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/hedge"
	"github.com/spread-grpc/spread/internal/backend"
	"github.com/spread-grpc/spread/internal/connect"
	"github.com/spread-grpc/spread/internal/load"
	"github.com/spread-grpc/spread/resolver/dnsrefresh"
)

const loadUsage = `spread load (--target TARGET | --url URL) [flags]: open-loop, rate-paced load

  --target dns:///be-srv-lb.default.svc.cluster.local:50051    a gRPC target (any scheme:
           dns, dns+refresh, passthrough, ...), balanced by --lb
  --url http://127.0.0.1:8081/call/headless                   a Spread frontend mode: one
           GET ?n=1 per call

Call i is due at start + i/rate whatever the backends do; calls that find --concurrency calls
in flight are dropped and counted, never delayed. The run stops after --duration or
--max-calls. --stream keeps --concurrency long-lived streams open instead (resumed across
the backends' stream-age ends), messages paced by the server at --rate in total.`

func runLoad(ctx context.Context, args []string, e *env) error {
	fs := newFlagSet("load", e)
	cfg := load.DefaultCommandConfig()
	cfg.RegisterFlags(fs)
	fs.Usage = func() { fmt.Fprintln(e.stderr, loadUsage); fs.PrintDefaults() }
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg.Parsed(fs)
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}

	var call load.CallFunc
	var client echo.EchoServerClient
	var attempts atomic.Int64 // unary attempts sent (--target)
	what := cfg.Target
	if cfg.URL != "" {
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.MaxInFlight, MaxConnsPerHost: cfg.MaxInFlight, IdleConnTimeout: 30 * time.Second}}
		defer hc.CloseIdleConnections()
		call, what = load.HTTPFrontend(hc, cfg.URL), cfg.URL
	} else {
		b, err := dnsrefresh.NewBuilder(dnsrefresh.WithServiceConfig("")) // --lb decides
		if err != nil {
			return err
		}
		m := connect.Mode{Name: "load", Target: cfg.Target, Policy: cfg.LB, Resolvers: []resolver.Builder{b}}
		if cfg.Hedged() {
			if m, err = hedgeLoadMode(m, cfg.HedgeDelay, cfg.AttemptTimeout, cfg.HedgeBudget); err != nil {
				return usageError{err}
			}
		}
		// Counts the attempts: it runs after the hedging interceptor, once per attempt.
		m.DialOptions = append(m.DialOptions, grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			attempts.Add(1)
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
		conn, err := connect.Dial(m, nil)
		if err != nil {
			return usageError{fmt.Errorf("--target %q: %w", cfg.Target, err)}
		}
		defer conn.Close()
		conn.Connect()
		client = echo.NewEchoServerClient(conn)
		call = load.Unary(client)
	}
	// Reachable? One bounded call before the run, so a wrong address is one clear error
	// instead of a report full of failures.
	pctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	pod, err := call(pctx)
	cancel()
	if err != nil && cfg.URL != "" && status.Code(err) == codes.InvalidArgument {
		return usageError{fmt.Errorf("--url: %s", status.Convert(err).Message())} // unknown mode, bad parameter
	}
	if err != nil {
		return fmt.Errorf("%s is not reachable (first call, bounded by --connect-timeout %v): %w", what, cfg.ConnectTimeout, err)
	}
	fmt.Fprintf(e.stderr, "spread load: %s answers (pod %s); offering %g calls/s for %v\n", what, pod, cfg.Rate, cfg.Duration)

	var opts []load.Option
	stopProgress := func() {}
	if f, ok := e.stdout.(*os.File); ok && !cfg.JSON && isTerminal(f) {
		var done, failed atomic.Int64
		opts = append(opts, load.WithObserver(func(s load.Sample) {
			done.Add(1)
			if s.Code != 0 {
				failed.Add(1)
			}
		}))
		stopProgress = progress(f, time.Now(), cfg.Duration, &done, &failed)
	}
	attempts0 := attempts.Load()
	cpu0 := processCPU()
	var rep *load.Report
	if cfg.Stream {
		// Messages at most MaxStreamInterval apart, as the backend allows (a very low rate would
		// otherwise ask for an interval it refuses or that overflows).
		per := min(max(load.Seconds(float64(cfg.MaxInFlight)/cfg.Rate), time.Millisecond), backend.MaxStreamInterval)
		count := uint32(min(float64(cfg.Duration/per)+10, 100000))
		rep, err = load.RunStreams(ctx, cfg.Config, cfg.MaxInFlight, load.ResumingStream(client, count, per), opts...)
	} else {
		rep, err = load.Run(ctx, cfg.Config, call, opts...)
	}
	stopProgress()
	if err != nil {
		return err
	}
	cpu := processCPU() - cpu0
	var perCall float64
	if cfg.Target != "" && !cfg.Stream && rep.Started > 0 {
		perCall = float64(attempts.Load()-attempts0) / float64(rep.Started)
	}
	if cfg.JSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if perCall > 0 {
			return enc.Encode(struct {
				*load.Report
				AttemptsPerCall float64 `json:"attempts_per_call"`
			}{rep, perCall})
		}
		return enc.Encode(rep)
	}
	printSummary(e.stdout, what, rep)
	if perCall > 0 {
		fmt.Fprintf(e.stdout, "\nattempts    %.3f per call (%d extra attempts: hedges and retries)\n", perCall, attempts.Load()-attempts0-int64(rep.Started))
	}
	if rep.Started > 0 {
		fmt.Fprintf(e.stdout, "\nclient CPU  %.0f ms user+sys for %d calls: %.1f ms per 1,000 calls (this process, including gRPC)\n",
			float64(cpu)/float64(time.Millisecond), rep.Started, float64(cpu)/float64(time.Millisecond)*1000/float64(rep.Started))
	}
	return nil
}

// processCPU is the CPU time (user + system) this process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// isTerminal reports whether f is a character device (a terminal), without a dependency.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress rewrites one status line on the terminal every 200 ms until the returned stop.
func progress(w io.Writer, start time.Time, total time.Duration, done, failed *atomic.Int64) func() {
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
				el := time.Since(start)
				fmt.Fprintf(w, "\r\033[K%5.1fs / %v  calls %d  failed %d  %.0f/s", el.Seconds(), total, done.Load(), failed.Load(), float64(done.Load())/el.Seconds())
			}
		}
	}()
	return func() { close(quit); <-finished }
}

func printSummary(w io.Writer, what string, r *load.Report) {
	fmt.Fprintf(w, "target      %s\n", what)
	fmt.Fprintf(w, "rate        %.1f/s offered (asked %g/s), stopped by %s after %.2fs\n", r.AchievedRate, r.TargetRate, r.Stopped, r.ElapsedMS/1000)
	fmt.Fprintf(w, "calls       %d scheduled, %d started, %d ok, %d failed, %d dropped (concurrency limit)\n", r.Scheduled, r.Started, r.OK, r.Failed, r.Dropped)
	if len(r.Errors) > 0 {
		codes := make([]string, 0, len(r.Errors))
		for c := range r.Errors {
			codes = append(codes, c)
		}
		sort.Strings(codes)
		fmt.Fprintf(w, "errors     ")
		for _, c := range codes {
			fmt.Fprintf(w, " %s=%d", c, r.Errors[c])
		}
		fmt.Fprintln(w)
	}
	l := r.Latency
	fmt.Fprintf(w, "latency     p50 %.3fms  p90 %.3fms  p99 %.3fms  max %.3fms  mean %.3fms\n", l.P50MS, l.P90MS, l.P99MS, l.MaxMS, l.MeanMS)
	fmt.Fprintf(w, "\n%-44s %8s %7s %9s\n", "pod", "calls", "share", "first")
	for _, p := range r.PodNames() {
		fmt.Fprintf(w, "%-44s %8d %6.1f%% %8.0fms\n", p, r.Pods[p], 100*float64(r.Pods[p])/float64(max(r.OK, 1)), r.FirstMS[p])
	}
}

// hedgeLoadMode puts m's policy under spread_hedge and hedges the echo methods (declared
// idempotent: the echo server has no side effects).
func hedgeLoadMode(m connect.Mode, delay, attemptTimeout time.Duration, budget float64) (connect.Mode, error) {
	hedge.RegisterBalancer()
	p := hedge.Policy{Idempotent: true, PerAttemptTimeout: attemptTimeout, HedgeDelay: delay, AdaptiveHedge: delay > 0}
	h, err := hedge.New(hedge.WithPolicy("echo.EchoServer", p), hedge.WithBudget(hedge.Budget{Ratio: budget, Burst: 10}))
	if err != nil {
		return m, err
	}
	sc, err := hedge.ServiceConfig(m.Policy, nil)
	if err != nil {
		return m, err
	}
	m.ServiceConfigJSON = sc
	m.DialOptions = append(m.DialOptions, h.DialOptions()...)
	return m, nil
}
