// Package compare runs every way of spreading gRPC calls (the demo's registered modes, and
// peers such as an L7 proxy) through the same scripted cluster changes at a fixed rate, each
// mode × scenario on a fresh simulated cluster, and reports balance, how soon new pods get
// calls, failed calls and latency: Markdown tables, an offline HTML page with SVG charts, and
// JSON. Every figure comes from the run that writes it.
package compare

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/connect"
	"github.com/spread-grpc/spread/internal/load"
	"github.com/spread-grpc/spread/internal/modes"
)

// Contender is one way of spreading calls that compare can run.
type Contender struct {
	Name        string
	Description string
	// Cluster, if set, adjusts the fresh cluster's configuration for this contender.
	Cluster func(*cluster.Config)
	// Connect wires a client to cluster c and returns it with a function releasing what
	// Connect started. It must not block longer than ctx allows.
	Connect func(ctx context.Context, c *cluster.Cluster, o modes.Options) (echo.EchoServerClient, func() error, error)
}

// RegistryContender turns a registered demo mode into a Contender: a mode added to the demo
// registry (kube, xds, ...) is compared with no change here.
func RegistryContender(name string) (Contender, error) {
	f, err := modes.Lookup(name)
	if err != nil {
		return Contender{}, err
	}
	return Contender{
		Name: f.Name, Description: f.Description, Cluster: f.Cluster,
		Connect: func(ctx context.Context, c *cluster.Cluster, o modes.Options) (echo.EchoServerClient, func() error, error) {
			ms, err := modes.Build(c, o, name)
			if err != nil {
				return nil, nil, err
			}
			// Count the attempts each call makes: an interceptor after the mode's own (a
			// hedging interceptor calls it once per attempt).
			ac := &attemptCounter{}
			m := ms[0]
			m.DialOptions = append(slices.Clip(m.DialOptions), grpc.WithChainUnaryInterceptor(ac.unary))
			conn, err := connect.Dial(m, nil)
			if err != nil {
				return nil, nil, err
			}
			conn.Connect()
			ac.EchoServerClient = echo.NewEchoServerClient(conn)
			return ac, conn.Close, nil
		},
	}, nil
}

// attemptCounter is a client that counts the attempts its channel sent.
type attemptCounter struct {
	echo.EchoServerClient
	n atomic.Int64
}

func (a *attemptCounter) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	a.n.Add(1)
	return invoker(ctx, method, req, reply, cc, opts...)
}

// Attempts counts the unary attempts sent so far.
func (a *attemptCounter) Attempts() int64 { return a.n.Load() }

// Scenario is one scripted change of the cluster, made at Config.EventAt into the run.
type Scenario struct {
	Name        string
	Description string
	// Replicas is the Deployment's size at the start.
	Replicas int
	// Event changes the cluster (nil: nothing happens).
	Event func(c *cluster.Cluster) error
	// AddsPods marks scenarios whose new pods should start getting calls.
	AddsPods bool
	// Streams, if set, replaces unary calls by this many long-lived resuming streams
	// (messages paced by the server at the run's rate in total), on pods whose streams end
	// after an eighth of the run's duration (MaxStreamAge).
	Streams int
}

// Scenarios returns the standard scenarios, in report order.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "steady", Description: "5 pods, nothing changes", Replicas: 5},
		{Name: "scale-up", Description: "5 → 8 pods", Replicas: 5, AddsPods: true,
			Event: func(c *cluster.Cluster) error { return c.Scale(8) }},
		{Name: "scale-down", Description: "8 → 5 pods (graceful: endpoints first, then drain)", Replicas: 8,
			Event: func(c *cluster.Cluster) error { return c.Scale(5) }},
		{Name: "rollout", Description: "rolling restart of 5 pods (maxSurge 1, maxUnavailable 0)", Replicas: 5, AddsPods: true,
			Event: func(c *cluster.Cluster) error { _, err := c.Rollout(); return err }},
		{Name: "frozen-pod", Description: "one of 5 pods frozen (SIGSTOP-like: TCP open, no answers) to the end", Replicas: 5,
			Event: func(c *cluster.Cluster) error { _, err := c.Freeze("random", true); return err }},
		{Name: "slow-pod", Description: "one of 5 pods answers every call 200 ms late, to the end", Replicas: 5,
			Event: func(c *cluster.Cluster) error { _, err := c.Slow("random", 200*time.Millisecond); return err }},
		{Name: "killed-pod", Description: "one of 5 pods killed hard (connections reset), restarts after 1 s", Replicas: 5,
			Event: func(c *cluster.Cluster) error { _, err := c.Kill("random"); return err }},
		{Name: "streams-scale-up", Description: "10 long-lived streams, 5 → 8 pods; pods end streams at an age of duration/8 and clients resume them",
			Replicas: 5, AddsPods: true, Streams: 10,
			Event: func(c *cluster.Cluster) error { return c.Scale(8) }},
	}
}

// ScenarioNames lists the standard scenarios.
func ScenarioNames() []string {
	var out []string
	for _, s := range Scenarios() {
		out = append(out, s.Name)
	}
	return out
}

// Config describes a comparison.
type Config struct {
	// Contenders and Scenarios to run (every pair).
	Contenders []Contender
	Scenarios  []Scenario
	// Rate is the offered rate per run (calls/s); Duration each run's length.
	Rate     float64
	Duration time.Duration
	// EventAt is when the scenario's event happens, as a fraction of Duration (default 0.25).
	EventAt float64
	// Window is the width of the chart windows (default Duration/40).
	Window time.Duration
	// CallTimeout bounds each call (default 1s).
	CallTimeout time.Duration
	// Parallel is how many runs go at once (default: every contender of a scenario).
	Parallel int
	// ModeOptions are passed to the registry modes.
	ModeOptions modes.Options
	// DNSTTL of the clusters (default: the demo's, 5 s).
	DNSTTL time.Duration
	// FirstNet is the second octet of the first run's network: run k's pods take
	// 127.(FirstNet+k).0.1 and up, its DNS 127.(FirstNet+k).255.53, peers 127.(FirstNet+k).255.x
	// (default 100).
	FirstNet int
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case len(c.Contenders) == 0:
		return errors.New("compare: no modes")
	case len(c.Scenarios) == 0:
		return errors.New("compare: no scenarios")
	case math.IsNaN(c.Rate) || c.Rate <= 0:
		return fmt.Errorf("compare: rate %v: want more than 0 calls/s", c.Rate)
	case c.Duration <= 0:
		return fmt.Errorf("compare: duration %v: want more than 0", c.Duration)
	case c.EventAt < 0 || c.EventAt >= 1:
		return fmt.Errorf("compare: event at %v: want a fraction from 0 to below 1 of the duration", c.EventAt)
	case c.Window < 0 || c.CallTimeout < 0 || c.Parallel < 0 || c.DNSTTL < 0:
		return errors.New("compare: window, call timeout, parallel and DNS TTL must not be negative")
	case c.FirstNet < 0 || c.FirstNet+len(c.Contenders)*len(c.Scenarios) > 255:
		return fmt.Errorf("compare: %d runs from pod network 127.%d.0.0 do not fit in 127.0.0.0/8", len(c.Contenders)*len(c.Scenarios), c.FirstNet)
	}
	seen := map[string]bool{}
	for _, ct := range c.Contenders {
		if seen[ct.Name] {
			return fmt.Errorf("compare: mode %q given twice", ct.Name)
		}
		seen[ct.Name] = true
	}
	return (load.Config{Rate: c.Rate, Duration: c.Duration, Window: c.window()}).Validate()
}

func (c Config) window() time.Duration {
	if c.Window > 0 {
		return c.Window
	}
	return max(c.Duration/40, 10*time.Millisecond)
}

// DefaultConfig returns the configuration `spread compare` starts from, declared once: the
// Rate and Duration of each run (a Config needs both), and the values Run gives zero fields.
// Contenders and Scenarios are the caller's to choose.
func DefaultConfig() Config {
	return Config{Rate: 100, Duration: 30 * time.Second, EventAt: 0.25, CallTimeout: time.Second,
		ModeOptions: modes.DefaultOptions(), FirstNet: 100}
}

func (c *Config) defaults() {
	d := DefaultConfig()
	if c.EventAt == 0 {
		c.EventAt = d.EventAt
	}
	c.Window = c.window()
	if c.CallTimeout == 0 {
		c.CallTimeout = d.CallTimeout
	}
	if c.Parallel == 0 {
		c.Parallel = len(c.Contenders)
	}
	if c.FirstNet == 0 {
		c.FirstNet = d.FirstNet
	}
}

// Result is one contender × scenario run.
type Result struct {
	Scenario string `json:"scenario"`
	Mode     string `json:"mode"`
	// Err is set when the run could not be made; the figures are then empty.
	Err string `json:"error,omitempty"`
	// EventMS is when the event happened (ms from the start of the load).
	EventMS float64 `json:"event_ms"`
	// LivePods are the ready, unfrozen pods at the end; Idle those of them without a call in the last
	// quarter of the run.
	LivePods int `json:"live_pods"`
	Idle     int `json:"idle_pods"`
	// MaxMin is the balance over the live pods in the last quarter: the busiest pod's calls
	// over the least busy one's (1 is perfect; +Inf, shown as ∞, when a live pod is idle).
	MaxMin float64 `json:"-"`
	// MaxMinJSON is MaxMin for JSON (-1 for ∞).
	MaxMinJSON float64 `json:"max_min"`
	// NewPods counts pods created after the event; NewPodsReached those that got a call.
	NewPods        int `json:"new_pods"`
	NewPodsReached int `json:"new_pods_reached"`
	// FirstNewMS and AllNewMS: time from the event until the first and the last new pod got
	// their first call (-1: not within the run).
	FirstNewMS float64 `json:"first_new_ms"`
	AllNewMS   float64 `json:"all_new_ms"`
	// Failed counts failed and dropped calls; FailedPct their share of the scheduled calls.
	Failed    int     `json:"failed"`
	FailedPct float64 `json:"failed_pct"`
	// AttemptsPerCall is the attempts the client sent per started call (1: no extra load;
	// hedges and retries add to it; 0 when not counted, as for streams and peers).
	AttemptsPerCall float64 `json:"attempts_per_call,omitempty"`
	// Report is the load generator's full report (windows, histogram).
	Report *load.Report `json:"report,omitempty"`
}

// Report is a whole comparison.
type Report struct {
	Started    time.Time `json:"started"`
	WallMS     float64   `json:"wall_ms"`
	Rate       float64   `json:"rate"`
	DurationMS float64   `json:"duration_ms"`
	EventAt    float64   `json:"event_at"`
	Machine    string    `json:"machine"`
	Modes      []string  `json:"modes"`
	// Descriptions of the modes and scenarios, by name.
	ModeInfo     map[string]string `json:"mode_info"`
	ScenarioInfo map[string]string `json:"scenario_info"`
	Scenarios    []string          `json:"scenarios"`
	Settings     []string          `json:"settings"`
	Notes        []string          `json:"notes,omitempty"`
	Results      []Result          `json:"results"`
}

// Get returns the result of mode in scenario.
func (r *Report) Get(scenario, mode string) (Result, bool) {
	i := slices.IndexFunc(r.Results, func(x Result) bool { return x.Scenario == scenario && x.Mode == mode })
	if i < 0 {
		return Result{}, false
	}
	return r.Results[i], true
}

// Run runs every contender through every scenario and returns the report. Runs of one
// scenario go in parallel (up to cfg.Parallel), each on its own cluster. A run that fails to
// start is reported with its error; ctx ending stops the comparison with ctx's error.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	rep := &Report{Started: start, Rate: cfg.Rate, DurationMS: ms(cfg.Duration), EventAt: cfg.EventAt,
		Machine:  fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version()),
		ModeInfo: map[string]string{}, ScenarioInfo: map[string]string{}}
	iv := cfg.ModeOptions.DNSRefreshInterval
	if iv == 0 {
		iv = 5 * time.Second
	}
	ttl := cfg.DNSTTL
	if ttl == 0 {
		ttl = 5 * time.Second
	}
	rep.Settings = []string{
		fmt.Sprintf("%g calls/s per run for %v, event at %v, windows of %v, call deadline %v", cfg.Rate, cfg.Duration,
			time.Duration(cfg.EventAt*float64(cfg.Duration)), cfg.Window, cfg.CallTimeout),
		fmt.Sprintf("cluster DNS TTL %v, dns-refresh interval %v, killed pods restart after 1s, %d runs at once", ttl, iv, cfg.Parallel),
	}
	for _, ct := range cfg.Contenders {
		rep.Modes = append(rep.Modes, ct.Name)
		rep.ModeInfo[ct.Name] = ct.Description
	}
	for _, s := range cfg.Scenarios {
		rep.Scenarios = append(rep.Scenarios, s.Name)
		rep.ScenarioInfo[s.Name] = s.Description
	}
	net := cfg.FirstNet
	for _, sc := range cfg.Scenarios {
		results := make([]Result, len(cfg.Contenders))
		sem := make(chan struct{}, cfg.Parallel)
		var wg sync.WaitGroup
		for i, ct := range cfg.Contenders {
			wg.Add(1)
			sem <- struct{}{}
			go func(i int, ct Contender, net int) {
				defer wg.Done()
				defer func() { <-sem }()
				res, err := runOne(ctx, cfg, sc, ct, net, log)
				if err != nil {
					res.Err = err.Error()
					log.Warn("run failed", "scenario", sc.Name, "mode", ct.Name, "err", err)
				}
				res.Scenario, res.Mode = sc.Name, ct.Name
				results[i] = res
			}(i, ct, net)
			net++
		}
		wg.Wait()
		rep.Results = append(rep.Results, results...)
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("compare: stopped during scenario %s: %w", sc.Name, err)
		}
		log.Info("scenario done", "scenario", sc.Name, "elapsed", time.Since(start).Round(time.Millisecond))
	}
	rep.WallMS = ms(time.Since(start))
	return rep, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// runOne makes one run on a fresh cluster in pod network 127.net.0.0/16.
func runOne(ctx context.Context, cfg Config, sc Scenario, ct Contender, net int, log *slog.Logger) (Result, error) {
	r, err := prepare(ctx, cfg, sc, ct, net, log)
	if err != nil {
		return Result{}, err
	}
	defer r.close()
	if err := warm(r.setup, load.Unary(r.client)); err != nil {
		return Result{}, err
	}
	d, err := drive(ctx, cfg, sc, r)
	if err != nil {
		return Result{}, err
	}
	return score(sc, d), nil
}

// run is one contender × scenario on its own fresh cluster, with the contender's client.
type run struct {
	c      *cluster.Cluster
	client echo.EchoServerClient
	// setup bounds connecting and the warm-up together (30 s from the cluster's start).
	setup   context.Context
	closers []func() // run by close in reverse order: client, setup, cluster
}

func (r *run) close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

// prepare starts the run's cluster, on its own loopback network net, configured for the
// scenario and the contender, and connects the contender's client to it (within r.setup).
func prepare(ctx context.Context, cfg Config, sc Scenario, ct Contender, net int, log *slog.Logger) (*run, error) {
	ccfg := cluster.Config{
		Replicas: sc.Replicas, FirstPodIP: netip.AddrFrom4([4]byte{127, byte(net), 0, 1}), PodPort: 0,
		// The run's own addresses for VIP and DNS too: a free UDP port on a shared address may
		// have its TCP twin taken by a parallel run.
		VIP: fmt.Sprintf("127.96.%d.10:0", net), DNSAddr: fmt.Sprintf("127.%d.255.53:0", net), XDSAddr: fmt.Sprintf("127.%d.255.18:0", net), DNSTTL: cfg.DNSTTL, Grace: 2 * time.Second,
	}
	if sc.Streams > 0 {
		ccfg.MaxStreamAge = max(cfg.Duration/8, 100*time.Millisecond)
	}
	if ct.Cluster != nil {
		ct.Cluster(&ccfg)
	}
	clog := slog.New(slog.DiscardHandler) // the clusters' own logs only at debug level
	if log.Enabled(ctx, slog.LevelDebug) {
		clog = log.With("scenario", sc.Name, "mode", ct.Name)
	}
	c, err := cluster.Start(ccfg, clog)
	if err != nil {
		return nil, err
	}
	r := &run{c: c}
	r.closers = append(r.closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Stop(sctx); err != nil {
			log.Debug("cluster stop", "err", err)
		}
	})
	// Connecting and the first successful call get 30 s: seconds on a starved machine, and
	// nothing is measured yet.
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	r.setup = setup
	r.closers = append(r.closers, cancel)
	client, closeFn, err := ct.Connect(setup, c, cfg.ModeOptions)
	if err != nil {
		r.close()
		return nil, err
	}
	r.client = client
	r.closers = append(r.closers, func() { closeFn() })
	return r, nil
}

// warm makes calls until one succeeds, each bounded by 5 s, so connection set-up is not
// measured; it fails when ctx ends first.
func warm(ctx context.Context, call load.CallFunc) error {
	for {
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := call(wctx)
		wcancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no successful call within 30s: %w", err)
		}
		t := time.NewTimer(50 * time.Millisecond) // retry interval
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// driven is what a run produced: the load report and what score needs of the cluster.
type driven struct {
	report *load.Report
	// event is when the scenario's event happened (zero: it did not).
	event time.Time
	// attempts counts the unary attempts the client sent during the load; counted is false
	// when the client does not count them.
	attempts int64
	counted  bool
	// before are the pods before the load; live the ready, unfrozen pods at its end.
	before map[string]bool
	live   []string
}

// drive runs the load on r's client for cfg.Duration at cfg.Rate (unary calls, or sc.Streams
// resuming streams), makes the scenario's event at cfg.EventAt into it, and reads the pods
// before and after.
func drive(ctx context.Context, cfg Config, sc Scenario, r *run) (driven, error) {
	c, client := r.c, r.client
	before := map[string]bool{}
	for _, p := range c.Pods() {
		before[p.Pod] = true
	}
	eventAt := time.Duration(cfg.EventAt * float64(cfg.Duration))
	var eventTime time.Time
	var eventErr error
	evDone := make(chan struct{})
	runCtx, stopEvent := context.WithCancel(ctx)
	defer stopEvent()
	t0 := time.Now()
	go func() {
		defer close(evDone)
		if sc.Event == nil {
			return
		}
		t := time.NewTimer(time.Until(t0.Add(eventAt)))
		defer t.Stop()
		select {
		case <-t.C:
		case <-runCtx.Done():
			return
		}
		eventTime = time.Now()
		eventErr = sc.Event(c)
	}()
	counter, counted := client.(interface{ Attempts() int64 })
	var attempts0 int64
	if counted {
		attempts0 = counter.Attempts()
	}
	lcfg := load.Config{Rate: cfg.Rate, Duration: cfg.Duration, Window: cfg.Window, CallTimeout: cfg.CallTimeout}
	var lr *load.Report
	var err error
	if sc.Streams > 0 {
		every := time.Duration(float64(sc.Streams) / cfg.Rate * float64(time.Second))
		count := uint32(min(int64(cfg.Duration/max(every, time.Millisecond))+100, 100000))
		lr, err = load.RunStreams(ctx, lcfg, sc.Streams, load.ResumingStream(client, count, every))
	} else {
		lr, err = load.Run(ctx, lcfg, load.Unary(client))
	}
	stopEvent()
	<-evDone
	if err != nil {
		return driven{}, err
	}
	if eventErr != nil {
		return driven{}, fmt.Errorf("scenario event: %w", eventErr)
	}
	d := driven{report: lr, event: eventTime, counted: counted, before: before}
	if counted {
		d.attempts = counter.Attempts() - attempts0
	}
	// The live pods at the end: ready, and not frozen.
	frozen := map[string]bool{}
	for _, p := range c.Status() {
		frozen[p.Name] = p.Frozen
	}
	for _, p := range c.Endpoints().Ready() {
		if !frozen[p.Pod] {
			d.live = append(d.live, p.Pod)
		}
	}
	return d, nil
}

// score turns a driven run into its Result: failed calls, attempts per call, the balance over
// the live pods in the last quarter of the run, and how soon the pods the event added got
// their first call. It reads only d, so it is tested on synthetic reports.
func score(sc Scenario, d driven) Result {
	lr := d.report
	res := Result{Report: lr, EventMS: -1, FirstNewMS: -1, AllNewMS: -1}
	if !d.event.IsZero() {
		res.EventMS = ms(d.event.Sub(lr.Start))
	}
	if d.counted && sc.Streams == 0 && lr.Started > 0 {
		res.AttemptsPerCall = float64(d.attempts) / float64(lr.Started)
	}
	res.Failed = lr.Failed + lr.Dropped
	if lr.Scheduled > 0 {
		res.FailedPct = 100 * float64(res.Failed) / float64(lr.Scheduled)
	}
	// Balance over the live pods in the last quarter of the run.
	live := d.live
	res.LivePods = len(live)
	counts := map[string]int{}
	from := len(lr.Windows) * 3 / 4
	for _, w := range lr.Windows[from:] {
		for p, n := range w.Pods {
			counts[p] += n
		}
	}
	lo, hi := math.MaxInt, 0
	for _, p := range live {
		n := counts[p]
		if n == 0 {
			res.Idle++
		}
		lo, hi = min(lo, n), max(hi, n)
	}
	switch {
	case len(live) == 0:
		res.MaxMin = math.Inf(1)
	case lo == 0:
		res.MaxMin = math.Inf(1)
	default:
		res.MaxMin = float64(hi) / float64(lo)
	}
	res.MaxMinJSON = res.MaxMin
	if math.IsInf(res.MaxMin, 1) {
		res.MaxMinJSON = -1
	}
	if sc.AddsPods && res.EventMS >= 0 {
		var firsts []float64
		for _, p := range live {
			if d.before[p] {
				continue
			}
			res.NewPods++
			if f, ok := lr.FirstMS[p]; ok {
				res.NewPodsReached++
				firsts = append(firsts, max(f-res.EventMS, 0))
			}
		}
		if len(firsts) > 0 {
			res.FirstNewMS = slices.Min(firsts)
		}
		if res.NewPods > 0 && res.NewPodsReached == res.NewPods {
			res.AllNewMS = slices.Max(firsts)
		}
	}
	return res
}

// Names returns the contenders' names.
func Names(cs []Contender) string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return strings.Join(n, ", ")
}
