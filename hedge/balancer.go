package hedge

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
)

// BalancerName is the name of the load-balancing policy that steers the attempts of one
// call to different pods. Use it in a service config (see ServiceConfig) after
// RegisterBalancer.
const BalancerName = "spread_hedge"

var registerOnce sync.Once

// RegisterBalancer registers the spread_hedge policy with grpc-go's balancer registry, once
// (later calls do nothing). It is the package's only global effect, and importing the
// package does not do it: call it from main (or TestMain) before creating clients, as
// grpc-go requires of balancer registrations.
func RegisterBalancer() { registerOnce.Do(func() { balancer.Register(builder{}) }) }

// ServiceConfig returns a service config whose load-balancing policy is spread_hedge over
// the child policy, carrying the per-method policies methods (keys as for WithPolicy). child
// is a policy name ("round_robin") or a whole load-balancing config object
// (`{"outlier_detection_experimental": {...}}`). The kubernetes:/// and dns+refresh resolvers
// can push it (their WithServiceConfig), or a client sets it as its default service config;
// policies set with Go options take precedence over it.
func ServiceConfig(child string, methods map[string]Policy) (string, error) {
	lb, err := LoadBalancingConfig(child, methods)
	if err != nil {
		return "", err
	}
	return `{"loadBalancingConfig": [` + lb + `]}`, nil
}

// LoadBalancingConfig returns the spread_hedge entry of a service config's
// loadBalancingConfig list (`{"spread_hedge": {...}}`), for a service config with more in it
// (health checking, method timeouts); see ServiceConfig.
func LoadBalancingConfig(child string, methods map[string]Policy) (string, error) {
	var childCfg map[string]json.RawMessage
	if strings.HasPrefix(strings.TrimSpace(child), "{") {
		if err := json.Unmarshal([]byte(child), &childCfg); err != nil || len(childCfg) != 1 {
			return "", fmt.Errorf("hedge: child policy %s: want one {\"name\": {config}} object", child)
		}
	} else {
		childCfg = map[string]json.RawMessage{child: json.RawMessage("{}")}
	}
	cfg := lbConfigJSON{ChildPolicy: []map[string]json.RawMessage{childCfg}}
	names := make([]string, 0, len(methods))
	for name := range methods {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := methods[name]
		if err := p.Validate(); err != nil {
			return "", fmt.Errorf("hedge: method %s: %w", name, err)
		}
		k, err := methodKey(name)
		if err != nil {
			return "", err
		}
		cfg.MethodPolicy = append(cfg.MethodPolicy, methodPolicyJSON{Name: []string{k}, policyJSON: toJSON(p)})
	}
	b, err := json.Marshal(map[string]any{BalancerName: cfg})
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// lbConfigJSON is spread_hedge's configuration in a service config:
//
//	{"spread_hedge": {
//	  "childPolicy": [{"round_robin": {}}],
//	  "methodPolicy": [{"name": ["/echo.EchoServer/SayHello"], "idempotent": true,
//	    "maxAttempts": 3, "perAttemptTimeout": "0.2s", "hedgeDelay": "0.05s", "adaptiveHedge": true,
//	    "retryableStatusCodes": ["UNAVAILABLE"]}]}}
type lbConfigJSON struct {
	ChildPolicy  []map[string]json.RawMessage `json:"childPolicy"`
	MethodPolicy []methodPolicyJSON           `json:"methodPolicy,omitempty"`
}

type methodPolicyJSON struct {
	Name []string `json:"name"`
	policyJSON
}

type policyJSON struct {
	Idempotent        bool     `json:"idempotent"`
	MaxAttempts       int      `json:"maxAttempts,omitempty"`
	PerAttemptTimeout string   `json:"perAttemptTimeout,omitempty"`
	HedgeDelay        string   `json:"hedgeDelay,omitempty"`
	AdaptiveHedge     bool     `json:"adaptiveHedge,omitempty"`
	MinHedgeDelay     string   `json:"minHedgeDelay,omitempty"`
	MaxHedgeDelay     string   `json:"maxHedgeDelay,omitempty"`
	RetryableCodes    []string `json:"retryableStatusCodes,omitempty"`
}

func durJSON(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return fmt.Sprintf("%gs", d.Seconds())
}

func parseDurJSON(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("hedge: duration %q: want e.g. \"0.05s\"", s)
	}
	return d, nil
}

func toJSON(p Policy) policyJSON {
	j := policyJSON{
		Idempotent: p.Idempotent, MaxAttempts: p.MaxAttempts, AdaptiveHedge: p.AdaptiveHedge,
		PerAttemptTimeout: durJSON(p.PerAttemptTimeout), HedgeDelay: durJSON(p.HedgeDelay),
		MinHedgeDelay: durJSON(p.MinHedgeDelay), MaxHedgeDelay: durJSON(p.MaxHedgeDelay),
	}
	for _, c := range p.RetryableCodes {
		j.RetryableCodes = append(j.RetryableCodes, codeName(c))
	}
	return j
}

// codeName is the service-config spelling of a code ("UNAVAILABLE").
func codeName(c codes.Code) string {
	if c == codes.OK {
		return "OK"
	}
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

func (j policyJSON) policy() (Policy, error) {
	p := Policy{Idempotent: j.Idempotent, MaxAttempts: j.MaxAttempts, AdaptiveHedge: j.AdaptiveHedge}
	var err error
	for _, f := range []struct {
		s string
		d *time.Duration
	}{{j.PerAttemptTimeout, &p.PerAttemptTimeout}, {j.HedgeDelay, &p.HedgeDelay}, {j.MinHedgeDelay, &p.MinHedgeDelay}, {j.MaxHedgeDelay, &p.MaxHedgeDelay}} {
		if *f.d, err = parseDurJSON(f.s); err != nil {
			return Policy{}, err
		}
	}
	for _, s := range j.RetryableCodes {
		var c codes.Code
		if err := c.UnmarshalJSON([]byte(fmt.Sprintf("%q", s))); err != nil {
			return Policy{}, fmt.Errorf("hedge: status code %q: %w", s, err)
		}
		p.RetryableCodes = append(p.RetryableCodes, c)
	}
	return p, p.Validate()
}

// lbConfig is the parsed configuration.
type lbConfig struct {
	serviceconfig.LoadBalancingConfig
	child    balancer.Builder
	childCfg serviceconfig.LoadBalancingConfig
	methods  policies
}

type builder struct{}

var _ balancer.ConfigParser = builder{}

func (builder) Name() string { return BalancerName }

func (builder) ParseConfig(js json.RawMessage) (serviceconfig.LoadBalancingConfig, error) {
	var j lbConfigJSON
	if err := json.Unmarshal(js, &j); err != nil {
		return nil, fmt.Errorf("%s: config: %w", BalancerName, err)
	}
	cfg := &lbConfig{methods: policies{}}
	for _, m := range j.ChildPolicy {
		for name, raw := range m {
			b := balancer.Get(name)
			if b == nil {
				continue
			}
			cfg.child = b
			if p, ok := b.(balancer.ConfigParser); ok {
				c, err := p.ParseConfig(raw)
				if err != nil {
					return nil, fmt.Errorf("%s: child policy %s: %w", BalancerName, name, err)
				}
				cfg.childCfg = c
			}
		}
		if cfg.child != nil {
			break
		}
	}
	if cfg.child == nil {
		return nil, fmt.Errorf("%s: no registered policy in childPolicy", BalancerName)
	}
	for _, mp := range j.MethodPolicy {
		p, err := mp.policy()
		if err != nil {
			return nil, fmt.Errorf("%s: method policy %v: %w", BalancerName, mp.Name, err)
		}
		if len(mp.Name) == 0 {
			return nil, fmt.Errorf("%s: a method policy without a name", BalancerName)
		}
		for _, n := range mp.Name {
			k, err := methodKey(n)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", BalancerName, err)
			}
			cfg.methods[k] = p
		}
	}
	return cfg, nil
}

func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &hedgeBalancer{opts: opts, addrs: map[balancer.SubConn]string{}}
	b.cc = &wrappedCC{ClientConn: cc, b: b}
	return b
}

// hedgeBalancer runs a child policy and wraps its pickers so that the attempts of one call
// avoid the pods earlier attempts of the call were sent to.
//
// Lock order: childMu before mu.
type hedgeBalancer struct {
	cc   *wrappedCC
	opts balancer.BuildOptions

	childMu   sync.Mutex // guards the child; grpc-go serializes the calls into it anyway
	child     balancer.Balancer
	childName string

	mu      sync.Mutex
	addrs   map[balancer.SubConn]string // every live SubConn's address
	methods policies
}

func (b *hedgeBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	cfg, ok := s.BalancerConfig.(*lbConfig)
	if !ok {
		return fmt.Errorf("%s: unexpected config %T", BalancerName, s.BalancerConfig)
	}
	b.mu.Lock()
	b.methods = cfg.methods
	b.mu.Unlock()
	b.childMu.Lock()
	defer b.childMu.Unlock()
	if b.child == nil || b.childName != cfg.child.Name() {
		if b.child != nil {
			b.child.Close()
		}
		b.child, b.childName = cfg.child.Build(b.cc, b.opts), cfg.child.Name()
	}
	s.BalancerConfig = cfg.childCfg
	return b.child.UpdateClientConnState(s)
}

func (b *hedgeBalancer) ResolverError(err error) {
	b.childMu.Lock()
	defer b.childMu.Unlock()
	if b.child != nil {
		b.child.ResolverError(err)
	}
}

func (b *hedgeBalancer) UpdateSubConnState(sc balancer.SubConn, s balancer.SubConnState) {
	b.childMu.Lock()
	defer b.childMu.Unlock()
	if b.child != nil {
		b.child.UpdateSubConnState(sc, s)
	}
}

func (b *hedgeBalancer) Close() {
	b.childMu.Lock()
	defer b.childMu.Unlock()
	if b.child != nil {
		b.child.Close()
		b.child = nil
	}
}

func (b *hedgeBalancer) ExitIdle() {
	b.childMu.Lock()
	defer b.childMu.Unlock()
	if b.child != nil {
		b.child.ExitIdle()
	}
}

func (b *hedgeBalancer) addr(sc balancer.SubConn) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addrs[sc]
}

// wrappedCC is the child's ClientConn: it remembers each SubConn's address and wraps the
// child's pickers.
type wrappedCC struct {
	balancer.ClientConn
	b *hedgeBalancer
}

func (w *wrappedCC) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	var sc balancer.SubConn
	listener := opts.StateListener
	opts.StateListener = func(s balancer.SubConnState) {
		if s.ConnectivityState == connectivity.Shutdown {
			w.b.mu.Lock()
			delete(w.b.addrs, sc)
			w.b.mu.Unlock()
		}
		if listener != nil {
			listener(s)
		}
	}
	sc, err := w.ClientConn.NewSubConn(addrs, opts)
	if err != nil {
		return nil, err
	}
	if len(addrs) > 0 {
		w.b.mu.Lock()
		w.b.addrs[sc] = addrs[0].Addr
		w.b.mu.Unlock()
	}
	return sc, nil
}

func (w *wrappedCC) UpdateAddresses(sc balancer.SubConn, addrs []resolver.Address) {
	if len(addrs) > 0 {
		w.b.mu.Lock()
		w.b.addrs[sc] = addrs[0].Addr
		w.b.mu.Unlock()
	}
	w.ClientConn.UpdateAddresses(sc, addrs) //nolint:staticcheck // forwarded for children that still use it
}

func (w *wrappedCC) UpdateState(s balancer.State) {
	w.b.mu.Lock()
	methods := w.b.methods
	w.b.mu.Unlock()
	s.Picker = &picker{child: s.Picker, b: w.b, methods: methods}
	w.ClientConn.UpdateState(s)
}

// maxRepicks bounds how often the picker asks the child again for a pod the call has not
// tried yet (round_robin moves on one pod per pick).
const maxRepicks = 16

// picker asks the child picker for a pod, again while the pick is one the call already
// tried and another may be available, and records the pick on the call.
type picker struct {
	child   balancer.Picker
	b       *hedgeBalancer
	methods policies
}

var errNoPicker = errors.New(BalancerName + ": no picker")

func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	if p.child == nil {
		return balancer.PickResult{}, errNoPicker
	}
	a := attemptFrom(info.Ctx)
	if a == nil {
		return p.child.Pick(info)
	}
	a.call.setLBPolicy(p.methods, info.FullMethodName)
	var first balancer.PickResult
	var firstAddr string
	for i := 0; i < maxRepicks; i++ {
		r, err := p.child.Pick(info)
		if err != nil {
			if i > 0 {
				break // the first pick was fine, just already tried
			}
			return r, err
		}
		addr := p.b.addr(r.SubConn)
		if !a.call.tried(addr) {
			a.picked(addr, false)
			return withDone(r, a), nil
		}
		if i == 0 {
			first, firstAddr = r, addr
		} else if r.Done != nil {
			r.Done(balancer.DoneInfo{}) // an unused pick: tell the child (e.g. least_request)
		}
	}
	// Every pick was a pod already tried: no other is available.
	a.picked(firstAddr, true)
	return withDone(first, a), nil
}

// withDone reports an attempt outrun by an earlier one as a success to the child policy.
func withDone(r balancer.PickResult, a *attempt) balancer.PickResult {
	done := r.Done
	if done == nil {
		return r
	}
	r.Done = func(di balancer.DoneInfo) {
		if di.Err != nil && a.outrun.Load() {
			di.Err = nil
		}
		done(di)
	}
	return r
}
