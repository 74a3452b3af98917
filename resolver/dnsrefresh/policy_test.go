package dnsrefresh

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestTrackerObserve(t *testing.T) {
	const (
		ivl = 5 * time.Second
		min = 1 * time.Second
	)
	ok := func(ttl time.Duration) answer { return answer{kind: found, ttl: ttl} }
	emptyAns := answer{kind: empty, ttl: 30 * time.Second}
	fail := answer{kind: failed, ttl: -1, err: errors.New("SERVFAIL")}
	a, b := []string{"192.0.2.1:80"}, []string{"192.0.2.1:80", "192.0.2.2:80"}

	type step struct {
		in     answer
		addrs  []string
		push   []string // nil: no push
		report bool
		kept   bool
		wait   time.Duration
	}
	for _, tc := range []struct {
		name      string
		threshold int
		steps     []step
	}{
		{"push only on change", 2, []step{
			{in: ok(30 * time.Second), addrs: a, push: a, wait: ivl},
			{in: ok(30 * time.Second), addrs: a, wait: ivl},
			{in: ok(30 * time.Second), addrs: b, push: b, wait: ivl},
		}},
		{"ttl clamps between min interval and interval", 2, []step{
			{in: ok(2 * time.Second), addrs: a, push: a, wait: 2 * time.Second},
			{in: ok(0), addrs: a, wait: min},
			{in: ok(-1), addrs: a, wait: ivl},
			{in: ok(time.Hour), addrs: a, wait: ivl},
		}},
		{"failure first is reported, with backoff", 2, []step{
			{in: fail, report: true, wait: min},
			{in: fail, report: true, wait: 2 * min},
			{in: ok(30 * time.Second), addrs: a, push: a, wait: ivl},
		}},
		{"failure after a state keeps it; backoff capped at interval", 2, []step{
			{in: ok(30 * time.Second), addrs: a, push: a, wait: ivl},
			{in: fail, kept: true, wait: min},
			{in: fail, kept: true, wait: 2 * min},
			{in: fail, kept: true, wait: 4 * min},
			{in: fail, kept: true, wait: ivl},
			{in: fail, kept: true, wait: ivl},
			{in: ok(30 * time.Second), addrs: a, wait: ivl},
			{in: fail, kept: true, wait: min},
		}},
		{"empty needs confirmation", 2, []step{
			{in: ok(30 * time.Second), addrs: a, push: a, wait: ivl},
			{in: emptyAns, kept: true, wait: min},
			{in: ok(30 * time.Second), addrs: a, wait: ivl}, // the spurious empty is forgotten
			{in: emptyAns, kept: true, wait: min},
			{in: emptyAns, push: []string{}, wait: ivl},
			{in: emptyAns, wait: ivl},
			{in: ok(30 * time.Second), addrs: b, push: b, wait: ivl},
		}},
		{"threshold 3, a failure in between does not reset the count", 3, []step{
			{in: ok(30 * time.Second), addrs: a, push: a, wait: ivl},
			{in: emptyAns, kept: true, wait: min},
			{in: fail, kept: true, wait: min},
			{in: emptyAns, kept: true, wait: min},
			{in: emptyAns, push: []string{}, wait: ivl},
		}},
		{"threshold 1 pushes the first empty", 1, []step{
			{in: ok(30 * time.Second), addrs: a, push: a, wait: ivl},
			{in: emptyAns, push: []string{}, wait: ivl},
		}},
		{"empty first is pushed at once", 2, []step{
			{in: emptyAns, push: []string{}, wait: ivl},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := tracker{timing: timing{interval: ivl, minInterval: min, emptyThreshold: tc.threshold}}
			for i, s := range tc.steps {
				d := tr.observe(s.in, s.addrs)
				if d.push != (s.push != nil) || d.push && !slices.Equal(d.addrs, s.push) {
					t.Errorf("step %d: push=%v %v, want %v", i, d.push, d.addrs, s.push)
				}
				if d.report != s.report || d.kept != s.kept || d.wait != s.wait {
					t.Errorf("step %d: report=%v kept=%v wait=%v, want %v %v %v",
						i, d.report, d.kept, d.wait, s.report, s.kept, s.wait)
				}
			}
		})
	}
}

func TestTrackerRejected(t *testing.T) {
	tr := tracker{timing: timing{interval: 5 * time.Second, minInterval: time.Second, emptyThreshold: 2}}
	a := []string{"192.0.2.1:80"}
	tr.observe(answer{kind: found, ttl: -1}, a)
	if w := tr.rejected(); w != time.Second {
		t.Errorf("rejected() = %v, want 1s", w)
	}
	if d := tr.observe(answer{kind: found, ttl: -1}, a); !d.push {
		t.Error("the same list was not pushed again after a rejected push")
	}
}

func TestJitter(t *testing.T) {
	for range 1000 {
		if d := jitter(10*time.Second, time.Second); d < 9*time.Second || d > 10*time.Second {
			t.Fatalf("jitter(10s) = %v, want within [9s, 10s]", d)
		}
		if d := jitter(1050*time.Millisecond, time.Second); d < time.Second || d > 1050*time.Millisecond {
			t.Fatalf("jitter(1.05s, floor 1s) = %v", d)
		}
	}
	if d := jitter(time.Second, time.Second); d != time.Second {
		t.Errorf("jitter at the floor = %v, want the floor", d)
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		host string
		port uint16
		bad  bool
	}{
		{in: "be-srv:50051", host: "be-srv", port: 50051},
		{in: "be-srv.default.svc.cluster.local.:50051", host: "be-srv.default.svc.cluster.local.", port: 50051},
		{in: "be-srv", host: "be-srv", port: 443},
		{in: "10.0.0.1:80", host: "10.0.0.1", port: 80},
		{in: "[::1]:80", host: "::1", port: 80},
		{in: "[::1]", host: "::1", port: 443},
		{in: "::1", host: "::1", port: 443},
		{in: "", bad: true},
		{in: "host:", bad: true},
		{in: ":80", bad: true},
		{in: "host:0", bad: true},
		{in: "host:http", bad: true},
		{in: "host:65536", bad: true},
	} {
		h, p, err := parseTarget(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseTarget(%q) = %q, %d; want an error", tc.in, h, p)
			}
			continue
		}
		if err != nil || h != tc.host || p != tc.port {
			t.Errorf("parseTarget(%q) = %q, %d, %v; want %q, %d", tc.in, h, p, err, tc.host, tc.port)
		}
	}
}

func TestServerAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.96.0.10":      "10.96.0.10:53",
		"10.96.0.10:5353": "10.96.0.10:5353",
		"::1":             "[::1]:53",
		"[::1]":           "[::1]:53",
		"[::1]:5353":      "[::1]:5353",
		"dns.example":     "",
		"":                "",
	} {
		got, err := serverAddr(in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("serverAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
