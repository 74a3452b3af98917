package admin

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// serve runs srv on a loopback port until the test ends and returns its address.
func serve(t *testing.T, srv *http.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeHTTP(ctx, srv, lis, 5*time.Second, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeHTTP: %v", err)
		}
	})
	return lis.Addr().String()
}

// keepAlive opens a connection, makes one keep-alive request on it and returns it open.
func keepAlive(t *testing.T, addr string) (net.Conn, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		return c, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return c, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetDeadline(time.Time{})
	return c, nil
}

// waitClosed reports whether the server closes c within d.
func waitClosed(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestIdleConnectionsAreClosed: a keep-alive connection that sends nothing more is closed
// after IdleTimeout (without it, an idle connection and its goroutine live forever).
func TestIdleConnectionsAreClosed(t *testing.T) {
	a := New(prometheus.NewRegistry(), WithLimits(Limits{IdleTimeout: 200 * time.Millisecond}))
	addr := serve(t, a.http)
	c, err := keepAlive(t, addr)
	if err != nil {
		t.Fatal(err)
	}
	if !waitClosed(c, 10*time.Second) {
		t.Fatal("idle keep-alive connection still open after 10s, IdleTimeout 200ms")
	}
}

// TestSlowHeadersAreCut: a client that never finishes its headers is cut after
// ReadHeaderTimeout.
func TestSlowHeadersAreCut(t *testing.T) {
	a := New(prometheus.NewRegistry(), WithLimits(Limits{ReadHeaderTimeout: 200 * time.Millisecond}))
	addr := serve(t, a.http)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n") // never ends
	if !waitClosed(c, 10*time.Second) {
		t.Fatal("half-sent request still open after 10s, ReadHeaderTimeout 200ms")
	}
}

// TestConnectionCap: with MaxConns open connections, one more is closed before it is served;
// once one closes, a new one is served again.
func TestConnectionCap(t *testing.T) {
	const max = 3
	a := New(prometheus.NewRegistry(), WithLimits(Limits{MaxConns: max}))
	addr := serve(t, a.http)
	var open []net.Conn
	for range max {
		c, err := keepAlive(t, addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	if _, err := keepAlive(t, addr); err == nil {
		t.Fatalf("connection %d served, cap %d", max+1, max)
	}
	open[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := keepAlive(t, addr)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection served 10s after one of %d closed: %v", max, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDefaultsApplied: zero Limits take the defaults, so no server is unbounded.
func TestDefaultsApplied(t *testing.T) {
	srv := NewHTTPServer(http.NotFoundHandler(), Limits{})
	d := DefaultLimits()
	if srv.ReadHeaderTimeout != d.ReadHeaderTimeout || srv.ReadTimeout != d.ReadTimeout || srv.WriteTimeout != d.WriteTimeout ||
		srv.IdleTimeout != d.IdleTimeout || srv.MaxHeaderBytes != d.MaxHeaderBytes || srv.ConnState == nil {
		t.Errorf("NewHTTPServer with zero Limits: %+v", srv)
	}
	if l := LimitsFor(time.Minute); l.WriteTimeout <= time.Minute {
		t.Errorf("LimitsFor(1m).WriteTimeout = %v, want more than the work", l.WriteTimeout)
	}
}

// TestUncleanShutdownIsAnError: a request still running when the grace ends is cut, and
// ServeHTTP says so (the command's exit code is then not 0).
func TestUncleanShutdownIsAnError(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	srv := NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	}), DefaultLimits())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeHTTP(ctx, srv, lis, 100*time.Millisecond, nil) }()
	reqDone := make(chan struct{})
	go func() {
		defer close(reqDone)
		if resp, err := http.Get("http://" + lis.Addr().String() + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("request never reached the handler")
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("ServeHTTP returned nil after cutting a running request")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeHTTP did not return")
	}
	<-reqDone
}
