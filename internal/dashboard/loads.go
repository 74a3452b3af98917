package dashboard

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/spread-grpc/spread/internal/httpjson"
	"github.com/spread-grpc/spread/internal/load"
)

// loads runs at most one steady load per mode, started and stopped from the page. Every load
// is bounded in rate, duration and concurrency and stops by itself; close stops them all and
// waits.
type loads struct {
	call func(ctx context.Context, mode string) (string, error)
	log  *slog.Logger

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	running map[string]*runningLoad
	nextID  int
}

type runningLoad struct {
	id     int
	rate   float64
	start  time.Time
	until  time.Time
	cancel context.CancelFunc
}

// LoadInfo is a running load, as the page shows it.
type LoadInfo struct {
	Rate float64 `json:"rate"`
	// LeftS is how many seconds the load still runs.
	LeftS float64 `json:"left_s"`
}

func newLoads(call func(ctx context.Context, mode string) (string, error), log *slog.Logger) *loads {
	ctx, cancel := context.WithCancel(context.Background())
	return &loads{call: call, log: log, ctx: ctx, cancel: cancel, running: map[string]*runningLoad{}}
}

// start replaces mode's load (if any) with one of rate calls/s for dur.
func (l *loads) start(mode string, rate float64, dur time.Duration) error {
	cfg := load.Config{Rate: rate, Duration: dur, MaxInFlight: loadMaxInFlight}
	if err := cfg.Validate(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ctx.Err() != nil {
		return fmt.Errorf("dashboard: shutting down")
	}
	if old := l.running[mode]; old != nil {
		old.cancel()
	}
	ctx, cancel := context.WithCancel(l.ctx)
	l.nextID++
	rl := &runningLoad{id: l.nextID, rate: rate, start: time.Now(), until: time.Now().Add(dur), cancel: cancel}
	l.running[mode] = rl
	call := func(ctx context.Context) (string, error) { return l.call(ctx, mode) }
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer cancel()
		rep, err := load.Run(ctx, cfg, call)
		l.mu.Lock()
		if l.running[mode] == rl {
			delete(l.running, mode)
		}
		l.mu.Unlock()
		if err != nil {
			l.log.Error("dashboard load failed", "mode", mode, "err", err)
			return
		}
		l.log.Info("dashboard load done", "mode", mode, "rate", rate, "stopped", rep.Stopped, "ok", rep.OK, "failed", rep.Failed, "dropped", rep.Dropped)
	}()
	return nil
}

// stop stops mode's load; it reports whether one ran.
func (l *loads) stop(mode string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	rl := l.running[mode]
	if rl == nil {
		return false
	}
	rl.cancel()
	delete(l.running, mode)
	return true
}

func (l *loads) info(mode string, now time.Time) *LoadInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	rl := l.running[mode]
	if rl == nil {
		return nil
	}
	return &LoadInfo{Rate: rl.rate, LeftS: max(0, rl.until.Sub(now).Seconds())}
}

// stopAll stops every load without waiting; new ones are refused.
func (l *loads) stopAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cancel()
	clear(l.running)
}

// close stops every load and waits for their calls to end.
func (l *loads) close() {
	l.stopAll()
	l.wg.Wait()
}

// startLoad serves POST /dashboard/load/{mode}?rate=R&duration=D.
func (d *Dashboard) startLoad(w http.ResponseWriter, r *http.Request) {
	mode := r.PathValue("mode")
	if !d.hasMode(mode) {
		httpjson.Error(w, http.StatusNotFound, fmt.Errorf("%w %q", errUnknownMode, mode))
		return
	}
	q := r.URL.Query()
	rate := float64(DefaultLoadRate)
	if v := q.Get("rate"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0 && f <= MaxLoadRate) {
			httpjson.Error(w, http.StatusBadRequest, fmt.Errorf("rate=%q: want calls per second, more than 0 and at most %d", v, MaxLoadRate))
			return
		}
		rate = f
	}
	dur := DefaultLoadFor
	if v := q.Get("duration"); v != "" {
		dd, err := time.ParseDuration(v)
		if err != nil || dd <= 0 || dd > MaxLoadDuration {
			httpjson.Error(w, http.StatusBadRequest, fmt.Errorf("duration=%q: want a duration like 30s, more than 0 and at most %v", v, MaxLoadDuration))
			return
		}
		dur = dd
	}
	if err := d.loads.start(mode, rate, dur); err != nil {
		httpjson.Error(w, http.StatusServiceUnavailable, err)
		return
	}
	httpjson.Write(w, http.StatusAccepted, map[string]any{"mode": mode, "rate": rate, "duration": dur.String()})
}

// stopLoad serves DELETE /dashboard/load/{mode}.
func (d *Dashboard) stopLoad(w http.ResponseWriter, r *http.Request) {
	mode := r.PathValue("mode")
	if !d.hasMode(mode) {
		httpjson.Error(w, http.StatusNotFound, fmt.Errorf("%w %q", errUnknownMode, mode))
		return
	}
	httpjson.Write(w, http.StatusOK, map[string]any{"mode": mode, "stopped": d.loads.stop(mode)})
}

func (d *Dashboard) hasMode(name string) bool {
	for _, m := range d.fe.ModeStates() {
		if m.Name == name {
			return true
		}
	}
	return false
}
