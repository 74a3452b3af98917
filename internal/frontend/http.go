package frontend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/httpjson"
)

// Query limits of /call/{mode}.
const (
	DefaultCalls = 10
	MaxCalls     = 1000
	MaxInterval  = 10 * time.Second
	// maxErrors bounds the error details kept in one response; Failed still counts them all.
	maxErrors = 20
)

// CallParams are the validated query parameters of one /call request.
type CallParams struct {
	N        int
	Stream   bool
	Interval time.Duration
	Fresh    bool
}

// allowedParams documents every query parameter, for error messages.
var allowedParams = map[string]string{
	"n":        fmt.Sprintf("number of calls (or stream messages), %d to %d, default %d", 1, MaxCalls, DefaultCalls),
	"stream":   "true: one SayHelloStream of n messages instead of n unary calls (default false)",
	"interval": fmt.Sprintf("delay between calls, a duration like 100ms or a number of milliseconds, 0 to %v (default 0)", MaxInterval),
	"fresh":    "true: dial a new connection for this request, as the sample's code did (default false)",
}

// ParseCallParams validates q. Unknown parameters, repeated parameters and values out of
// range are errors whose text says what is allowed.
func ParseCallParams(q url.Values) (CallParams, error) {
	p := CallParams{N: DefaultCalls}
	for k, vs := range q {
		if _, ok := allowedParams[k]; !ok {
			return p, fmt.Errorf("unknown query parameter %q", k)
		}
		if len(vs) != 1 {
			return p, fmt.Errorf("query parameter %q given %d times", k, len(vs))
		}
	}
	if v := q.Get("n"); q.Has("n") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxCalls {
			return p, fmt.Errorf("n=%q: want a whole number from 1 to %d", v, MaxCalls)
		}
		p.N = n
	}
	for _, b := range []struct {
		name string
		dst  *bool
	}{{"stream", &p.Stream}, {"fresh", &p.Fresh}} {
		if !q.Has(b.name) {
			continue
		}
		v, err := strconv.ParseBool(q.Get(b.name))
		if err != nil {
			return p, fmt.Errorf("%s=%q: want true or false", b.name, q.Get(b.name))
		}
		*b.dst = v
	}
	if v := q.Get("interval"); q.Has("interval") {
		d, err := parseInterval(v)
		if err != nil || d < 0 || d > MaxInterval {
			return p, fmt.Errorf("interval=%q: want a duration from 0 to %v (like 100ms) or milliseconds", v, MaxInterval)
		}
		p.Interval = d
	}
	return p, nil
}

func parseInterval(v string) (time.Duration, error) {
	if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
		if ms < 0 || ms > int64(MaxInterval/time.Millisecond) {
			return 0, errors.New("out of range") // before multiplying: 2^58 ms would wrap
		}
		return time.Duration(ms) * time.Millisecond, nil
	}
	return time.ParseDuration(v)
}

// ParseCallQuery parses a raw query string and validates it with ParseCallParams. A query
// that does not parse (a ';' separator, a bad escape) is an error, never silently dropped.
func ParseCallQuery(raw string) (CallParams, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return CallParams{N: DefaultCalls}, fmt.Errorf("query %q: %v (separate parameters with &)", raw, err)
	}
	return ParseCallParams(q)
}

// CallError is one failed call in a response.
type CallError struct {
	Call    int    `json:"call"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Result is the JSON answer of /call/{mode}, /backend and /backendlb. "frontend" and
// "backends" keep the sample's shape.
type Result struct {
	Frontend string         `json:"frontend"`
	Backends []string       `json:"backends"`
	Mode     string         `json:"mode"`
	Target   string         `json:"target"`
	Policy   string         `json:"policy,omitempty"`
	Stream   bool           `json:"stream"`
	Fresh    bool           `json:"fresh"`
	Calls    int            `json:"calls"`
	OK       int            `json:"ok"`
	Failed   int            `json:"failed"`
	Counts   map[string]int `json:"counts"`
	Pods     []string       `json:"pods"`
	Errors   []CallError    `json:"errors"`
	// Resumes counts how often a stream was re-opened (stream-age ends and breaks).
	Resumes   int     `json:"resumes,omitempty"`
	ElapsedMS float64 `json:"elapsed_ms"`
	// Interrupted says the frontend's shutdown cut the request: the counts are partial.
	Interrupted bool `json:"interrupted,omitempty"`
}

func (r *Result) add(i int, reply *echo.EchoReply, err error) {
	if err != nil {
		r.Failed++
		if len(r.Errors) < maxErrors {
			st := status.Convert(err)
			r.Errors = append(r.Errors, CallError{Call: i, Code: st.Code().String(), Message: st.Message()})
		}
		return
	}
	r.OK++
	r.Backends = append(r.Backends, reply.GetMessage())
	r.Counts[reply.GetPod()]++
}

func (f *Frontend) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", f.ServeIndex)
	f.Register(mux)
	mux.Handle("/", f.NotFound(mux))
	f.mux = mux
}

// Register adds the call routes to mux: GET /call/{mode} and the sample's /backend and
// /backendlb (and their plainer names /clusterip and /headless). Handler serves them with
// the index and NotFound; a composed server (dashboard.Handler) registers them on its own mux.
func (f *Frontend) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /call/{mode}", func(w http.ResponseWriter, r *http.Request) {
		f.serveCall(w, r, r.PathValue("mode"))
	})
	// The sample's routes: ClusterIP and headless, and their plainer names.
	for path, m := range map[string]string{"/backend": "clusterip", "/backendlb": "headless", "/clusterip": "clusterip", "/headless": "headless"} {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) { f.serveCall(w, r, m) })
	}
}

// NotFound returns the catch-all to register at "/" on mux: a path mux serves with other
// methods gets 405 and Allow, anything else 404 naming the routes (the frontend's, then
// listed) and the modes.
func (f *Frontend) NotFound(mux *http.ServeMux, listed ...string) http.Handler {
	routes := append([]string{"GET /", "GET /call/{mode}", "GET /backend", "GET /backendlb"}, listed...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			methodNotAllowed(w, r, allow...)
			return
		}
		httpjson.Write(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("no route %s %s", r.Method, r.URL.Path), "routes": routes, "modes": f.order})
	})
}

func (f *Frontend) serveCall(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodGet { // GET patterns also match HEAD, which must not make calls
		methodNotAllowed(w, r, http.MethodGet)
		return
	}
	m, ok := f.modes[name]
	if !ok {
		httpjson.Write(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("unknown mode %q", name), "modes": f.order})
		return
	}
	p, err := ParseCallQuery(r.URL.RawQuery)
	if err == nil && time.Duration(p.N-1)*p.Interval > f.cfg.RequestTimeout {
		err = fmt.Errorf("n=%d with interval=%v takes longer than this frontend's request timeout %v", p.N, p.Interval, f.cfg.RequestTimeout)
	}
	if err != nil {
		httpjson.Write(w, http.StatusBadRequest, map[string]any{"error": err.Error(), "allowed": allowedParams})
		return
	}
	cctx, cut := context.WithCancelCause(r.Context())
	defer cut(nil)
	go func() { // ends with the request (cut(nil) above)
		select {
		case <-f.interrupt:
			cut(ErrInterrupted)
		case <-cctx.Done():
		}
	}()
	ctx, cancel := context.WithTimeout(cctx, f.cfg.RequestTimeout)
	defer cancel()
	res := f.Call(ctx, m, p)
	res.Interrupted = errors.Is(context.Cause(cctx), ErrInterrupted)
	httpjson.Write(w, http.StatusOK, res)
}

// Call runs one request's calls over the mode's connection and reports what answered.
func (f *Frontend) Call(ctx context.Context, m *mode, p CallParams) *Result {
	res := &Result{
		Frontend: f.cfg.Name, Mode: m.Name, Target: m.Target, Policy: m.Policy,
		Stream: p.Stream, Fresh: p.Fresh, Calls: p.N,
		Backends: []string{}, Counts: map[string]int{}, Errors: []CallError{},
	}
	start := time.Now()
	defer func() {
		res.ElapsedMS = float64(time.Since(start).Microseconds()) / 1000
		for pod := range res.Counts {
			res.Pods = append(res.Pods, pod)
		}
		sort.Strings(res.Pods)
	}()
	client, done, err := m.client(p.Fresh)
	if err != nil {
		res.add(0, nil, err)
		return res
	}
	defer done()
	if p.Stream {
		f.stream(ctx, m.Name, client, p, res)
		return res
	}
	for i := range p.N {
		if i > 0 && p.Interval > 0 {
			select {
			case <-time.After(p.Interval):
			case <-ctx.Done():
				res.add(i, nil, status.FromContextError(ctx.Err()).Err())
				res.Failed += p.N - i - 1
				return res
			}
		}
		cctx, cancel := f.callCtx(ctx)
		t0 := time.Now()
		reply, err := client.SayHello(cctx, &echo.EchoRequest{Name: "unary RPC msg"})
		cancel()
		f.observe(m.Name, reply.GetPod(), err, time.Since(t0))
		res.add(i, reply, err)
	}
	return res
}

// stream makes one logical SayHelloStream of p.N messages. A stream lives on one connection
// to one backend; it moves only when the backend ends it for its age (MaxStreamAge) or it
// breaks, and then it resumes after the last message seen (see echo.ReadStream).
func (f *Frontend) stream(ctx context.Context, mode string, client echo.EchoServerClient, p CallParams, res *Result) {
	sctx, cancel := context.WithTimeout(ctx, f.cfg.CallTimeout+time.Duration(p.N)*p.Interval)
	defer cancel()
	t0 := time.Now()
	i := 0
	st, err := echo.ReadStream(sctx, client, &echo.EchoRequest{
		Name: "stream RPC msg", Count: uint32(p.N), IntervalMs: uint32(p.Interval / time.Millisecond),
	}, func(reply *echo.EchoReply) {
		f.observe(mode, reply.GetPod(), nil, time.Since(t0))
		t0 = time.Now()
		res.add(i, reply, nil)
		i++
	})
	res.Resumes = st.Opens - 1
	if err == nil && st.Received < p.N {
		err = fmt.Errorf("stream ended after %d of %d messages", st.Received, p.N)
	}
	if err != nil {
		f.observe(mode, "", err, time.Since(t0))
		res.add(i, nil, err)
		res.Failed += p.N - st.Received - 1
	}
}

// ModeInfo describes a mode in the index.
type ModeInfo struct {
	Name        string `json:"name"`
	Path        string `json:"path"`
	Target      string `json:"target"`
	Policy      string `json:"policy,omitempty"`
	Description string `json:"description,omitempty"`
	State       string `json:"state"`
}

func (f *Frontend) modeInfos() []ModeInfo {
	out := make([]ModeInfo, 0, len(f.order))
	for _, n := range f.order {
		m := f.modes[n]
		out = append(out, ModeInfo{Name: n, Path: "/call/" + n, Target: m.Target, Policy: m.Policy, Description: m.Description, State: m.conn.GetState().String()})
	}
	return out
}

// ServeIndex serves the index (GET /): the frontend's name and its modes as JSON.
func (f *Frontend) ServeIndex(w http.ResponseWriter, r *http.Request) {
	httpjson.Write(w, http.StatusOK, map[string]any{"frontend": f.cfg.Name, "modes": f.modeInfos()})
}

// ModeState is one mode with its connection state now, as a dashboard shows it.
type ModeState struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Target      string `json:"target"`
	Policy      string `json:"policy,omitempty"`
	// State is the mode's connection state (IDLE, CONNECTING, READY, ...).
	State string `json:"state"`
}

// ModeStates lists the modes in display order with their connection states, for a dashboard.
func (f *Frontend) ModeStates() []ModeState {
	out := make([]ModeState, 0, len(f.order))
	for _, mi := range f.modeInfos() {
		out = append(out, ModeState{Name: mi.Name, Description: mi.Description, Target: mi.Target, Policy: mi.Policy, State: mi.State})
	}
	return out
}

// CallOnce makes one unary call over mode's long-lived connection, bounded by the call
// timeout, reports it to the observers like every call, and returns the pod that answered.
// It may be called concurrently (the dashboard's load calls it).
func (f *Frontend) CallOnce(ctx context.Context, mode string) (string, error) {
	m, ok := f.modes[mode]
	if !ok {
		return "", fmt.Errorf("frontend: unknown mode %q", mode)
	}
	cctx, cancel := f.callCtx(ctx)
	defer cancel()
	t0 := time.Now()
	reply, err := echo.NewEchoServerClient(m.conn).SayHello(cctx, &echo.EchoRequest{Name: "unary RPC msg"})
	f.observe(mode, reply.GetPod(), err, time.Since(t0))
	return reply.GetPod(), err
}

// allowedMethods lists the methods mux serves r's path with, other than through its
// catch-all "/" (which matches every method, so the mux's own 405 never happens).
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	return allow
}

// methodNotAllowed answers 405 with the Allow header.
func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow ...string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	httpjson.Write(w, http.StatusMethodNotAllowed, map[string]any{"error": fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path), "allow": allow})
}
