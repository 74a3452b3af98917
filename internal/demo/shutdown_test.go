package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/frontend"
)

// frontendCalls sums spread_frontend_calls_total from the demo's /metrics: the calls the
// frontend has finished.
func frontendCalls(ctx context.Context, t *testing.T, adminURL string) float64 {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, adminURL+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "spread_frontend_calls_total{") {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// TestStopAnswersLongRequests: a /call request that would run 30 s is in flight when the
// demo stops. Like the standalone frontend, the demo cuts it well before its HTTP server's
// grace ends, and it answers 200 with well-formed partial JSON (interrupted, its cut calls
// failed, ok+failed = n); Stop is clean. Before, the server's grace ran out, the
// connection was closed with no answer and Stop reported an unclean shutdown.
func TestStopAnswersLongRequests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d, err := Start(Config{
		Cluster: cluster.Config{
			Replicas: 2, FirstPodIP: netip.MustParseAddr("127.0.17.1"), PodPort: 0,
			VIP: "127.96.0.17:0", DNSAddr: "127.0.0.1:0", XDSAddr: "-",
		},
		FrontendAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Grace: 8 * time.Second, // HTTP servers: 4 s; requests cut at 2 s
		Modes: []string{"headless"},
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
	call(t, d, "/call/headless?n=1") // the mode is up

	const n = 30
	type answer struct {
		code int
		body []byte
		err  error
	}
	answers := make(chan answer, 1)
	base := frontendCalls(ctx, t, d.AdminURL)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.FrontendURL+"/call/headless?n="+strconv.Itoa(n)+"&interval=1s", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answers <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		answers <- answer{resp.StatusCode, b, err}
	}()
	// In flight: the request has made its first call (the next comes 1 s later).
	for frontendCalls(ctx, t, d.AdminURL) <= base {
		select {
		case a := <-answers:
			t.Fatalf("the request ended before the demo stopped: %+v", a)
		case <-ctx.Done():
			t.Fatal("the request never made a call")
		case <-time.After(20 * time.Millisecond):
		}
	}
	start := time.Now()
	stopErr := make(chan error, 1)
	go func() { stopErr <- d.Stop() }()
	stopped = true

	var a answer
	select {
	case a = <-answers:
	case <-ctx.Done():
		t.Fatal("no answer")
	}
	t.Logf("answered %v after Stop: %d %s (err %v)", time.Since(start), a.code, a.body, a.err)
	if a.err != nil || a.code != http.StatusOK {
		t.Fatalf("request cut by the demo's shutdown: %d, %v; want 200 with partial JSON", a.code, a.err)
	}
	var r frontend.Result
	if err := json.Unmarshal(a.body, &r); err != nil {
		t.Fatalf("answer is not JSON: %v in %q", err, a.body)
	}
	if !r.Interrupted || r.OK < 1 || r.Failed < 1 || r.OK+r.Failed != n {
		t.Errorf("answer %+v: want interrupted, ok ≥ 1, failed ≥ 1, ok+failed = %d", r, n)
	}
	select {
	case err := <-stopErr:
		if err != nil {
			t.Errorf("Stop: %v, want a clean shutdown", err)
		}
	case <-ctx.Done():
		t.Fatal("Stop did not return")
	}
}
