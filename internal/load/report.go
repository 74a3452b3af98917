package load

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/codes"
)

// Latency histogram range and precision: 1µs to 1h, 3 significant digits.
const (
	histMinMicros = 1
	histMaxMicros = int64(time.Hour / time.Microsecond)
	histSigFigs   = 3
)

// Report is the result of a run. Durations are in milliseconds (fields ending in _ms), times
// are offsets from Start, so it reads well as JSON.
type Report struct {
	// TargetRate is the offered rate asked for (calls/s).
	TargetRate float64 `json:"target_rate"`
	// Start is when the run started.
	Start time.Time `json:"start"`
	// Stopped says why scheduling ended: "duration", "max-calls" or "canceled".
	Stopped string `json:"stopped"`
	// Scheduled counts calls that came due; Started those that started (Scheduled-Dropped).
	Scheduled int `json:"scheduled"`
	Started   int `json:"started"`
	// Dropped counts calls that came due while MaxInFlight calls were in flight.
	Dropped int `json:"dropped"`
	// OK and Failed split the started calls.
	OK     int `json:"ok"`
	Failed int `json:"failed"`
	// Errors counts failed calls by gRPC status code name ("Unavailable", ...).
	Errors map[string]int `json:"errors"`
	// AchievedRate is Started divided by the sending span (first start to last start plus
	// one interval): the rate the generator really offered.
	AchievedRate float64 `json:"achieved_rate"`
	// SendMS is how long scheduling took; ElapsedMS the whole run, in-flight calls included.
	SendMS    float64 `json:"send_ms"`
	ElapsedMS float64 `json:"elapsed_ms"`
	// Pods counts successful calls per pod; FirstMS is each pod's first call (ms from Start).
	Pods    map[string]int     `json:"pods"`
	FirstMS map[string]float64 `json:"first_ms"`
	// WindowMS is the width of Windows; window k covers calls started in [k·w, (k+1)·w).
	WindowMS float64  `json:"window_ms"`
	Windows  []Window `json:"windows"`
	// Latency summarises every started call's latency (failed ones too).
	Latency Latency `json:"latency"`
	// Histogram is the latency distribution as buckets, for charts.
	Histogram []Bucket `json:"histogram"`
}

// Window is one time window of a run.
type Window struct {
	// Pods counts successful calls per pod that started in this window.
	Pods map[string]int `json:"pods"`
	// Failed counts calls started in this window that failed; Dropped those not started.
	Failed  int `json:"failed"`
	Dropped int `json:"dropped,omitempty"`
	// P50MS and P99MS are this window's latency quantiles (0 when it has no call).
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	Count  int64   `json:"count"`
	MinMS  float64 `json:"min_ms"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	MaxMS  float64 `json:"max_ms"`
}

// Bucket is one histogram bar: Count calls took at most UpToMS.
type Bucket struct {
	UpToMS float64 `json:"up_to_ms"`
	Count  int64   `json:"count"`
}

// PodNames lists the pods that answered, sorted.
func (r *Report) PodNames() []string { return slices.Sorted(maps.Keys(r.Pods)) }

// recorder collects samples. Its methods may be called concurrently.
type recorder struct {
	cfg       Config
	start     time.Time
	observers []func(Sample)

	mu      sync.Mutex
	hist    *hdrhistogram.Histogram
	windows []*windowAcc
	ok      int
	failed  int
	dropped int
	errs    map[string]int
	pods    map[string]int
	first   map[string]time.Duration
}

type windowAcc struct {
	pods    map[string]int
	failed  int
	dropped int
	hist    *hdrhistogram.Histogram
}

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMinMicros, histMaxMicros, histSigFigs)
}

// newWindowHist is a smaller histogram for one window's quantiles (chart precision, ~1%).
func newWindowHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMinMicros, histMaxMicros, 2)
}

func newRecorder(cfg Config, start time.Time, obs []func(Sample)) *recorder {
	return &recorder{cfg: cfg, start: start, observers: obs, hist: newHist(),
		errs: map[string]int{}, pods: map[string]int{}, first: map[string]time.Duration{}}
}

// window returns the accumulator of the window holding t. Called with r.mu held.
func (r *recorder) window(t time.Time) *windowAcc {
	k := max(int(t.Sub(r.start)/r.cfg.Window), 0)
	k = min(k, MaxWindows-1)
	for len(r.windows) <= k {
		r.windows = append(r.windows, &windowAcc{pods: map[string]int{}})
	}
	return r.windows[k]
}

func (r *recorder) drop(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropped++
	r.window(at).dropped++
}

func (r *recorder) record(s Sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	us := max(s.Latency.Microseconds(), histMinMicros)
	r.hist.RecordValue(min(us, histMaxMicros))
	w := r.window(s.At)
	if w.hist == nil {
		w.hist = newWindowHist()
	}
	w.hist.RecordValue(min(us, histMaxMicros))
	if s.Code == codes.OK {
		r.ok++
		r.pods[s.Pod]++
		w.pods[s.Pod]++
		if _, seen := r.first[s.Pod]; !seen {
			r.first[s.Pod] = s.At.Sub(r.start)
		} else if d := s.At.Sub(r.start); d < r.first[s.Pod] {
			r.first[s.Pod] = d
		}
	} else {
		r.failed++
		w.failed++
		r.errs[s.Code.String()]++
	}
	for _, fn := range r.observers {
		fn(s)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func usToMS(us int64) float64 { return float64(us) / 1000 }

func summary(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Count: h.TotalCount(), MinMS: usToMS(h.Min()), MeanMS: h.Mean() / 1000,
		P50MS: usToMS(h.ValueAtQuantile(50)), P90MS: usToMS(h.ValueAtQuantile(90)),
		P99MS: usToMS(h.ValueAtQuantile(99)), MaxMS: usToMS(h.Max()),
	}
}

// buckets turns h into log-spaced bars with edges at 1, 2 and 5 × 10^k µs, from the first
// non-empty bar to the one holding the maximum, for charts.
func buckets(h *hdrhistogram.Histogram) []Bucket {
	out := []Bucket{}
	if h.TotalCount() == 0 {
		return out
	}
	var edges []int64
	for p := int64(1); p <= histMaxMicros; p *= 10 {
		edges = append(edges, p, 2*p, 5*p)
	}
	counts := make([]int64, len(edges))
	for _, b := range h.Distribution() {
		if b.Count == 0 {
			continue
		}
		k, _ := slices.BinarySearch(edges, b.To)
		counts[min(k, len(edges)-1)] += b.Count
	}
	lo := slices.IndexFunc(counts, func(n int64) bool { return n > 0 })
	hi := len(counts) - 1
	for counts[hi] == 0 {
		hi--
	}
	for k := lo; k <= hi; k++ {
		out = append(out, Bucket{UpToMS: usToMS(edges[k]), Count: counts[k]})
	}
	return out
}

func (r *recorder) report(stopped string, scheduled int, lastStart, sendEnd, end time.Time) *Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := &Report{
		TargetRate: r.cfg.Rate, Start: r.start, Stopped: stopped,
		Scheduled: scheduled, Started: r.ok + r.failed, Dropped: r.dropped, OK: r.ok, Failed: r.failed,
		Errors: maps.Clone(r.errs), Pods: maps.Clone(r.pods), FirstMS: map[string]float64{},
		SendMS: ms(sendEnd.Sub(r.start)), ElapsedMS: ms(end.Sub(r.start)),
		WindowMS: ms(r.cfg.Window), Windows: make([]Window, 0, len(r.windows)),
		Latency: summary(r.hist), Histogram: buckets(r.hist),
	}
	for p, d := range r.first {
		rep.FirstMS[p] = ms(d)
	}
	if rep.Started > 0 {
		span := lastStart.Sub(r.start) + time.Duration(float64(time.Second)/r.cfg.Rate)
		rep.AchievedRate = float64(rep.Started) / span.Seconds()
	}
	for _, w := range r.windows {
		win := Window{Pods: maps.Clone(w.pods), Failed: w.failed, Dropped: w.dropped}
		if w.hist != nil {
			win.P50MS, win.P99MS = usToMS(w.hist.ValueAtQuantile(50)), usToMS(w.hist.ValueAtQuantile(99))
		}
		rep.Windows = append(rep.Windows, win)
	}
	return rep
}
