package demo

import (
	"github.com/spread-grpc/spread/internal/cluster"

	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// do sends one request with the given headers (Host may be among them) and returns the status.
func do(t *testing.T, method, u string, h map[string]string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestControlsRefuseCrossSiteAndRebinding: on both servers that carry the cluster controls
// (the admin API `spread ctl` uses and the frontend's /cluster), a cross-site request and a
// request naming a foreign Host (DNS rebinding, even with a matching Origin) are refused and
// change nothing; the same request from curl or the page itself is served.
func TestControlsRefuseCrossSiteAndRebinding(t *testing.T) {
	d := startDemo(t, "127.0.160.1", 2)
	for _, base := range []string{d.AdminURL, d.FrontendURL} {
		u, _ := url.Parse(base)
		port := u.Port()
		scale := base + "/cluster/scale?replicas=3"
		for _, tc := range []struct {
			name string
			h    map[string]string
		}{
			{"cross-site", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}},
			{"cross-site origin only", map[string]string{"Origin": "http://evil.example"}},
			{"rebinding", map[string]string{"Host": "evil.example:" + port, "Origin": "http://evil.example:" + port}},
			{"rebinding without origin", map[string]string{"Host": "evil.example:" + port}},
		} {
			if code := do(t, http.MethodPost, scale, tc.h); code != http.StatusForbidden {
				t.Errorf("%s: POST %s: %d, want 403", tc.name, scale, code)
			}
		}
		if code := do(t, http.MethodGet, base+"/cluster", map[string]string{"Host": "evil.example:" + port}); code != http.StatusForbidden {
			t.Errorf("rebinding: GET %s/cluster: %d, want 403", base, code)
		}
		if got := d.Cluster.Replicas(); got != 2 {
			t.Fatalf("replicas %d after refused requests, want 2", got)
		}
		for _, h := range []map[string]string{
			{"Host": "localhost:" + port},
			{"Origin": base, "Sec-Fetch-Site": "same-origin"},
		} {
			if code := do(t, http.MethodGet, base+"/cluster", h); code != http.StatusOK {
				t.Errorf("GET %s/cluster with %v: %d, want 200", base, h, code)
			}
		}
	}
	if code := do(t, http.MethodPost, d.AdminURL+"/cluster/scale?replicas=3", nil); code != http.StatusOK {
		t.Fatalf("POST scale from curl: %d, want 200", code)
	}
	if got := d.Cluster.Replicas(); got != 3 {
		t.Errorf("replicas %d, want 3", got)
	}
}

// TestListenersMustBeLoopback: the frontend and admin servers carry the unauthenticated
// cluster controls, so like every other demo address they must be loopback.
func TestListenersMustBeLoopback(t *testing.T) {
	cc := cluster.Config{FirstPodIP: netip.MustParseAddr("127.0.161.1"), PodPort: 0, VIP: "127.96.0.10:0", DNSAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0"}
	for _, tc := range []struct{ fe, admin, want string }{
		{"0.0.0.0:0", "-", "frontend"},
		{":0", "-", "frontend"},
		{"127.0.0.1:0", "0.0.0.0:0", "admin"},
		{"127.0.0.1:0", "[::]:0", "admin"},
	} {
		d, err := Start(Config{Cluster: cc, FrontendAddr: tc.fe, AdminAddr: tc.admin}, nil)
		if err == nil {
			d.Stop()
			t.Errorf("Start(frontend %s, admin %s) succeeded, want a loopback error", tc.fe, tc.admin)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "loopback") && !strings.Contains(err.Error(), "ip:port") {
			t.Errorf("Start(frontend %s, admin %s): %v, want a %s loopback error", tc.fe, tc.admin, err, tc.want)
		}
	}
}

// post sends a POST to the admin API and decodes the JSON answer.
func post(t *testing.T, u string) (int, map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// TestAdminAPIInputs: repeated, unknown and unparsable parameters are refused and change
// nothing; thaw random and slow random 0 undo what was done, on the pod it was done to.
func TestAdminAPIInputs(t *testing.T) {
	d := startDemo(t, "127.0.162.1", 3)
	for _, q := range []string{
		"/cluster/scale?replicas=5&replicas=0",
		"/cluster/scale?replicas=5;x=1",
		"/cluster/scale?replicas=5&force=1",
		"/cluster/rollout?now=1",
		"/cluster/pods/random/kill?x=1",
		"/cluster/pods/random/slow?delay=1s&delay=0",
	} {
		if code, body := post(t, d.AdminURL+q); code != http.StatusBadRequest || body["error"] == "" {
			t.Errorf("POST %s: %d %v, want 400 with an error", q, code, body)
		}
	}
	if got := d.Cluster.Replicas(); got != 3 {
		t.Fatalf("replicas %d after refused requests, want 3", got)
	}
	for _, st := range d.Cluster.Status() {
		if st.Delay != "" || st.Frozen || st.Restarts != 0 {
			t.Fatalf("pod changed by a refused request: %+v", st)
		}
	}
	if code, body := post(t, d.AdminURL+"/cluster/pods/random/thaw"); code != http.StatusConflict {
		t.Errorf("thaw random with nothing frozen: %d %v, want 409", code, body)
	}
	for range 6 { // picking any ready pod of 3 would go wrong within 6 rounds with probability 1-(1/3)^6
		_, frozen := post(t, d.AdminURL+"/cluster/pods/random/freeze")
		code, thawed := post(t, d.AdminURL+"/cluster/pods/random/thaw")
		if code != http.StatusOK || thawed["pod"] != frozen["pod"] {
			t.Fatalf("froze %v, thaw random: %d %v", frozen, code, thawed)
		}
		_, slowed := post(t, d.AdminURL+"/cluster/pods/random/slow?delay=5ms")
		code, restored := post(t, d.AdminURL+"/cluster/pods/random/slow?delay=0")
		if code != http.StatusOK || restored["pod"] != slowed["pod"] {
			t.Fatalf("slowed %v, slow random 0: %d %v", slowed, code, restored)
		}
	}
	for _, st := range d.Cluster.Status() {
		if st.Delay != "" || st.Frozen {
			t.Errorf("pod left changed: %+v", st)
		}
	}
}
