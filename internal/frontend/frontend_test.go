package frontend

import (
	"github.com/spread-grpc/spread/internal/connect"

	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseCallParams(t *testing.T) {
	for _, tc := range []struct {
		q       string
		want    CallParams
		wantErr string
	}{
		{q: "", want: CallParams{N: 10}},
		{q: "n=1000&stream=true&interval=5&fresh=1", want: CallParams{N: 1000, Stream: true, Interval: 5 * time.Millisecond, Fresh: true}},
		{q: "interval=1.5s", want: CallParams{N: 10, Interval: 1500 * time.Millisecond}},
		{q: "interval=10s", want: CallParams{N: 10, Interval: 10 * time.Second}},
		{q: "n=-3", wantErr: "1 to 1000"},
		{q: "n=", wantErr: "whole number"},
		{q: "interval=10001", wantErr: "0 to 10s"},
		{q: "stream=", wantErr: "true or false"},
		{q: "x=1", wantErr: "unknown query parameter"},
	} {
		q, _ := url.ParseQuery(tc.q)
		got, err := ParseCallParams(q)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.q, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.q, got, err, tc.want)
		}
	}
}

func TestNewRejectsBadModes(t *testing.T) {
	for _, tc := range []struct {
		modes []connect.Mode
		want  string
	}{
		{nil, "no modes"},
		{[]connect.Mode{{Name: "Bad Name", Target: "dns:///x:1"}}, "lowercase"},
		{[]connect.Mode{{Name: "a", Target: "dns:///x:1"}, {Name: "a", Target: "dns:///y:1"}}, "given twice"},
		{[]connect.Mode{{Name: "a", Target: "dns:///x:1", Policy: "random"}}, "policy"},
		{[]connect.Mode{{Name: "a", Target: "nosuchscheme:///x:1"}}, "target"},
	} {
		f, err := New(Config{Modes: tc.modes})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want error containing %q", tc.modes, err, tc.want)
		}
		if f != nil {
			f.Close()
		}
	}
}

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
	f, err := New(Config{Name: "fe-t", Modes: []connect.Mode{{Name: "headless", Target: "passthrough:///127.0.0.1:1", Policy: connect.RoundRobin}}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := f.Handler()
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
	srv.Config.RegisterOnShutdown(f.EndStreams)
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
