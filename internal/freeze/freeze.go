// Package freeze makes a server behave like a SIGSTOPped process, for the demo's "freeze a
// pod" control and for tests: the kernel still accepts TCP connections and buffers bytes, but
// nothing is read, processed or written until it thaws. Whatever watches only the endpoint
// (Kubernetes, a control plane) still sees it Ready.
package freeze

import (
	"net"
	"sync"
)

// Switch freezes and thaws every connection of the listeners it wraps. The zero value is
// not usable; create one with New. Its methods may be called concurrently.
type Switch struct {
	mu     sync.Mutex
	frozen bool
	thaw   chan struct{} // closed while thawed; replaced on freeze
	closed chan struct{} // closed by Close: nothing blocks any more
	once   sync.Once
}

// New returns a thawed Switch.
func New() *Switch {
	t := make(chan struct{})
	close(t)
	return &Switch{thaw: t, closed: make(chan struct{})}
}

// Set freezes (true) or thaws (false).
func (s *Switch) Set(frozen bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if frozen == s.frozen {
		return
	}
	s.frozen = frozen
	if frozen {
		s.thaw = make(chan struct{})
	} else {
		close(s.thaw)
	}
}

// Frozen reports whether the switch is frozen.
func (s *Switch) Frozen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frozen
}

// Close releases everything blocked, for good (the process died).
func (s *Switch) Close() { s.once.Do(func() { close(s.closed) }) }

// wait blocks while frozen, until thawed or closed.
func (s *Switch) wait() {
	s.mu.Lock()
	t := s.thaw
	s.mu.Unlock()
	select {
	case <-t:
	case <-s.closed:
	}
}

// Listener wraps l so that its connections stall while s is frozen.
func (s *Switch) Listener(l net.Listener) net.Listener { return listener{Listener: l, s: s} }

type listener struct {
	net.Listener
	s *Switch
}

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return conn{Conn: c, s: l.s}, nil
}

type conn struct {
	net.Conn
	s *Switch
}

func (c conn) Read(b []byte) (int, error) {
	c.s.wait()
	n, err := c.Conn.Read(b)
	c.s.wait() // bytes that arrived while frozen are handled only after the thaw
	return n, err
}

func (c conn) Write(b []byte) (int, error) {
	c.s.wait()
	return c.Conn.Write(b)
}
