package fairshare_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/spread-grpc/spread/fairshare"
)

// BenchmarkScaleUp40 is the measured scenario behind the README's Results: 40 ClusterIP
// clients (one pick_first connection each through the VIP, 10 calls/s each) on 5 pods,
// scaled to 8, then watched for 60 s (SPREAD_FAIRSHARE_WINDOW overrides), for each row:
// nothing, server MaxConnectionAge 5 s and 30 s, and fair share at its defaults (5 s rounds).
// Run: go test -run '^$' -bench ScaleUp40 -benchtime 1x ./fairshare/
func BenchmarkScaleUp40(b *testing.B) {
	window := 60 * time.Second
	if v := os.Getenv("SPREAD_FAIRSHARE_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		window = d
	}
	for _, row := range []struct {
		name string
		mca  time.Duration
		fair bool
	}{
		{"nothing", 0, false},
		{"max-connection-age-5s", 5 * time.Second, false},
		{"max-connection-age-30s", 30 * time.Second, false},
		{"fair-share", 0, true},
	} {
		b.Run(row.name, func(b *testing.B) {
			for range b.N {
				scaleUp40(b, row.name, row.mca, row.fair, window)
			}
		})
	}
}

func scaleUp40(b *testing.B, name string, mca time.Duration, fair bool, window time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), window+3*time.Minute)
	defer cancel()
	var opts []fairshare.Option
	if fair {
		opts = append(opts, fairshare.WithPolicy(fairshare.DefaultPolicy()))
	}
	f := newFleet(b, ctx, opts...)
	f.off, f.maxConnAge = !fair, mca
	for i := range 5 {
		f.start(i)
	}
	cs := startClients(b, ctx, f.vipAddr, 40, 100*time.Millisecond)
	total := func(c map[string]int) int {
		n := 0
		for _, v := range c {
			n += v
		}
		return n
	}
	waitFor(b, 60*time.Second, "40 connections", func() bool { c, _, _ := f.counts(); return total(c) == 40 })
	if fair { // start from a settled fleet, as a real one would be
		waitFor(b, 120*time.Second, "5 pods balanced", func() bool { c, _, _ := f.counts(); return within(c) && total(c) == 40 })
	}
	_, sheds0, ref0 := f.counts()
	acc0, failed0 := f.vip.Accepted(), cs.failed.Load()
	b.ResetTimer()
	start := time.Now()
	for i := 5; i < 8; i++ {
		f.start(i)
	}
	after, _, _ := f.counts()
	need := movesNeeded(after)
	var first time.Duration = -1
	var shedsAtConv uint64
	var last map[string]int
	var callsAtTail map[string]int64
	// The window, and at least 60 s after convergence (the steady-state claim).
	for time.Since(start) < window || (first >= 0 && time.Since(start) < first+60*time.Second) {
		c, s, _ := f.counts()
		if first < 0 && within(c) && total(c) == 40 {
			first, shedsAtConv = time.Since(start), s
		}
		if callsAtTail == nil && time.Since(start) >= max(window, first+60*time.Second)-10*time.Second {
			callsAtTail = cs.snapshot()
		}
		last = c
		time.Sleep(100 * time.Millisecond) // sampling the fleet
	}
	calls := cs.snapshot()
	_, sheds1, ref1 := f.counts()
	reconnects := f.vip.Accepted() - acc0
	failed := cs.failed.Load() - failed0
	cs.halt()
	b.StopTimer()
	lo, hi := 1<<30, 0
	for _, v := range last {
		lo, hi = min(lo, v), max(hi, v)
	}
	clo, chi := int64(1<<62), int64(0)
	for i := range 8 {
		n := calls[fmt.Sprintf("pod-%d", i)] - callsAtTail[fmt.Sprintf("pod-%d", i)]
		clo, chi = min(clo, n), max(chi, n)
	}
	conv, steady := "never", "-"
	if first >= 0 {
		conv = first.Round(100 * time.Millisecond).String()
		steady = fmt.Sprintf("%d in %v", sheds1-shedsAtConv, (time.Since(start) - first).Round(time.Second))
	}
	b.ReportMetric(float64(reconnects), "reconnects")
	b.ReportMetric(float64(sheds1-sheds0), "sheds")
	b.ReportMetric(float64(failed), "failed")
	b.Logf("| %s | %s | %d (%d shed, %d turned away; %d moves needed) | %s | %d of %d | %d / %d | %.1f / %.1f |", name, conv, reconnects,
		sheds1-sheds0, ref1-ref0, need, steady, failed, cs.calls.Load(), hi, lo, float64(chi)/10, float64(clo)/10)
}
