package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/frontend"
	"github.com/spread-grpc/spread/internal/modes"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startDemo runs a demo on free loopback ports, with pods from firstIP (each test its own
// range, so tests never share an address).
func startDemo(t *testing.T, firstIP string, replicas int) *Demo {
	t.Helper()
	d, err := Start(Config{
		Cluster: cluster.Config{
			Replicas: replicas, FirstPodIP: netip.MustParseAddr(firstIP), PodPort: 0,
			VIP: "127.96.0.10:0", DNSAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0",
		},
		FrontendAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return d
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func call(t *testing.T, d *Demo, path string) frontend.Result {
	t.Helper()
	code, body := get(t, d.FrontendURL+path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	var r frontend.Result
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
	if r.Failed != 0 {
		t.Fatalf("GET %s: %d failed calls: %+v", path, r.Failed, r.Errors)
	}
	return r
}

// waitAllPods makes calls until every pod has answered once: round_robin starts picking as
// soon as the first subchannel is ready, and the rest join as they connect.
func waitAllPods(t *testing.T, d *Demo, mode string, pods int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if r := call(t, d, fmt.Sprintf("/call/%s?n=%d", mode, pods)); len(r.Counts) == pods {
			return
		}
	}
	t.Fatalf("mode %s never reached all %d pods", mode, pods)
}

func TestSampleBehaviour(t *testing.T) {
	d := startDemo(t, "127.0.11.1", 5)

	// ClusterIP: one connection through the VIP, all calls on one pod (the sample's /backend).
	r := call(t, d, "/backend")
	if len(r.Backends) != 10 || len(r.Counts) != 1 || r.Mode != "clusterip" {
		t.Fatalf("/backend: %d answers from %d pods (%v), want 10 from 1", len(r.Backends), len(r.Counts), r.Counts)
	}
	pinned := r.Pods[0]
	for _, m := range r.Backends {
		if want := "Hello unary RPC msg from hostname " + pinned; m != want {
			t.Errorf("message %q, want %q", m, want)
		}
	}
	if r := call(t, d, "/call/clusterip?n=100"); r.Counts[pinned] != 100 {
		t.Errorf("clusterip n=100 counts %v, want all 100 on %s", r.Counts, pinned)
	}

	// Headless + round_robin: 2 calls per pod, and 200 each of 1000.
	waitAllPods(t, d, "headless", 5)
	r = call(t, d, "/backendlb")
	if len(r.Counts) != 5 {
		t.Fatalf("/backendlb counts %v, want 5 pods", r.Counts)
	}
	for pod, n := range r.Counts {
		if n != 2 {
			t.Errorf("/backendlb: pod %s answered %d, want 2 (counts %v)", pod, n, r.Counts)
		}
	}
	r = call(t, d, "/call/headless?n=1000")
	for pod, n := range r.Counts {
		if n != 200 {
			t.Errorf("n=1000: pod %s answered %d, want 200 (counts %v)", pod, n, r.Counts)
		}
	}
	pods := map[string]bool{}
	for _, p := range d.Cluster.Pods() {
		pods[p.Pod] = true
		if !strings.HasPrefix(p.Pod, "be-deployment-") {
			t.Errorf("pod name %q is not like a cluster.Deployment's pod", p.Pod)
		}
	}
	for pod := range r.Counts {
		if !pods[pod] {
			t.Errorf("answer from unknown pod %q", pod)
		}
	}

	// A stream lives on one pod in both modes.
	for _, mode := range []string{"clusterip", "headless"} {
		r := call(t, d, "/call/"+mode+"?n=20&stream=true")
		if !r.Stream || r.OK != 20 || len(r.Counts) != 1 {
			t.Errorf("%s stream: ok=%d counts=%v, want 20 messages from one pod", mode, r.OK, r.Counts)
		}
	}

	// fresh=true dials per request, as the sample's code did.
	if r := call(t, d, "/call/headless?n=5&fresh=true"); r.OK != 5 || !r.Fresh {
		t.Errorf("fresh: %+v", r)
	}
}

func TestBadInputKeepsServing(t *testing.T) {
	d := startDemo(t, "127.0.12.1", 2)
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/call/headless?n=0", 400, "1 to 1000"},
		{"/call/headless?n=1001", 400, "1 to 1000"},
		{"/call/headless?n=ten", 400, "whole number"},
		{"/call/headless?stream=maybe", 400, "true or false"},
		{"/call/headless?fresh=2", 400, "true or false"},
		{"/call/headless?interval=11s", 400, "0 to 10s"},
		{"/call/headless?interval=-1ms", 400, "0 to 10s"},
		{"/call/headless?interval=soon", 400, "duration"},
		{"/call/headless?n=1000&interval=1s", 400, "request timeout"},
		{"/call/headless?colour=blue", 400, "unknown query parameter"},
		{"/call/headless?n=1&n=2", 400, "given 2 times"},
		{"/call/nope", 404, `"headless"`},
		{"/nope", 404, "routes"},
	} {
		code, body := get(t, d.FrontendURL+tc.path)
		if code != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s = %d %s; want %d containing %q", tc.path, code, body, tc.code, tc.want)
		}
		if code == 400 && !strings.Contains(string(body), `"allowed"`) {
			t.Errorf("GET %s: 400 without the allowed parameters: %s", tc.path, body)
		}
	}
	// Still serving.
	if r := call(t, d, "/call/headless?n=2"); r.OK != 2 {
		t.Errorf("after bad input: %+v", r)
	}
}

func TestIndex(t *testing.T) {
	d := startDemo(t, "127.0.13.1", 1)
	code, body := get(t, d.FrontendURL+"/")
	var idx struct {
		Modes []frontend.ModeInfo `json:"modes"`
	}
	if code != 200 || json.Unmarshal(body, &idx) != nil || len(idx.Modes) != len(d.Frontend.Modes()) || len(idx.Modes) < 3 || idx.Modes[0].Name != "clusterip" || idx.Modes[1].Path != "/call/headless" {
		t.Errorf("GET / = %d %s", code, body)
	}
	req, _ := http.NewRequest(http.MethodGet, d.FrontendURL+"/", nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(b), "/static/app.js") {
		t.Errorf("browser GET /: %s %s", resp.Header.Get("Content-Type"), b)
	}
	code, body = get(t, d.AdminURL+"/metrics")
	if code != 200 || !strings.Contains(string(body), "go_goroutines") {
		t.Errorf("metrics: %d", code)
	}
	if code, _ := get(t, d.AdminURL+"/readyz"); code != 200 {
		t.Errorf("readyz: %d", code)
	}
}

func TestAddressTakenIsAClearError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Start(Config{
		Cluster:      cluster.Config{FirstPodIP: netip.MustParseAddr("127.0.14.1"), PodPort: 0, VIP: "127.96.0.10:0", DNSAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0"},
		FrontendAddr: l.Addr().String(), AdminAddr: "-",
	}, nil)
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "frontend") {
		t.Errorf("Start on a taken frontend address: %v", err)
	}
	// A taken pod address.
	pl, err := net.Listen("tcp", "127.0.14.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	port := pl.Addr().(*net.TCPAddr).Port
	_, err = Start(Config{
		Cluster:      cluster.Config{Replicas: 3, FirstPodIP: netip.MustParseAddr("127.0.14.1"), PodPort: port, DNSAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0"},
		FrontendAddr: "127.0.0.1:0", AdminAddr: "-",
	}, nil)
	if err == nil || !strings.Contains(err.Error(), "127.0.14.3") || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("Start with a taken pod address: %v", err)
	}
}

func TestClusterConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  cluster.Config
		want string
	}{
		{cluster.Config{Replicas: -1}, "replicas"},
		{cluster.Config{Replicas: cluster.MaxReplicas + 1}, "replicas"},
		{cluster.Config{FirstPodIP: netip.MustParseAddr("10.0.0.1")}, "loopback"},
		{cluster.Config{FirstPodIP: netip.MustParseAddr("127.255.255.250")}, "no room"},
		{cluster.Config{PodPort: 70000}, "pod port"},
		{cluster.Config{DNSAddr: "192.0.2.1:53"}, "loopback"},
		{cluster.Config{VIP: "nope"}, "ip:port"},
	} {
		if _, err := cluster.Start(tc.cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("StartCluster(%+v) = %v, want error containing %q", tc.cfg, err, tc.want)
		}
	}
}

// TestNewPodsByMode: after a scale-up, plain headless DNS never reaches the new pods (its
// connections never break, so it never re-resolves) while dns-refresh does within its
// interval, and ClusterIP stays pinned to one pod.
func TestNewPodsByMode(t *testing.T) {
	d, err := Start(Config{
		Cluster:      cluster.Config{Replicas: 3, FirstPodIP: netip.MustParseAddr("127.0.15.1"), PodPort: 0, VIP: "127.96.0.10:0", DNSAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0", DNSTTL: time.Second},
		FrontendAddr: "127.0.0.1:0", AdminAddr: "-",
		ModeOptions: modes.Options{DNSRefreshInterval: time.Second},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop() })
	waitAllPods(t, d, "headless", 3)
	waitAllPods(t, d, "dns-refresh", 3)
	waitAllPods(t, d, "kube", 3)
	waitAllPods(t, d, "xds", 3)
	waitAllPods(t, d, "xds-tuned", 3)
	pinned := call(t, d, "/call/clusterip?n=3").Pods
	if err := d.Cluster.Scale(5); err != nil {
		t.Fatal(err)
	}
	waitAllPods(t, d, "dns-refresh", 5) // within about a second
	waitAllPods(t, d, "kube", 5)
	waitAllPods(t, d, "xds", 5)
	waitAllPods(t, d, "xds-tuned", 5)
	if r := call(t, d, "/call/headless?n=100"); len(r.Counts) != 3 {
		t.Errorf("plain headless reached %d pods after scale-up, want the original 3: %v", len(r.Counts), r.Counts)
	}
	if r := call(t, d, "/call/clusterip?n=20"); len(r.Pods) != 1 || r.Pods[0] != pinned[0] {
		t.Errorf("clusterip moved: %v, was on %v", r.Pods, pinned)
	}
}
