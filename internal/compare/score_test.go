package compare

import (
	"math"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/load"
)

// syntheticReport is a load report of 8 windows starting at t0: windows 0-5 hold early, the
// last quarter (windows 6 and 7) holds late, so score must read only the last quarter.
func syntheticReport(t0 time.Time, early, late map[string]int) *load.Report {
	r := &load.Report{Start: t0, Scheduled: 1000, Started: 990, Dropped: 10, OK: 970, Failed: 20, FirstMS: map[string]float64{}}
	for k := range 8 {
		w := load.Window{Pods: early}
		if k >= 6 {
			w.Pods = late
		}
		r.Windows = append(r.Windows, w)
	}
	return r
}

func TestScoreFailuresAndAttempts(t *testing.T) {
	t0 := time.Unix(1000, 0)
	d := driven{
		report:   syntheticReport(t0, map[string]int{"a": 1}, map[string]int{"a": 10, "b": 5}),
		attempts: 1188, counted: true,
		live: []string{"a", "b"},
	}
	res := score(Scenario{}, d)
	if res.Failed != 30 {
		t.Errorf("Failed = %d, want 30 (20 failed + 10 dropped)", res.Failed)
	}
	if res.FailedPct != 3 {
		t.Errorf("FailedPct = %v, want 3 (30 of 1000 scheduled)", res.FailedPct)
	}
	if res.AttemptsPerCall != 1.2 {
		t.Errorf("AttemptsPerCall = %v, want 1.2 (1188 attempts over 990 started)", res.AttemptsPerCall)
	}
	if res.EventMS != -1 || res.FirstNewMS != -1 || res.AllNewMS != -1 {
		t.Errorf("no event: EventMS %v FirstNewMS %v AllNewMS %v, want -1 each", res.EventMS, res.FirstNewMS, res.AllNewMS)
	}
	// Streams are not counted per call, nor is a client that does not count.
	if got := score(Scenario{Streams: 4}, d).AttemptsPerCall; got != 0 {
		t.Errorf("streams: AttemptsPerCall = %v, want 0", got)
	}
	d.counted = false
	if got := score(Scenario{}, d).AttemptsPerCall; got != 0 {
		t.Errorf("not counted: AttemptsPerCall = %v, want 0", got)
	}
}

func TestScoreBalanceReadsTheLastQuarterOfLivePods(t *testing.T) {
	t0 := time.Unix(1000, 0)
	// Early windows are badly skewed; the last quarter is 30 vs 10 on the live pods, and
	// "gone" (a deleted pod, not live) is ignored however busy it was.
	d := driven{
		report: syntheticReport(t0, map[string]int{"a": 100}, map[string]int{"a": 15, "b": 5, "gone": 1000}),
		live:   []string{"a", "b"},
	}
	res := score(Scenario{}, d)
	if res.LivePods != 2 || res.Idle != 0 {
		t.Errorf("LivePods %d Idle %d, want 2 and 0", res.LivePods, res.Idle)
	}
	if res.MaxMin != 3 || res.MaxMinJSON != 3 {
		t.Errorf("MaxMin %v (JSON %v), want 3 (30 over 10 in the last two windows)", res.MaxMin, res.MaxMinJSON)
	}
	// A live pod without a call in the last quarter makes the balance infinite (-1 in JSON).
	d.live = []string{"a", "b", "idle"}
	res = score(Scenario{}, d)
	if res.Idle != 1 || !math.IsInf(res.MaxMin, 1) || res.MaxMinJSON != -1 {
		t.Errorf("idle pod: Idle %d MaxMin %v JSON %v, want 1, +Inf, -1", res.Idle, res.MaxMin, res.MaxMinJSON)
	}
	d.live = nil
	if res := score(Scenario{}, d); !math.IsInf(res.MaxMin, 1) || res.LivePods != 0 {
		t.Errorf("no live pod: MaxMin %v LivePods %d, want +Inf and 0", res.MaxMin, res.LivePods)
	}
}

func TestScoreNewPods(t *testing.T) {
	t0 := time.Unix(1000, 0)
	rep := syntheticReport(t0, map[string]int{"old": 1}, map[string]int{"old": 4, "n1": 2, "n2": 2})
	// The event happens 2 s into the load; n1 gets its first call 150 ms later, n2 900 ms
	// later, and "early" before the event (counted as 0 ms, not negative).
	rep.FirstMS = map[string]float64{"old": 1, "n1": 2150, "n2": 2900}
	d := driven{report: rep, event: t0.Add(2 * time.Second), before: map[string]bool{"old": true}, live: []string{"old", "n1", "n2"}}
	sc := Scenario{AddsPods: true}
	res := score(sc, d)
	if res.EventMS != 2000 {
		t.Errorf("EventMS = %v, want 2000", res.EventMS)
	}
	if res.NewPods != 2 || res.NewPodsReached != 2 {
		t.Errorf("NewPods %d reached %d, want 2 and 2", res.NewPods, res.NewPodsReached)
	}
	if res.FirstNewMS != 150 || res.AllNewMS != 900 {
		t.Errorf("FirstNewMS %v AllNewMS %v, want 150 and 900", res.FirstNewMS, res.AllNewMS)
	}

	// A new pod that never got a call: the first is still known, "all" is not.
	d.live = append(d.live, "n3")
	res = score(sc, d)
	if res.NewPods != 3 || res.NewPodsReached != 2 || res.FirstNewMS != 150 || res.AllNewMS != -1 {
		t.Errorf("unreached pod: NewPods %d reached %d first %v all %v, want 3, 2, 150, -1", res.NewPods, res.NewPodsReached, res.FirstNewMS, res.AllNewMS)
	}

	// A first call before the event counts as 0 ms after it.
	rep.FirstMS["n3"] = 1500
	if res := score(sc, d); res.FirstNewMS != 0 || res.AllNewMS != 900 {
		t.Errorf("first call before the event: first %v all %v, want 0 and 900", res.FirstNewMS, res.AllNewMS)
	}

	// Scenarios that add no pods, and runs whose event did not happen, report no new pods.
	if res := score(Scenario{}, d); res.NewPods != 0 || res.FirstNewMS != -1 {
		t.Errorf("scenario adds no pods: NewPods %d FirstNewMS %v, want 0 and -1", res.NewPods, res.FirstNewMS)
	}
	d.event = time.Time{}
	if res := score(sc, d); res.NewPods != 0 || res.EventMS != -1 {
		t.Errorf("no event: NewPods %d EventMS %v, want 0 and -1", res.NewPods, res.EventMS)
	}
}
