// Package dashboard is the frontend's live page: for each balancing mode, a bar chart of the
// calls each pod answered over the last few seconds and the pods' states, pushed to the
// browser with server-sent events. Under `spread demo` the page also drives the cluster (scale,
// kill, freeze, rolling restart, through the same admin API as `spread ctl`) and a steady load
// per mode (internal/load); against a real cluster it only shows what the frontend observes.
//
// The page and its script are embedded (no CDN, works offline) and render every string the
// server sends (pod names, errors) as text, never as markup.
//
// The dashboard is composed beside a frontend (internal/frontend, which does not import this
// package) by the programs that show it: New takes the frontend and a Window the frontend
// reports its calls to (frontend.WithObserver), and Handler serves both on one mux.
package dashboard

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/spread-grpc/spread/internal/frontend"
	"github.com/spread-grpc/spread/internal/guard"
	"github.com/spread-grpc/spread/internal/httpjson"
)

//go:embed static
var staticFS embed.FS

// Mode describes one of the frontend's modes as the page shows it.
type Mode = frontend.ModeState

// Frontend is what the dashboard needs from the frontend it runs in.
type Frontend interface {
	// Name is the frontend's identity.
	Name() string
	// ModeStates lists the modes in display order, with their connection states now.
	ModeStates() []Mode
	// CallOnce makes one call over mode's connection and returns the pod that answered; the
	// frontend reports it to its observers (and so to the dashboard's Window) like any call.
	// It may be called concurrently.
	CallOnce(ctx context.Context, mode string) (pod string, err error)
}

// PodState is one pod of a cluster the dashboard can see.
type PodState struct {
	Name string `json:"name"`
	// Phase is ready, terminating or restarting.
	Phase   string    `json:"phase"`
	Frozen  bool      `json:"frozen,omitempty"`
	Delay   string    `json:"delay,omitempty"`
	Address string    `json:"address,omitempty"`
	Zone    string    `json:"zone,omitempty"`
	Created time.Time `json:"created"`
	// Conns is the client connections the pod holds now (every client's, not only this
	// frontend's); CallsServed the calls it answered since it last started.
	Conns       int    `json:"conns"`
	CallsServed uint64 `json:"calls_served"`
}

// Cluster is a cluster whose pods the dashboard shows (the demo's).
type Cluster interface {
	// PodStates returns the pods now. It may be called concurrently.
	PodStates() []PodState
	// Replicas is the desired number of pods.
	Replicas() int
}

// Load bounds: the page can start a steady load, never an unbounded one.
const (
	MaxLoadRate       = 500
	MaxLoadDuration   = 10 * time.Minute
	DefaultLoadRate   = 50
	DefaultLoadFor    = 2 * time.Minute
	loadMaxInFlight   = 64
	defaultInterval   = 250 * time.Millisecond
	defaultMaxStreams = 64
	// defaultStreamLifetime bounds one event stream: it then ends cleanly and the page's
	// EventSource reconnects after reconnectMS, so an open tab holds no connection for ever.
	defaultStreamLifetime = 10 * time.Minute
	// newPodFor is how long a pod created after the dashboard started shows as new.
	newPodFor = 30 * time.Second
	// reconnectMS is the EventSource retry delay the stream asks for.
	reconnectMS = 1000
	// writeTimeout bounds one event's write: a client that stops reading is dropped.
	writeTimeout = 5 * time.Second
)

// Option configures a Dashboard.
type Option func(*options)

type options struct {
	log        *slog.Logger
	cluster    Cluster
	controls   http.Handler
	interval   time.Duration
	maxStreams int
	lifetime   time.Duration
	now        func() time.Time
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithCluster shows c's pods and turns on the page's controls: controls is the cluster's
// admin API (GET /cluster, POST /cluster/...), served same-origin under /cluster, and the
// page may start a steady load per mode. Only the demo passes it.
func WithCluster(c Cluster, controls http.Handler) Option {
	return func(o *options) { o.cluster, o.controls = c, controls }
}

// WithInterval sets how often the event stream sends the state (default 250ms).
func WithInterval(d time.Duration) Option { return func(o *options) { o.interval = d } }

// WithMaxStreams bounds concurrent event streams (default 64); more are refused with 503.
func WithMaxStreams(n int) Option { return func(o *options) { o.maxStreams = n } }

// WithStreamLifetime bounds how long one event stream lasts (default 10 min): it then ends
// and the browser's EventSource reconnects a second later (the retry the stream sends), so
// a stream's slot (WithMaxStreams) and connection come back even from a tab left open.
func WithStreamLifetime(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.lifetime = d
		}
	}
}

// WithClock sets the clock used to mark pods new (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Dashboard serves the page, its event stream and, with WithCluster, its controls.
type Dashboard struct {
	fe       Frontend
	win      *Window
	log      *slog.Logger
	cluster  Cluster
	controls http.Handler
	interval time.Duration
	lifetime time.Duration
	now      func() time.Time
	instance string    // identifies this process to the page, which notices a restart
	started  time.Time // pods created before the dashboard are not "new"

	streams chan struct{} // a token per open event stream
	done    chan struct{} // closed by EndStreams
	endOnce sync.Once
	loads   *loads
}

// New returns a dashboard for fe whose charts read win (which fe must report its calls to).
func New(fe Frontend, win *Window, opts ...Option) *Dashboard {
	o := options{log: slog.New(slog.DiscardHandler), interval: defaultInterval, maxStreams: defaultMaxStreams, lifetime: defaultStreamLifetime, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	var id [6]byte
	rand.Read(id[:])
	d := &Dashboard{fe: fe, win: win, log: o.log, cluster: o.cluster, controls: o.controls,
		interval: o.interval, lifetime: o.lifetime, now: o.now, instance: hex.EncodeToString(id[:]), started: o.now(),
		streams: make(chan struct{}, o.maxStreams), done: make(chan struct{})}
	if d.controls != nil {
		d.loads = newLoads(fe.CallOnce, o.log)
	}
	return d
}

// Controls reports whether the page offers controls (under the demo).
func (d *Dashboard) Controls() bool { return d.controls != nil }

// Register adds the dashboard's routes to mux: GET /events, GET /static/, GET /dashboard/state
// and, with controls, /dashboard/load/{mode} and /cluster, /cluster/. The page itself is
// served by ServePage; Handler serves it at / to browsers, beside the frontend's JSON index.
func (d *Dashboard) Register(mux *http.ServeMux) {
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", noCache(http.FileServerFS(static))))
	mux.HandleFunc("GET /events", d.serveEvents)
	mux.HandleFunc("GET /dashboard/state", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, http.StatusOK, d.State())
	})
	if d.controls == nil {
		return
	}
	// The page posts to these same-origin; refuse cross-site browser requests (a page on
	// another site cannot drive the demo through a visitor's browser).
	// The demo also checks Host (guard.Wrap around the whole server).
	cs := guard.New().CrossSite
	mux.Handle("/cluster", cs(d.controls))
	mux.Handle("/cluster/", cs(d.controls))
	mux.Handle("POST /dashboard/load/{mode}", cs(http.HandlerFunc(d.startLoad)))
	mux.Handle("DELETE /dashboard/load/{mode}", cs(http.HandlerFunc(d.stopLoad)))
}

// ServePage serves the dashboard's HTML page.
func (d *Dashboard) ServePage(w http.ResponseWriter, r *http.Request) {
	b, err := staticFS.ReadFile("static/index.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	// Only our own script and style; no inline script, nothing from elsewhere.
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(b)
}

func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// EndStreams ends every open event stream now and refuses new ones, so that an
// http.Server's Shutdown need not wait for them (register it with RegisterOnShutdown); the
// pages reconnect to whatever serves next. It also stops the loads the page started. It is
// safe to call more than once.
func (d *Dashboard) EndStreams() {
	d.endOnce.Do(func() { close(d.done) })
	if d.loads != nil {
		d.loads.stopAll()
	}
}

// Close ends the streams and stops the page's loads, waiting for them to finish.
func (d *Dashboard) Close() {
	d.EndStreams()
	if d.loads != nil {
		d.loads.close()
	}
}

// OpenStreams is the number of event streams being served now.
func (d *Dashboard) OpenStreams() int { return len(d.streams) }

// State is what one event carries: everything the page draws.
type State struct {
	Frontend string       `json:"frontend"`
	Instance string       `json:"instance"`
	Time     time.Time    `json:"time"`
	Window   int          `json:"window_s"`
	Controls bool         `json:"controls"`
	Modes    []ModeState  `json:"modes"`
	Cluster  *ClusterView `json:"cluster,omitempty"`
}

// ModeState is one mode's panel.
type ModeState struct {
	Mode
	Calls     int       `json:"calls"`
	Errors    int       `json:"errors"`
	LastError string    `json:"last_error,omitempty"`
	Pods      []PodBar  `json:"pods"`
	Load      *LoadInfo `json:"load,omitempty"`
}

// PodBar is one pod's bar in a mode's chart.
type PodBar struct {
	Pod       string `json:"pod"`
	Calls     int    `json:"calls"`
	PerSecond []int  `json:"per_second"`
	// State is the pod's phase (ready, terminating, restarting), "gone" for a pod that
	// answered in the window but is no longer in the cluster, or "observed" without a
	// cluster to ask.
	State  string `json:"state"`
	Frozen bool   `json:"frozen,omitempty"`
	Delay  string `json:"delay,omitempty"`
	// New marks a pod created lately (within 30 s, or the window if longer), after the
	// dashboard started: the pods a scale-up or a rollout adds.
	New bool `json:"new,omitempty"`
}

// ClusterView is the cluster's side of the page.
type ClusterView struct {
	Replicas int        `json:"replicas"`
	Pods     []PodState `json:"pods"`
}

// State computes what the page shows now.
func (d *Dashboard) State() State {
	now := d.now()
	st := State{Frontend: d.fe.Name(), Instance: d.instance, Time: now, Window: d.win.Size(), Controls: d.controls != nil}
	counts := d.win.Snapshot()
	var pods []PodState
	if d.cluster != nil {
		pods = d.cluster.PodStates()
		st.Cluster = &ClusterView{Replicas: d.cluster.Replicas(), Pods: pods}
	}
	newFor := max(newPodFor, time.Duration(d.win.Size())*time.Second)
	for _, m := range d.fe.ModeStates() {
		mc := counts[m.Name]
		ms := ModeState{Mode: m, Calls: mc.Calls, Errors: mc.Errors, LastError: mc.LastError, Pods: []PodBar{}}
		seen := map[string]bool{}
		byPod := map[string]PodCounts{}
		for _, pc := range mc.Pods {
			byPod[pc.Pod] = pc
		}
		for _, p := range pods {
			pc := byPod[p.Name]
			seen[p.Name] = true
			ms.Pods = append(ms.Pods, PodBar{Pod: p.Name, Calls: pc.Calls, PerSecond: orZeros(pc.PerSecond, d.win.Size()),
				State: p.Phase, Frozen: p.Frozen, Delay: p.Delay, New: p.Created.After(d.started) && now.Sub(p.Created) < newFor})
		}
		state := "observed"
		if d.cluster != nil {
			state = "gone"
		}
		for _, pc := range mc.Pods {
			if !seen[pc.Pod] {
				ms.Pods = append(ms.Pods, PodBar{Pod: pc.Pod, Calls: pc.Calls, PerSecond: pc.PerSecond, State: state})
			}
		}
		if d.loads != nil {
			ms.Load = d.loads.info(m.Name, now)
		}
		st.Modes = append(st.Modes, ms)
	}
	return st
}

func orZeros(s []int, n int) []int {
	if s == nil {
		return make([]int, n)
	}
	return s
}

// serveEvents streams the state as server-sent events until the client goes, the write
// stalls (writeTimeout per event), the stream's lifetime ends, or EndStreams. Each stream is
// served by its own request goroutine alone (no helper goroutines), and the number of
// streams is bounded.
func (d *Dashboard) serveEvents(w http.ResponseWriter, r *http.Request) {
	select {
	case <-d.done:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	default:
	}
	select {
	case d.streams <- struct{}{}:
		defer func() { <-d.streams }()
	default:
		w.Header().Set("Retry-After", "5")
		http.Error(w, fmt.Sprintf("too many event streams (at most %d)", cap(d.streams)), http.StatusServiceUnavailable)
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// retry: tells EventSource how soon to reconnect when the stream ends (a frontend
	// restart); the page also reopens a stream the browser gave up on.
	send := func(payload []byte) bool {
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(payload); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(fmt.Appendf(nil, "retry: %d\n\n", reconnectMS)) {
		return
	}
	t := time.NewTicker(d.interval)
	defer t.Stop()
	life := time.NewTimer(d.lifetime)
	defer life.Stop()
	for seq := 1; ; seq++ {
		// A new subscriber gets the current state at once, then every tick.
		b, err := json.Marshal(d.State())
		if err != nil {
			d.log.Error("dashboard: encode state", "err", err)
			return
		}
		if !send(slices.Concat(fmt.Appendf(nil, "id: %d\ndata: ", seq), b, []byte("\n\n"))) {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-d.done:
			return
		case <-life.C: // the page reconnects after the retry delay
			return
		case <-t.C:
		}
	}
}

var errUnknownMode = errors.New("unknown mode")
