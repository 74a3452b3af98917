package frontend

import (
	"github.com/spread-grpc/spread/internal/connect"

	"context"
	"go/parser"
	"go/token"
	"net/http"
	"net/url"
	"path/filepath"
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

// TestHandlerAlone: the frontend alone serves its index and call routes over a real backend,
// and not the dashboard's: no page for a browser at /, no /events, /static/ or
// /dashboard/state, and its 404 names only its own routes.
func TestHandlerAlone(t *testing.T) {
	srv, be := serveFrontend(t)
	resp, body := send(t, http.MethodGet, srv.URL+"/call/headless?n=3")
	if resp.StatusCode != 200 || body["ok"] != float64(3) || be.Calls() != 3 {
		t.Errorf("/call/headless?n=3: %s %v, backend calls %d", resp.Status, body, be.Calls())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/", nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("GET / as a browser: %s %q, want the JSON index", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, path := range []string{"/events", "/static/app.js", "/dashboard/state", "/cluster"} {
		resp, body := send(t, http.MethodGet, srv.URL+path)
		if resp.StatusCode != 404 {
			t.Errorf("GET %s: %s, want 404", path, resp.Status)
		}
		routes, _ := body["routes"].([]any)
		if len(routes) != 4 || routes[0] != "GET /" || routes[1] != "GET /call/{mode}" {
			t.Errorf("GET %s: routes %v, want the frontend's four", path, body["routes"])
		}
	}
	if resp, _ := send(t, http.MethodPost, srv.URL+"/dashboard/load/headless"); resp.StatusCode != 404 {
		t.Errorf("POST /dashboard/load/headless: %s, want 404", resp.Status)
	}
}

// TestNoDashboardImport: the frontend serves calls only; the dashboard is composed beside it
// (dashboard.Handler), so no file of the package imports it.
func TestNoDashboardImport(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("glob: %v %v", files, err)
	}
	for _, name := range files {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if strings.HasSuffix(strings.Trim(imp.Path.Value, `"`), "/internal/dashboard") {
				t.Errorf("%s imports %s", name, imp.Path.Value)
			}
		}
	}
}
