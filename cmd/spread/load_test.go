package main

import (
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/load"
)

func TestLoadAndCompareBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"load"}, "exactly one of --target"},
		{[]string{"load", "--target=x", "--url=http://a/call/b"}, "exactly one of --target"},
		{[]string{"load", "--target=x", "--rate=-5"}, "rate -5 calls/s is negative"},
		{[]string{"load", "--target=x", "--rate=0"}, "rate is 0"},
		{[]string{"load", "--target=x", "--duration=0s"}, "duration is 0"},
		{[]string{"load", "--target=x", "--max-calls=-1"}, "max calls -1"},
		{[]string{"load", "--target=x", "--concurrency=0"}, "--concurrency 0"},
		{[]string{"load", "--target=x", "--lb=random"}, `--lb "random"`},
		{[]string{"load", "--target=nope:///x"}, `no resolver for scheme "nope"`},
		{[]string{"load", "--url=ftp://x/call/a"}, "want a frontend mode URL"},
		{[]string{"load", "--url=http://127.0.0.1:1/call/a", "--stream"}, "--stream needs --target"},
		{[]string{"load", "--url=http://127.0.0.1:1/call/a", "--hedge-delay=10ms"}, "need --target"},
		{[]string{"load", "--target=x", "--attempt-timeout=-1s"}, "want 0 (off) or more"},
		{[]string{"load", "--target=x", "--hedge-delay=5ms", "--hedge-budget=2"}, "--hedge-budget 2"},
		{[]string{"compare", "--modes=nope"}, `unknown mode "nope"`},
		{[]string{"compare", "--scenarios=nope"}, `unknown scenario "nope"`},
		{[]string{"compare", "--rate=-1"}, "rate -1"},
		{[]string{"compare", "--duration=0s"}, "duration 0s"},
		{[]string{"compare", "--event-at=2"}, "event at 2"},
		{[]string{"compare", "--parallel=-1"}, "--parallel -1"},
	} {
		code, out := runCmd(tc.args...)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("spread %v: exit %d, output %q; want exit 2 mentioning %q", tc.args, code, out, tc.want)
		}
	}
	// An unreachable target is found by the bounded first call: exit 1, no run.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if code, out := runCmd("load", "--target=passthrough:///"+addr, "--connect-timeout=2s"); code != 1 || !strings.Contains(out, "not reachable") {
		t.Errorf("unreachable target: exit %d %q; want exit 1, not reachable", code, out)
	}
}

// spread load against a real cluster stops by itself, bounded by --max-calls, and its JSON
// report counts every pod.
func TestLoadRuns(t *testing.T) {
	c, err := cluster.Start(cluster.Config{Replicas: 3, FirstPodIP: netip.MustParseAddr("127.0.71.1"), PodPort: 0,
		VIP: "127.96.71.10:0", DNSAddr: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(t.Context())
	code, out := runCmd("load", "--target="+c.Target(cluster.HeadlessService), "--rate=500", "--duration=5s", "--max-calls=300", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	var rep load.Report
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &rep); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	t.Logf("errors %v dropped %d", rep.Errors, rep.Dropped)
	// Calls dropped at the in-flight limit are a starved machine's, not the command's: every
	// started call must succeed, and the started and dropped ones make up the 300.
	if rep.Scheduled != 300 || rep.Failed != 0 || rep.OK+rep.Dropped != 300 || len(rep.Pods) != 3 || rep.Stopped != load.StoppedMaxCalls {
		t.Errorf("report: scheduled %d ok %d failed %d dropped %d pods %v stopped %s; want 300 calls over 3 pods, none failed, stopped by max-calls",
			rep.Scheduled, rep.OK, rep.Failed, rep.Dropped, rep.Pods, rep.Stopped)
	}
}

// With --hedge-delay, calls to a slow pod are hedged: the report counts more than one
// attempt per call, and no more than the budget allows: extra ≤ 10 + 0.1 × (200 calls + the
// reachability call), 0.1505 per call.
func TestLoadHedged(t *testing.T) {
	c, err := cluster.Start(cluster.Config{Replicas: 3, FirstPodIP: netip.MustParseAddr("127.0.72.1"), PodPort: 0,
		VIP: "127.96.72.10:0", DNSAddr: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(t.Context())
	if _, err := c.Slow("random", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	code, out := runCmd("load", "--target="+c.Target(cluster.HeadlessService), "--rate=100", "--duration=10s", "--max-calls=200",
		"--hedge-delay=20ms", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	var rep struct {
		OK              int     `json:"ok"`
		AttemptsPerCall float64 `json:"attempts_per_call"`
	}
	if err := json.Unmarshal([]byte(out[:strings.LastIndex(out, "}")+1]), &rep); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	if rep.OK != 200 || rep.AttemptsPerCall <= 1 || rep.AttemptsPerCall > 1+(10+0.1*201)/200 {
		t.Errorf("hedged load: %d ok, %.3f attempts per call; want 200 ok, more than 1 and at most 1.1505 attempts per call", rep.OK, rep.AttemptsPerCall)
	}
}
