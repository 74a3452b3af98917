package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/dashboard"
)

// TestDashboardUnderDemo drives the dashboard's HTTP side without a browser: the cluster API
// is mounted on the frontend, a load started for a mode shows in the state, and an open
// event stream does not hold up the demo's shutdown.
func TestDashboardUnderDemo(t *testing.T) {
	d, err := Start(Config{
		Cluster: cluster.Config{Replicas: 5, FirstPodIP: netip.MustParseAddr("127.0.16.1"), PodPort: 0,
			VIP: "127.96.0.16:0", DNSAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0"},
		FrontendAddr: "127.0.0.1:0", AdminAddr: "-", Grace: 20 * time.Second,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			d.Stop()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	do := func(method, path string) int {
		req, _ := http.NewRequestWithContext(ctx, method, d.FrontendURL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := do(http.MethodGet, "/cluster"); code != 200 {
		t.Fatalf("GET /cluster on the frontend: %d", code)
	}
	for _, m := range []string{"clusterip", "headless"} {
		if code := do(http.MethodPost, "/dashboard/load/"+m+"?rate=100&duration=1m"); code != http.StatusAccepted {
			t.Fatalf("start load on %s: %d", m, code)
		}
	}
	state := func() dashboard.State {
		_, body := get(t, d.FrontendURL+"/dashboard/state")
		var st dashboard.State
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("state %s: %v", body, err)
		}
		return st
	}
	answering := func(m dashboard.ModeState) int {
		n := 0
		for _, p := range m.Pods {
			if p.Calls > 0 {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := state()
		if !st.Controls || st.Cluster == nil || len(st.Cluster.Pods) != 5 {
			t.Fatalf("state without the demo's controls and pods: %+v", st)
		}
		if answering(st.Modes[0]) == 1 && answering(st.Modes[1]) == 5 && st.Modes[0].Load != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("want clusterip on 1 pod and headless on 5: %+v", st.Modes[:2])
		}
		time.Sleep(100 * time.Millisecond)
	}

	// An open event stream (a browser tab) must not hold the shutdown for its grace period.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.FrontendURL+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("event stream starts %q, %v", line, err)
	}
	start := time.Now()
	stopped = true
	if err := d.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Stop with an open event stream and running loads took %v", took)
	}
}
