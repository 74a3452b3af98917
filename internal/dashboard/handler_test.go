package dashboard

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/connect"
	"github.com/spread-grpc/spread/internal/echotest"
	"github.com/spread-grpc/spread/internal/frontend"
)

func TestWantsHTML(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                                 false,
		"application/json":                 false,
		"text/html,application/xhtml+xml":  true,
		"application/json;q=1, text/html":  false,
		"*/*":                              false,
		"text/html;q=0.9,application/json": true,
	} {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Accept", accept)
		if got := wantsHTML(r); got != want {
			t.Errorf("Accept %q: wantsHTML = %v", accept, got)
		}
	}
}

// TestDashboardRoutes: a browser gets the dashboard at /, everyone else the JSON index; the
// event stream is served; without cluster controls there is no /cluster and no page load.
func TestDashboardRoutes(t *testing.T) {
	win := NewWindow(DefaultWindow, nil)
	f, err := frontend.New(frontend.Config{Name: "fe-t", Modes: []connect.Mode{{Name: "headless", Target: "passthrough:///127.0.0.1:1", Policy: connect.RoundRobin}}}, frontend.WithObserver(win))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := New(f, win)
	defer d.Close()
	h := Handler(f, d)
	for _, tc := range []struct {
		method, path, accept string
		code                 int
		ctype                string
	}{
		{"GET", "/", "text/html,application/xhtml+xml", 200, "text/html"},
		{"GET", "/", "application/json", 200, "application/json"},
		{"GET", "/", "", 200, "application/json"},
		{"GET", "/static/app.js", "", 200, "text/javascript"},
		{"GET", "/dashboard/state", "", 200, "application/json"},
		{"GET", "/cluster", "", 404, "application/json"},
		{"POST", "/dashboard/load/headless", "", 404, "application/json"},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		if tc.accept != "" {
			req.Header.Set("Accept", tc.accept)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.code || !strings.HasPrefix(rec.Header().Get("Content-Type"), tc.ctype) {
			t.Errorf("%s %s (Accept %q): %d %q, want %d %s", tc.method, tc.path, tc.accept, rec.Code, rec.Header().Get("Content-Type"), tc.code, tc.ctype)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := f.CallOnce(ctx, "nope"); err == nil || !strings.Contains(err.Error(), "unknown mode") {
		t.Errorf("CallOnce on an unknown mode: %v", err)
	}
	// The event stream ends when the server shuts down (EndStreams).
	srv := httptest.NewUnstartedServer(h)
	srv.Config.RegisterOnShutdown(d.EndStreams)
	srv.Start()
	defer srv.Close()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("/events: %q", resp.Header.Get("Content-Type"))
	}
	if err := srv.Config.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown with an open event stream: %v", err)
	}
}

// TestHandlerComposes: Handler serves the frontend's routes and the dashboard's on one mux,
// over a real backend: calls answer, the page goes to a browser and the JSON index to
// everyone else, the calls show on the dashboard (its window fed through
// frontend.WithObserver), a dashboard route with another method gets 405 and Allow, and a
// 404 names both sides' routes.
func TestHandlerComposes(t *testing.T) {
	be := echotest.Start(t, "pod-a", "zone-a")
	win := NewWindow(DefaultWindow, nil)
	f, err := frontend.New(frontend.Config{Name: "fe-t", Modes: []connect.Mode{{Name: "headless", Target: "passthrough:///" + be.Addr, Policy: connect.RoundRobin}}}, frontend.WithObserver(win))
	if err != nil {
		t.Fatal(err)
	}
	d := New(f, win)
	srv := httptest.NewServer(Handler(f, d))
	t.Cleanup(func() { srv.Close(); d.Close(); f.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	get := func(method, path, accept string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, srv.URL+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	var res frontend.Result
	if resp, b := get("GET", "/call/headless?n=3", ""); resp.StatusCode != 200 || json.Unmarshal(b, &res) != nil || res.OK != 3 || res.Counts["pod-a"] != 3 {
		t.Errorf("/call/headless?n=3: %s %s", resp.Status, b)
	}
	if resp, b := get("GET", "/", "text/html"); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(b), "<html") {
		t.Errorf("GET / as a browser: %s %q, want the page", resp.Status, resp.Header.Get("Content-Type"))
	}
	var idx struct {
		Frontend string
		Modes    []frontend.ModeInfo
	}
	if resp, b := get("GET", "/", ""); resp.StatusCode != 200 || json.Unmarshal(b, &idx) != nil || idx.Frontend != "fe-t" || len(idx.Modes) != 1 || idx.Modes[0].Path != "/call/headless" {
		t.Errorf("GET / as JSON: %s %s", resp.Status, b)
	}
	var st State
	if resp, b := get("GET", "/dashboard/state", ""); resp.StatusCode != 200 || json.Unmarshal(b, &st) != nil || len(st.Modes) != 1 || st.Modes[0].Calls != 3 ||
		len(st.Modes[0].Pods) != 1 || st.Modes[0].Pods[0].Pod != "pod-a" || st.Modes[0].Target != "passthrough:///"+be.Addr {
		t.Errorf("/dashboard/state after 3 calls: %s %s", resp.Status, b)
	}
	if resp, b := get("POST", "/events", ""); resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET" || !strings.Contains(string(b), "not allowed") {
		t.Errorf("POST /events: %s Allow %q %s, want 405 Allow GET", resp.Status, resp.Header.Get("Allow"), b)
	}
	var nf struct{ Routes []string }
	want := []string{"GET /", "GET /call/{mode}", "GET /backend", "GET /backendlb", "GET /events", "GET /dashboard/state"}
	if resp, b := get("GET", "/nowhere", ""); resp.StatusCode != 404 || json.Unmarshal(b, &nf) != nil || !slices.Equal(nf.Routes, want) {
		t.Errorf("GET /nowhere: %s %s, want 404 with routes %q", resp.Status, b, want)
	}
	if resp, _ := get("HEAD", "/backend", ""); resp.StatusCode != 405 {
		t.Errorf("HEAD /backend: %s, want 405", resp.Status)
	}
	if n := be.Calls(); n != 3 {
		t.Errorf("backend answered %d calls, want 3", n)
	}
}
