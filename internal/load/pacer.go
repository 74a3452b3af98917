package load

import (
	"context"
	"math"
	"time"
)

// Due is when call i (from 0) is due, counted from the run's start: i/rate seconds. The
// schedule depends on nothing but elapsed time, so a slow backend cannot slow the offered
// rate (an open-loop generator, as ghz's constant pacer).
func Due(i int, rate float64) time.Duration {
	if rate <= 0 || i <= 0 {
		return 0
	}
	return Seconds(float64(i) / rate)
}

// Seconds converts s seconds to a Duration, saturating at the largest one (a very low rate
// puts calls beyond 292 years; a plain conversion would overflow to a negative Duration and
// make such calls always due).
func Seconds(s float64) time.Duration {
	ns := math.Round(s * float64(time.Second))
	if !(ns < math.MaxInt64) { // also NaN
		return math.MaxInt64
	}
	if ns < math.MinInt64 {
		return math.MinInt64
	}
	return time.Duration(ns)
}

// DueBy is how many calls are due once elapsed has passed since the start (calls 0 to
// DueBy-1), bounded by limit when limit > 0. It is the inverse of Due.
func DueBy(elapsed time.Duration, rate float64, limit int) int {
	if elapsed < 0 || rate <= 0 {
		return 0
	}
	n := int(math.Floor(elapsed.Seconds()*rate)) + 1
	// Guard against float rounding: call n-1 must be due, call n not yet.
	for n > 0 && Due(n-1, rate) > elapsed {
		n--
	}
	for Due(n, rate) <= elapsed {
		n++
	}
	if limit > 0 && n > limit {
		n = limit
	}
	return n
}

// Planned is how many calls a run of cfg schedules: every call due before Duration ends,
// at most MaxCalls.
func Planned(cfg Config) int {
	n := DueBy(cfg.Duration-1, cfg.Rate, cfg.MaxCalls) // due strictly before the end
	return n
}

// Clock is the time source of a run. The real one is the wall clock; tests inject a fake
// that jumps to the requested time, so pacing is tested without sleeping.
type Clock interface {
	Now() time.Time
	// SleepUntil returns once t has come, or early with ctx's error.
	SleepUntil(ctx context.Context, t time.Time) error
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

func (wallClock) SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
