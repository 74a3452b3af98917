package dashboard

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// Window counts calls per mode and per pod in one-second buckets over a sliding window of the
// last few seconds. It is a frontend Observer: ObserveCall may be called concurrently, and it
// only takes a lock and bumps a counter. Time is injected, so tests never sleep.
type Window struct {
	size int // buckets kept (seconds)
	now  func() time.Time

	mu    sync.Mutex
	modes map[string]*modeWindow
}

type modeWindow struct {
	pods      map[string]*ring // calls per pod ("" is never a key: failed calls go to errs)
	errs      ring
	lastErr   string
	lastErrAt time.Time
}

// ring holds per-second counts: counts[sec % len] is the count of second sec, valid when
// secs[i] == sec.
type ring struct {
	counts []int
	secs   []int64
}

func newRing(n int) *ring { r := &ring{}; r.init(n); return r }

func (r *ring) init(n int) {
	r.counts, r.secs = make([]int, n), make([]int64, n)
	for i := range r.secs {
		r.secs[i] = -1
	}
}

func (r *ring) add(sec int64) {
	i := int(sec % int64(len(r.counts)))
	if r.secs[i] != sec {
		r.secs[i], r.counts[i] = sec, 0
	}
	r.counts[i]++
}

// series returns the counts of seconds now-len+1 .. now, oldest first, and their sum.
func (r *ring) series(now int64) ([]int, int) {
	n := len(r.counts)
	out := make([]int, n)
	total := 0
	for k := range n {
		sec := now - int64(n-1-k)
		if sec < 0 {
			continue
		}
		if i := int(sec % int64(n)); r.secs[i] == sec {
			out[k] = r.counts[i]
			total += r.counts[i]
		}
	}
	return out, total
}

// DefaultWindow is how many seconds the dashboard's charts cover.
const DefaultWindow = 10

// maxPodsPerMode bounds the pods a mode's window tracks: a misbehaving backend that reports a
// new pod name on every call must not grow memory without bound.
const maxPodsPerMode = 512

// maxErrorLen bounds the last error message kept per mode.
const maxErrorLen = 300

// NewWindow returns a window of size seconds (DefaultWindow when size <= 0); now is the clock
// (time.Now when nil).
func NewWindow(size int, now func() time.Time) *Window {
	if size <= 0 {
		size = DefaultWindow
	}
	if now == nil {
		now = time.Now
	}
	return &Window{size: size, now: now, modes: map[string]*modeWindow{}}
}

// ObserveCall records one call: a success counts for pod, a failure for the mode's errors.
func (w *Window) ObserveCall(mode, pod string, err error, _ time.Duration) {
	now := w.now()
	sec := now.Unix()
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.modes[mode]
	if m == nil {
		m = &modeWindow{pods: map[string]*ring{}}
		m.errs.init(w.size)
		w.modes[mode] = m
	}
	if err != nil {
		m.errs.add(sec)
		msg := err.Error()
		if len(msg) > maxErrorLen {
			msg = strings.ToValidUTF8(msg[:maxErrorLen], "") + "…"
		}
		m.lastErr, m.lastErrAt = msg, now
		return
	}
	r := m.pods[pod]
	if r == nil {
		if len(m.pods) >= maxPodsPerMode {
			m.prune(sec)
			if len(m.pods) >= maxPodsPerMode {
				return
			}
		}
		r = newRing(w.size)
		m.pods[pod] = r
	}
	r.add(sec)
}

// prune forgets pods with no call in the window.
func (m *modeWindow) prune(now int64) {
	for pod, r := range m.pods {
		if _, total := r.series(now); total == 0 {
			delete(m.pods, pod)
		}
	}
}

// PodCounts is one pod's calls in a mode's window.
type PodCounts struct {
	Pod string `json:"pod"`
	// Calls is the number of calls in the window; PerSecond the counts of each second,
	// oldest first (the last one is the second in progress).
	Calls     int   `json:"calls"`
	PerSecond []int `json:"per_second"`
}

// ModeCounts is one mode's window.
type ModeCounts struct {
	Mode   string      `json:"mode"`
	Pods   []PodCounts `json:"pods"` // sorted by pod name
	Calls  int         `json:"calls"`
	Errors int         `json:"errors"`
	// LastError is the last failure's message while it is in the window.
	LastError string `json:"last_error,omitempty"`
}

// Snapshot returns each observed mode's counts now, pods with no call in the window left out.
func (w *Window) Snapshot() map[string]ModeCounts {
	now := w.now()
	sec := now.Unix()
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]ModeCounts, len(w.modes))
	for name, m := range w.modes {
		mc := ModeCounts{Mode: name, Pods: []PodCounts{}}
		for pod, r := range m.pods {
			series, total := r.series(sec)
			if total == 0 {
				delete(m.pods, pod) // forgotten: keeps the map as small as the window
				continue
			}
			mc.Pods = append(mc.Pods, PodCounts{Pod: pod, Calls: total, PerSecond: series})
			mc.Calls += total
		}
		slices.SortFunc(mc.Pods, func(a, b PodCounts) int { return strings.Compare(a.Pod, b.Pod) })
		_, mc.Errors = m.errs.series(sec)
		if mc.Errors > 0 && now.Sub(m.lastErrAt) < time.Duration(w.size)*time.Second {
			mc.LastError = m.lastErr
		}
		out[name] = mc
	}
	return out
}

// Size is the window's length in seconds.
func (w *Window) Size() int { return w.size }
