package load

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDue(t *testing.T) {
	for _, tc := range []struct {
		i    int
		rate float64
		want time.Duration
	}{
		{0, 100, 0},
		{1, 100, 10 * time.Millisecond},
		{100, 100, time.Second},
		{3, 2000, 1500 * time.Microsecond},
		{1, 3, 333333333},
		{2, 3, 666666667},
		{3, 3, time.Second},
		{7, 0.5, 14 * time.Second},
		{5, 0, 0},
	} {
		if got := Due(tc.i, tc.rate); got != tc.want {
			t.Errorf("Due(%d, %v) = %v, want %v", tc.i, tc.rate, got, tc.want)
		}
	}
}

func TestDueBy(t *testing.T) {
	for _, tc := range []struct {
		elapsed time.Duration
		rate    float64
		limit   int
		want    int
	}{
		{-1, 100, 0, 0},
		{0, 100, 0, 1}, // call 0 is due at the start
		{9 * time.Millisecond, 100, 0, 1},
		{10 * time.Millisecond, 100, 0, 2},
		{time.Second - 1, 100, 0, 100},
		{time.Second, 100, 0, 101},
		{time.Second, 100, 50, 50},
		{333333333, 3, 0, 2},
		{333333332, 3, 0, 1},
		{time.Second, 2000, 0, 2001},
	} {
		if got := DueBy(tc.elapsed, tc.rate, tc.limit); got != tc.want {
			t.Errorf("DueBy(%v, %v, %d) = %d, want %d", tc.elapsed, tc.rate, tc.limit, got, tc.want)
		}
	}
	// DueBy inverts Due at every call for awkward rates.
	for _, rate := range []float64{1, 3, 7, 999.9, 2000, 12345.6} {
		for i := range 5000 {
			if n := DueBy(Due(i, rate), rate, 0); n != i+1 {
				t.Fatalf("rate %v: DueBy(Due(%d)) = %d, want %d", rate, i, n, i+1)
			}
		}
	}
}

func TestPlanned(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want int
	}{
		{Config{Rate: 100, Duration: time.Second}, 100},
		{Config{Rate: 2000, Duration: 10 * time.Second}, 20000},
		{Config{Rate: 100, Duration: time.Second, MaxCalls: 10}, 10},
		{Config{Rate: 1, Duration: 500 * time.Millisecond}, 1},
		{Config{Rate: 3, Duration: time.Second}, 3},
	} {
		if got := Planned(tc.cfg); got != tc.want {
			t.Errorf("Planned(%+v) = %d, want %d", tc.cfg, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Rate: -5, Duration: time.Second}, "negative"},
		{Config{Rate: 0, Duration: time.Second}, "rate is 0"},
		{Config{Rate: 2e6, Duration: time.Second}, "over the maximum"},
		{Config{Rate: 10, Duration: 0}, "duration is 0"},
		{Config{Rate: 10, Duration: -time.Second}, "duration -1s is negative"},
		{Config{Rate: 10, Duration: time.Second, MaxCalls: -1}, "max calls -1"},
		{Config{Rate: 10, Duration: time.Second, MaxInFlight: -1}, "max in flight"},
		{Config{Rate: 10, Duration: time.Second, Window: -1}, "window"},
		{Config{Rate: 10, Duration: time.Second, CallTimeout: -1}, "call timeout"},
		{Config{Rate: 10, Duration: 2 * time.Hour, Window: time.Second}, "widen the window"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error with %q", tc.cfg, err, tc.want)
		}
		if _, err := Run(context.Background(), tc.cfg, func(context.Context) (string, error) { return "", nil }); err == nil {
			t.Errorf("Run(%+v) ran", tc.cfg)
		}
	}
	if err := (Config{Rate: 10, Duration: time.Second}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// fakeClock jumps to whatever time the run sleeps until: a run takes no real time.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	return ctx.Err()
}

func TestRunFakeClock(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	pods := []string{"a", "b", "c", "d"}
	var mu sync.Mutex
	n := 0
	call := func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n%10 == 0 {
			return "", status.Error(codes.Unavailable, "down")
		}
		return pods[n%len(pods)], nil
	}
	var observed int
	// Which call a pod answers first depends on the order the call goroutines run in, so
	// each pod's first answer is taken from the samples the observer saw.
	start := clk.now
	first := map[string]float64{}
	// The fake clock runs the whole schedule at once: room for every call in flight.
	rep, err := Run(context.Background(), Config{Rate: 100, Duration: 3 * time.Second, Window: 500 * time.Millisecond, MaxInFlight: 1000}, call,
		WithClock(clk), WithObserver(func(s Sample) {
			observed++
			if s.Pod == "" {
				return
			}
			d := float64(s.At.Sub(start)) / float64(time.Millisecond)
			if f, seen := first[s.Pod]; !seen || d < f {
				first[s.Pod] = d
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scheduled != 300 || rep.Started != 300 || rep.OK != 270 || rep.Failed != 30 || rep.Errors["Unavailable"] != 30 {
		t.Errorf("scheduled %d started %d ok %d failed %d errors %v; want 300, 300, 270, 30",
			rep.Scheduled, rep.Started, rep.OK, rep.Failed, rep.Errors)
	}
	if observed != 300 {
		t.Errorf("observer saw %d calls, want 300", observed)
	}
	if rep.AchievedRate < 99.999 || rep.AchievedRate > 100.001 {
		t.Errorf("achieved rate %v, want 100", rep.AchievedRate)
	}
	if rep.Stopped != StoppedDuration || len(rep.Windows) != 6 {
		t.Errorf("stopped %q with %d windows, want duration and 6", rep.Stopped, len(rep.Windows))
	}
	for k, w := range rep.Windows {
		sum := w.Failed
		for _, c := range w.Pods {
			sum += c
		}
		if sum != 50 {
			t.Errorf("window %d holds %d calls, want 50", k, sum)
		}
	}
	if len(rep.Pods) != 4 || len(first) != 4 || !maps.Equal(rep.FirstMS, first) {
		t.Errorf("pods %v first %v; want 4 pods, each first at its earliest answered call's start %v", rep.Pods, rep.FirstMS, first)
	}
	b, err := json.Marshal(rep)
	if err != nil || !strings.Contains(string(b), `"achieved_rate":100`) {
		t.Errorf("JSON %s, %v", b, err)
	}
}

func TestRunMaxCalls(t *testing.T) {
	clk := &fakeClock{now: time.Unix(0, 0)}
	rep, err := Run(context.Background(), Config{Rate: 1000, Duration: time.Hour, Window: time.Hour, MaxCalls: 25, MaxInFlight: 1000},
		func(context.Context) (string, error) { return "p", nil }, WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scheduled != 25 || rep.OK != 25 || rep.Stopped != StoppedMaxCalls {
		t.Errorf("scheduled %d ok %d stopped %q, want 25 calls stopped by max-calls", rep.Scheduled, rep.OK, rep.Stopped)
	}
}

// A call that never returns on its own does not slow the schedule: calls past MaxInFlight
// are dropped, not delayed, and the run still ends (the call timeout frees the rest).
func TestRunSaturatedDrops(t *testing.T) {
	clk := &fakeClock{now: time.Unix(0, 0)}
	call := func(ctx context.Context) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	}
	rep, err := Run(context.Background(), Config{Rate: 100, Duration: time.Second, MaxInFlight: 4, CallTimeout: 20 * time.Millisecond},
		call, WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scheduled != 100 || rep.Started+rep.Dropped != 100 || rep.Dropped < 90 {
		t.Errorf("scheduled %d started %d dropped %d; want 100 scheduled, at least 90 dropped", rep.Scheduled, rep.Started, rep.Dropped)
	}
	if rep.Errors["DeadlineExceeded"] != rep.Started {
		t.Errorf("errors %v, want %d DeadlineExceeded", rep.Errors, rep.Started)
	}
}

// With the wall clock a run stops by itself at its duration, and a cancelled context ends it
// early with a partial report.
func TestRunStopsByItself(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := Run(ctx, Config{Rate: 200, Duration: 200 * time.Millisecond}, func(context.Context) (string, error) { return "p", nil })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scheduled != 40 || rep.OK != 40 || rep.Stopped != StoppedDuration {
		t.Errorf("scheduled %d ok %d stopped %s, want 40 by duration", rep.Scheduled, rep.OK, rep.Stopped)
	}

	ctx2, cancel2 := context.WithCancel(ctx)
	started := make(chan struct{}, 1)
	call := func(c context.Context) (string, error) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-c.Done()
		return "", c.Err()
	}
	done := make(chan *Report, 1)
	go func() {
		r, _ := Run(ctx2, Config{Rate: 50, Duration: time.Hour, Window: time.Hour, CallTimeout: time.Hour}, call)
		done <- r
	}()
	<-started
	cancel2()
	select {
	case r := <-done:
		if r.Stopped != StoppedCanceled || r.Errors["Canceled"] == 0 {
			t.Errorf("cancelled run: stopped %q errors %v", r.Stopped, r.Errors)
		}
	case <-ctx.Done():
		t.Fatal("a cancelled run did not return")
	}
}

func TestCodeOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{nil, codes.OK},
		{status.Error(codes.Unavailable, "x"), codes.Unavailable},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{errors.Join(errors.New("wrapped"), context.Canceled), codes.Canceled},
		{errors.New("http 500"), codes.Unknown},
	} {
		if got := codeOf(tc.err); got != tc.want {
			t.Errorf("codeOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestBuckets(t *testing.T) {
	h := newHist()
	for _, us := range []int64{150, 150, 180, 900, 4000} {
		h.RecordValue(us)
	}
	b := buckets(h)
	var total int64
	for _, x := range b {
		total += x.Count
	}
	if total != 5 || b[0].UpToMS != 0.2 || b[len(b)-1].UpToMS != 5 {
		t.Errorf("buckets %+v", b)
	}
}
