package load_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/connect"
	"github.com/spread-grpc/spread/internal/frontend"
	"github.com/spread-grpc/spread/internal/load"
	"github.com/spread-grpc/spread/internal/modes"
)

// Long-lived streams move onto pods added later: the backends end each stream at its age
// (MaxStreamAge), the client resumes it through a balancer that follows DNS, and no message
// is lost or repeated.
func TestStreamsResumeAndSpread(t *testing.T) {
	c, err := cluster.Start(cluster.Config{Replicas: 2, FirstPodIP: netip.MustParseAddr("127.0.72.1"), PodPort: 0,
		VIP: "127.96.72.10:0", DNSAddr: "127.0.0.1:0", DNSTTL: time.Second, MaxStreamAge: 300 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop(t.Context())
	ms, err := modes.Build(c, modes.Options{DNSRefreshInterval: 200 * time.Millisecond}, "dns-refresh")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := connect.Dial(ms[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := echo.NewEchoServerClient(conn)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := map[string]bool{}
	for _, p := range c.Pods() {
		before[p.Pod] = true
	}
	// 4 streams, a message every 10 ms each; scale 2 → 5 once the first messages arrived.
	scaled := make(chan struct{})
	first := true
	var newPodMsgs int
	rep, err := load.RunStreams(ctx, load.Config{Rate: 400, Duration: 30 * time.Second, MaxCalls: 100000, Window: time.Second}, 4,
		load.ResumingStream(client, 100000, 10*time.Millisecond),
		load.WithObserver(func(s load.Sample) {
			if first {
				first = false
				go func() { c.Scale(5); close(scaled) }()
			}
			if s.Pod != "" && !before[s.Pod] {
				newPodMsgs++
				if newPodMsgs == 200 { // enough seen on the new pods: end the run early
					cancel()
				}
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	<-scaled
	if rep.Failed != 0 {
		t.Errorf("%d stream failures (%v), want none: stream-age ends are resumed", rep.Failed, rep.Errors)
	}
	reached := 0
	for p := range rep.Pods {
		if !before[p] {
			reached++
		}
	}
	if reached == 0 || rep.Stopped != load.StoppedCanceled {
		t.Errorf("streams on pods %v (stopped: %s); want them on the pods added later too", rep.Pods, rep.Stopped)
	}

	// The frontend's stream mode resumes too: one long stream through the stream-age ends.
	fe, err := frontend.New(frontend.Config{Name: "fe", Modes: ms})
	if err != nil {
		t.Fatal(err)
	}
	defer fe.Close()
	srv := httptest.NewServer(fe.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/call/dns-refresh?stream=true&n=100&interval=10ms")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res frontend.Result
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatal(err)
	}
	if res.OK != 100 || res.Failed != 0 || res.Resumes == 0 || len(res.Counts) < 2 {
		t.Errorf("frontend stream: ok %d failed %d resumes %d pods %v; want 100 messages over several pods, resumed", res.OK, res.Failed, res.Resumes, res.Counts)
	}
}
