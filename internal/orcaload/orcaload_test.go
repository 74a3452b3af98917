package orcaload

import (
	"math"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestUtilizationFollowsRateOverCapacity(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r, err := New(WithCapacity(500), WithBaseUtilization(0.1), WithClock(c.now))
	if err != nil {
		t.Fatal(err)
	}
	// 100 calls/s for 3 s.
	for range 300 {
		r.Record()
		c.add(10 * time.Millisecond)
	}
	m := r.ServerMetrics()
	if math.Abs(m.QPS-100) > 10 {
		t.Errorf("QPS = %v, want ≈100", m.QPS)
	}
	if want := 0.1 + m.QPS/500; math.Abs(m.AppUtilization-want) > 1e-9 {
		t.Errorf("utilization = %v, want %v", m.AppUtilization, want)
	}
	if m.CPUUtilization != -1 || m.Utilization == nil {
		t.Errorf("unset fields: %+v", m)
	}
	// Idle for longer than the window: the rate decays to 0.
	c.add(2 * time.Second)
	if q := r.Rate(); q != 0 {
		t.Errorf("rate after idling = %v, want 0", q)
	}
}

func TestOptionsValidated(t *testing.T) {
	for _, opts := range [][]Option{{WithCapacity(0)}, {WithBaseUtilization(-1)}, {WithWindow(0)}} {
		if _, err := New(opts...); err == nil {
			t.Errorf("New(%d opts) accepted a bad option", len(opts))
		}
	}
}
