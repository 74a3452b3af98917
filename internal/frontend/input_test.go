package frontend

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/connect"
	"github.com/spread-grpc/spread/internal/echotest"
)

// serveFrontend runs a frontend with one mode over a real backend, behind a real HTTP server.
func serveFrontend(t *testing.T) (*httptest.Server, *echotest.Backend) {
	t.Helper()
	be := echotest.Start(t, "pod-a", "zone-a")
	f, err := New(Config{Name: "fe-t", Modes: []connect.Mode{{Name: "headless", Target: "passthrough:///" + be.Addr, Policy: connect.RoundRobin}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(func() { srv.Close(); f.Close() })
	return srv, be
}

func send(t *testing.T, method, u string) (*http.Response, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body map[string]any
	json.Unmarshal(b, &body)
	return resp, body
}

// TestCallInputs: overflowing intervals, ';' separators, HEAD and wrong methods are refused
// with a clear answer over the real server, and refused requests make no calls.
func TestCallInputs(t *testing.T) {
	srv, be := serveFrontend(t)
	for _, tc := range []struct {
		method, path string
		code         int
		allow, err   string
	}{
		{"GET", "/call/headless?interval=288230376151711744", 400, "", "interval"}, // 2^58 ms wraps to 0
		{"GET", "/call/headless?interval=9223372036854775807", 400, "", "interval"},
		{"GET", "/call/headless?n=3;stream=true", 400, "", "separate parameters with &"},
		{"GET", "/call/headless?n=%zz", 400, "", "query"},
		{"HEAD", "/call/headless?n=3", 405, "GET", ""},
		{"HEAD", "/backend", 405, "GET", ""},
		{"POST", "/call/headless", 405, "GET", "not allowed"},
		{"DELETE", "/backendlb", 405, "GET", "not allowed"},
		{"POST", "/nowhere", 404, "", "no route"},
	} {
		resp, body := send(t, tc.method, srv.URL+tc.path)
		if resp.StatusCode != tc.code || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want %d Allow %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), tc.code, tc.allow)
		}
		if msg, _ := body["error"].(string); tc.err != "" && !strings.Contains(msg, tc.err) {
			t.Errorf("%s %s: error %q, want it to mention %q", tc.method, tc.path, msg, tc.err)
		}
	}
	if n := be.Calls(); n != 0 {
		t.Errorf("refused requests made %d calls", n)
	}
	if resp, body := send(t, "GET", srv.URL+"/call/headless?n=3&stream=true"); resp.StatusCode != 200 || body["ok"] != 3.0 || body["stream"] != true {
		t.Errorf("n=3&stream=true: %d %v", resp.StatusCode, body)
	}
}
