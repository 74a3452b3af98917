package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spread-grpc/spread/internal/admin"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestWindow(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	w := NewWindow(3, clk.now)
	obs := func(mode, pod string, err error) { w.ObserveCall(mode, pod, err, time.Millisecond) }
	for _, tc := range []struct {
		name    string
		step    func()
		mode    string
		want    map[string][]int // pod -> per second, oldest first
		calls   int
		errors  int
		lastErr string
	}{
		{name: "first second", step: func() { obs("m", "a", nil); obs("m", "a", nil); obs("m", "b", nil) },
			mode: "m", want: map[string][]int{"a": {0, 0, 2}, "b": {0, 0, 1}}, calls: 3},
		{name: "next second slides", step: func() { clk.add(time.Second); obs("m", "a", nil) },
			mode: "m", want: map[string][]int{"a": {0, 2, 1}, "b": {0, 1, 0}}, calls: 4},
		{name: "a failure counts for the mode, not a pod", step: func() { obs("m", "", errors.New("boom")) },
			mode: "m", want: map[string][]int{"a": {0, 2, 1}, "b": {0, 1, 0}}, calls: 4, errors: 1, lastErr: "boom"},
		{name: "skipping seconds clears old buckets", step: func() { clk.add(2 * time.Second); obs("m", "c", nil) },
			mode: "m", want: map[string][]int{"a": {1, 0, 0}, "c": {0, 0, 1}}, calls: 2, errors: 1, lastErr: "boom"},
		{name: "out of the window: pods and errors forgotten", step: func() { clk.add(5 * time.Second) },
			mode: "m", want: map[string][]int{}, calls: 0},
		{name: "modes are separate", step: func() { obs("other", "x", nil) },
			mode: "other", want: map[string][]int{"x": {0, 0, 1}}, calls: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.step()
			mc := w.Snapshot()[tc.mode]
			got := map[string][]int{}
			for _, p := range mc.Pods {
				got[p.Pod] = p.PerSecond
				if sum := sumInts(p.PerSecond); sum != p.Calls {
					t.Errorf("pod %s: calls %d, per second sum %d", p.Pod, p.Calls, sum)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || mc.Calls != tc.calls || mc.Errors != tc.errors || mc.LastError != tc.lastErr {
				t.Errorf("got %v calls %d errors %d last %q; want %v calls %d errors %d last %q",
					got, mc.Calls, mc.Errors, mc.LastError, tc.want, tc.calls, tc.errors, tc.lastErr)
			}
			if !slices.IsSortedFunc(mc.Pods, func(a, b PodCounts) int { return strings.Compare(a.Pod, b.Pod) }) {
				t.Errorf("pods not sorted: %v", mc.Pods)
			}
		})
	}
}

func TestWindowBounds(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	w := NewWindow(0, clk.now)
	if w.Size() != DefaultWindow {
		t.Fatalf("size %d, want default %d", w.Size(), DefaultWindow)
	}
	// A backend that names a new pod on every call cannot grow the window without bound.
	for i := range maxPodsPerMode + 100 {
		w.ObserveCall("m", fmt.Sprint("pod-", i), nil, 0)
	}
	if n := len(w.Snapshot()["m"].Pods); n != maxPodsPerMode {
		t.Errorf("%d pods tracked, want the bound %d", n, maxPodsPerMode)
	}
	w.ObserveCall("m", "", errors.New(strings.Repeat("é", maxErrorLen)), 0)
	if e := w.Snapshot()["m"].LastError; len(e) > maxErrorLen+len("…") || !strings.HasSuffix(e, "…") || !utf8Valid(e) {
		t.Errorf("long error kept as %d bytes %q", len(e), e)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "?") == s }

func sumInts(s []int) int {
	n := 0
	for _, v := range s {
		n += v
	}
	return n
}

// fakeFrontend is a frontend whose calls answer from a fixed pod, reported to the window.
type fakeFrontend struct {
	win   *Window
	modes []string
	pod   string
	calls atomic.Int64
}

func (f *fakeFrontend) Name() string { return "fe-<test>" }
func (f *fakeFrontend) ModeStates() []Mode {
	var out []Mode
	for _, m := range f.modes {
		out = append(out, Mode{Name: m, Target: "dns:///" + m, Policy: "round_robin", State: "READY"})
	}
	return out
}
func (f *fakeFrontend) CallOnce(ctx context.Context, mode string) (string, error) {
	f.calls.Add(1)
	f.win.ObserveCall(mode, f.pod, nil, 0)
	return f.pod, nil
}

type fakeCluster struct {
	mu   sync.Mutex
	pods []PodState
}

func (c *fakeCluster) PodStates() []PodState { c.mu.Lock(); defer c.mu.Unlock(); return c.pods }
func (c *fakeCluster) Replicas() int         { return len(c.PodStates()) }
func (c *fakeCluster) set(pods ...PodState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pods = pods
}

func serve(t *testing.T, d *Dashboard) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", d.ServePage)
	d.Register(mux)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.RegisterOnShutdown(d.EndStreams)
	srv.Start()
	t.Cleanup(func() { srv.Close(); d.Close() })
	return srv
}

// stream is one open /events connection.
type stream struct {
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
}

func openStream(t *testing.T, ctx context.Context, url string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET /events: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	s := &stream{resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(s.close)
	return s
}

func (s *stream) close() { s.cancel(); s.resp.Body.Close() }

// next reads one event's fields.
func (s *stream) next() (map[string]string, error) {
	ev := map[string]string{}
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			return ev, nil
		}
		k, v, _ := strings.Cut(line, ": ")
		ev[k] = v
	}
}

func (s *stream) state(t *testing.T) State {
	t.Helper()
	for {
		ev, err := s.next()
		if err != nil {
			t.Fatalf("reading event: %v", err)
		}
		if data, ok := ev["data"]; ok {
			var st State
			if err := json.Unmarshal([]byte(data), &st); err != nil {
				t.Fatalf("event data %q: %v", data, err)
			}
			return st
		}
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEventStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	win := NewWindow(0, nil)
	fe := &fakeFrontend{win: win, modes: []string{"clusterip", "headless"}, pod: "<script>alert(1)</script>"}
	d := New(fe, win, WithInterval(20*time.Millisecond))
	srv := serve(t, d)

	s := openStream(t, ctx, srv.URL)
	ev, err := s.next()
	if err != nil || ev["retry"] != "1000" {
		t.Fatalf("first event %v, %v: want retry: 1000 so a page reconnects soon after a restart", ev, err)
	}
	// The current state comes at once, then updates.
	st := s.state(t)
	if st.Controls || st.Cluster != nil || len(st.Modes) != 2 || st.Frontend != "fe-<test>" || st.Instance == "" {
		t.Fatalf("first state %+v", st)
	}
	win.ObserveCall("headless", fe.pod, nil, 0)
	eventually(t, "the call in a later event", func() bool {
		st := s.state(t)
		return len(st.Modes[1].Pods) == 1 && st.Modes[1].Pods[0].Pod == fe.pod && st.Modes[1].Pods[0].State == "observed"
	})
	// Markup travels as JSON-escaped text; the page renders it with textContent (browser test).
	raw := mustGet(t, srv.URL+"/dashboard/state")
	if strings.Contains(raw, "<script>") || !strings.Contains(raw, `\u003cscript\u003e`) {
		t.Errorf("state JSON carries raw markup: %s", raw)
	}
}

// TestNoGoroutineLeakPerTab opens and closes many streams: each is served by its request's
// goroutine alone, which ends when the client goes.
func TestNoGoroutineLeakPerTab(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	win := NewWindow(0, nil)
	d := New(&fakeFrontend{win: win, modes: []string{"m"}}, win, WithInterval(10*time.Millisecond))
	srv := serve(t, d)
	tr := &http.Transport{}
	client := &http.Client{Transport: tr}
	before := goleak.IgnoreCurrent()

	for round := range 3 {
		var streams []*http.Response
		var cancels []context.CancelFunc
		for range 20 {
			sctx, scancel := context.WithCancel(ctx)
			req, _ := http.NewRequestWithContext(sctx, http.MethodGet, srv.URL+"/events", nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
				t.Fatal(err)
			}
			streams = append(streams, resp)
			cancels = append(cancels, scancel)
		}
		if n := d.OpenStreams(); n != 20 {
			t.Fatalf("round %d: %d open streams, want 20", round, n)
		}
		for i, resp := range streams {
			cancels[i]() // the tab closes
			resp.Body.Close()
		}
		eventually(t, "every stream to end", func() bool { return d.OpenStreams() == 0 })
	}
	tr.CloseIdleConnections()
	if err := goleak.Find(before); err != nil {
		t.Errorf("goroutines left after 60 closed streams: %v", err)
	}
}

func TestEndStreamsAndLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	win := NewWindow(0, nil)
	d := New(&fakeFrontend{win: win, modes: []string{"m"}}, win, WithMaxStreams(2), WithInterval(10*time.Millisecond))
	srv := serve(t, d)
	a, b := openStream(t, ctx, srv.URL), openStream(t, ctx, srv.URL)
	a.state(t)
	b.state(t)
	resp := mustDo(t, ctx, http.MethodGet, srv.URL+"/events", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("third stream with a limit of 2: %s, want 503 with Retry-After", resp.Status)
	}
	// EndStreams (what a server's Shutdown calls) ends open streams at once.
	d.EndStreams()
	for _, s := range []*stream{a, b} {
		for {
			if _, err := s.next(); err != nil {
				if err != io.EOF {
					t.Errorf("stream ended with %v, want EOF", err)
				}
				break
			}
		}
	}
	if resp := mustDo(t, ctx, http.MethodGet, srv.URL+"/events", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("stream after EndStreams: %s, want 503", resp.Status)
	}
}

func TestShutdownIsNotHeldByStreams(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	win := NewWindow(0, nil)
	d := New(&fakeFrontend{win: win, modes: []string{"m"}}, win)
	srv := serve(t, d)
	s := openStream(t, ctx, srv.URL)
	s.state(t)
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if err := srv.Config.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown with an open event stream: %v", err)
	}
}

func TestPageAndControls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	win := NewWindow(0, nil)
	fe := &fakeFrontend{win: win, modes: []string{"clusterip", "headless"}, pod: "p-1"}

	// Without a cluster: the page, no controls.
	srv := serve(t, New(fe, win))
	resp := mustDo(t, ctx, http.MethodGet, srv.URL+"/", nil)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/html") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("page: %s %q, CSP %q", resp.Status, ct, resp.Header.Get("Content-Security-Policy"))
	}
	for _, path := range []string{"/static/app.js", "/static/style.css"} {
		if resp := mustDo(t, ctx, http.MethodGet, srv.URL+path, nil); resp.StatusCode != 200 {
			t.Errorf("%s: %s", path, resp.Status)
		}
	}
	for _, path := range []string{"/cluster", "/dashboard/load/headless"} {
		if resp := mustDo(t, ctx, http.MethodPost, srv.URL+path, nil); resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s without controls: %s, want no such route", path, resp.Status)
		}
	}

	// With a cluster: its API is mounted, and loads run.
	var scaled atomic.Bool
	api := http.NewServeMux()
	api.HandleFunc("POST /cluster/scale", func(w http.ResponseWriter, r *http.Request) { scaled.Store(true) })
	cl := &fakeCluster{}
	d := New(fe, win, WithCluster(cl, api))
	// p-1 is older than the dashboard; p-2 came after it (a scale-up).
	cl.set(PodState{Name: "p-1", Phase: "ready", Created: time.Now().Add(-time.Hour)},
		PodState{Name: "p-2", Phase: "terminating", Frozen: true, Created: time.Now()})
	srv = serve(t, d)
	if resp := mustDo(t, ctx, http.MethodPost, srv.URL+"/cluster/scale?replicas=3", nil); resp.StatusCode != 200 || !scaled.Load() {
		t.Errorf("POST /cluster/scale through the frontend: %s", resp.Status)
	}
	h := http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"http://evil.example"}}
	if resp := mustDo(t, ctx, http.MethodPost, srv.URL+"/cluster/scale?replicas=0", h); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST: %s, want 403", resp.Status)
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, "/dashboard/load/nope", 404},
		{http.MethodPost, "/dashboard/load/headless?rate=501", 400},
		{http.MethodPost, "/dashboard/load/headless?rate=0", 400},
		{http.MethodPost, "/dashboard/load/headless?duration=11m", 400},
		{http.MethodPost, "/dashboard/load/headless?duration=-1s", 400},
		{http.MethodPost, "/dashboard/load/headless?rate=200&duration=1m", 202},
	} {
		if resp := mustDo(t, ctx, tc.method, srv.URL+tc.path, nil); resp.StatusCode != tc.want {
			t.Errorf("%s %s: %s, want %d", tc.method, tc.path, resp.Status, tc.want)
		}
	}
	eventually(t, "the load's calls in the chart", func() bool {
		st := d.State()
		m := st.Modes[1]
		return m.Load != nil && m.Load.Rate == 200 && len(m.Pods) == 2 && m.Pods[0].Calls > 0
	})
	st := d.State()
	if p := st.Modes[1].Pods[1]; p.Pod != "p-2" || p.State != "terminating" || !p.Frozen || !p.New || p.Calls != 0 {
		t.Errorf("pod p-2 bar %+v, want terminating, frozen, new, no calls", p)
	}
	if p := st.Modes[1].Pods[0]; p.New {
		t.Errorf("an hour-old pod is marked new: %+v", p)
	}
	if resp := mustDo(t, ctx, http.MethodDelete, srv.URL+"/dashboard/load/headless", nil); resp.StatusCode != 200 {
		t.Errorf("DELETE load: %s", resp.Status)
	}
	if st := d.State(); st.Modes[1].Load != nil {
		t.Errorf("load still shown after stop: %+v", st.Modes[1].Load)
	}
	n := fe.calls.Load()
	// A stopped load makes no more calls once its in-flight calls are done (the fake's are instant).
	eventually(t, "the load to stop calling", func() bool {
		m := fe.calls.Load()
		defer func() { n = m }()
		return m == n
	})
}

func mustDo(t *testing.T, ctx context.Context, method, url string, h http.Header) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, method, url, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func mustGet(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestStreamBounds serves the event stream from the HTTP server the frontend uses
// (admin.NewHTTPServer), with a WriteTimeout far shorter than the stream: the stream
// outlives it (each event sets its own write deadline), ends cleanly when its lifetime is
// over, its slot comes back, and a stream over WithMaxStreams is refused meanwhile.
func TestStreamBounds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const lifetime = 1500 * time.Millisecond
	win := NewWindow(0, nil)
	d := New(&fakeFrontend{win: win, modes: []string{"m"}}, win,
		WithMaxStreams(1), WithInterval(20*time.Millisecond), WithStreamLifetime(lifetime))
	mux := http.NewServeMux()
	d.Register(mux)
	limits := admin.DefaultLimits()
	limits.WriteTimeout = lifetime / 5
	srv := admin.NewHTTPServer(mux, limits)
	srv.RegisterOnShutdown(d.EndStreams)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		d.Close()
	})
	url := "http://" + lis.Addr().String()

	start := time.Now()
	a := openStream(t, ctx, url)
	defer a.cancel()
	a.state(t)
	if resp := mustDo(t, ctx, http.MethodGet, url+"/events", nil); resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second stream with a limit of 1: %s, want 503 with Retry-After", resp.Status)
	}
	events := 0
	for {
		ev, err := a.next()
		if err != nil {
			if err != io.EOF {
				t.Fatalf("stream ended with %v after %v, want a clean end (EOF)", err, time.Since(start))
			}
			break
		}
		if _, ok := ev["data"]; ok {
			events++
		}
	}
	took := time.Since(start)
	t.Logf("stream ended after %v, %d events (lifetime %v, server WriteTimeout %v)", took, events, lifetime, limits.WriteTimeout)
	if took < lifetime {
		t.Errorf("stream ended after %v, before its lifetime %v", took, lifetime)
	}
	if events < 2 {
		t.Errorf("%d events before the end, want a live stream", events)
	}
	eventually(t, "the stream's slot back", func() bool { return d.OpenStreams() == 0 })
	b := openStream(t, ctx, url)
	defer b.cancel()
	b.state(t)
}
