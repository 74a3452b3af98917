package admin

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits bound what one HTTP server gives its clients. Every Spread HTTP server (frontend,
// demo admin, backend admin, xDS admin) is built by NewHTTPServer with them.
type Limits struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included. A long-lived route (an
	// event stream) lifts it for itself with http.ResponseController.SetReadDeadline.
	ReadTimeout time.Duration
	// WriteTimeout bounds a handler's answer, from the end of the request's headers. It must
	// exceed the longest work a handler does; a long-lived route (an event stream) extends it
	// write by write with http.ResponseController.SetWriteDeadline.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no request for this long.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes int
	// MaxConns bounds the open connections: one more is closed at once, before any
	// request is read from it.
	MaxConns int
}

// DefaultLimits returns the limits of an admin server (short answers only).
func DefaultLimits() Limits {
	return Limits{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		MaxConns:          1024,
	}
}

// LimitsFor returns DefaultLimits with a WriteTimeout that leaves a handler doing up to work
// time to answer (a frontend's request timeout).
func LimitsFor(work time.Duration) Limits {
	l := DefaultLimits()
	l.WriteTimeout = max(l.WriteTimeout, work+10*time.Second)
	return l
}

// NewHTTPServer returns an http.Server serving h within l (zero fields take DefaultLimits'
// values). Serve it with ServeHTTP.
func NewHTTPServer(h http.Handler, l Limits) *http.Server {
	d := DefaultLimits()
	pick := func(v, def time.Duration) time.Duration {
		if v <= 0 {
			return def
		}
		return v
	}
	l.ReadHeaderTimeout = pick(l.ReadHeaderTimeout, d.ReadHeaderTimeout)
	l.ReadTimeout = pick(l.ReadTimeout, d.ReadTimeout)
	l.WriteTimeout = pick(l.WriteTimeout, d.WriteTimeout)
	l.IdleTimeout = pick(l.IdleTimeout, d.IdleTimeout)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MaxConns <= 0 {
		l.MaxConns = d.MaxConns
	}
	cc := &connCap{max: l.MaxConns, open: map[net.Conn]bool{}}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ConnState:         cc.track,
	}
}

// connCap counts a server's connections through its ConnState hook and closes those over
// the cap as they arrive (the server's accept loop calls the hook before serving a
// connection, so a closed one is never read).
type connCap struct {
	max  int
	mu   sync.Mutex
	open map[net.Conn]bool
}

func (c *connCap) track(conn net.Conn, st http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch st {
	case http.StateNew:
		if len(c.open) >= c.max {
			conn.Close()
			return
		}
		c.open[conn] = true
	case http.StateClosed, http.StateHijacked:
		delete(c.open, conn)
	}
}
