package guard

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestHostAllowed(t *testing.T) {
	g := New()
	g.Allow(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9081})
	g.Allow(&net.TCPAddr{IP: net.IPv6loopback, Port: 8081})
	g.Allow(&net.TCPAddr{IP: net.IPv4zero, Port: 7000}) // wildcard: adds nothing
	for host, want := range map[string]bool{
		"127.0.0.1:9081": true, "localhost:9081": true, "LOCALHOST:9081": true,
		"[::1]:8081": true, "localhost:8081": true,
		"127.0.0.1:8081": false, "evil.example:9081": false, "127.0.0.1": false,
		"0.0.0.0:7000": false, "": false, "localhost": false, "127.0.0.1.nip.io:9081": false,
	} {
		if got := g.HostAllowed(host); got != want {
			t.Errorf("HostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
	g.AllowHost("demo.local:80")
	if !g.HostAllowed("demo.local") {
		t.Error("Host without a port is not port 80")
	}
}

// TestWrap over a real server: only the server's own Host, and no cross-site POST.
func TestWrap(t *testing.T) {
	g := New()
	calls := 0
	srv := httptest.NewServer(g.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls++ })))
	defer srv.Close()
	g.Allow(srv.Listener.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		method, host, origin, site string
		want                       int
	}{
		{"POST", "", "", "", 200},
		{"POST", "", srv.URL, "same-origin", 200},
		{"POST", "", "http://evil.example", "", 403},
		{"POST", "", "", "cross-site", 403},
		{"GET", "", "http://evil.example", "cross-site", 200}, // reading is not changing
		{"GET", "evil.example", "", "", 403},
		{"POST", "evil.example", "http://evil.example", "same-origin", 403},
	} {
		req, _ := http.NewRequestWithContext(ctx, tc.method, srv.URL+"/x", nil)
		if tc.host != "" {
			req.Host = tc.host
		}
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		if tc.site != "" {
			req.Header.Set("Sec-Fetch-Site", tc.site)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%+v: %d", tc, resp.StatusCode)
		}
	}
	if calls != 3 {
		t.Errorf("handler ran %d times, want 3", calls)
	}
}
