package load

import (
	"math"
	"testing"
	"time"
)

// TestTinyRatesSaturate: at 1e-11 calls/s call 1 is due beyond what a Duration holds; Due
// saturates instead of overflowing to a negative Duration (which made DueBy loop forever).
func TestTinyRatesSaturate(t *testing.T) {
	for _, rate := range []float64{1e-11, 1e-300, math.SmallestNonzeroFloat64} {
		if d := Due(1, rate); d != math.MaxInt64 {
			t.Errorf("Due(1, %g) = %v, want the largest Duration", rate, d)
		}
		done := make(chan int, 1)
		go func() { done <- Planned(Config{Rate: rate, Duration: time.Hour}) }()
		select {
		case n := <-done:
			if n != 1 {
				t.Errorf("Planned at %g calls/s for 1h = %d, want 1 (call 0, at the start)", rate, n)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Planned at %g calls/s did not return", rate)
		}
	}
	if d := Due(3, 2); d != 1500*time.Millisecond {
		t.Errorf("Due(3, 2) = %v", d)
	}
}
