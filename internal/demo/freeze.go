package demo

import (
	"net"
	"sync"
)

// freezer makes a pod behave like a SIGSTOPped process: the kernel still accepts TCP
// connections and buffers bytes, but nothing is read, processed or written until it thaws.
type freezer struct {
	mu     sync.Mutex
	frozen bool
	thaw   chan struct{} // closed on thaw; replaced on freeze
	closed chan struct{} // closed when the pod dies: nothing blocks any more
	once   sync.Once
}

func newFreezer() *freezer {
	t := make(chan struct{})
	close(t)
	return &freezer{thaw: t, closed: make(chan struct{})}
}

func (f *freezer) set(frozen bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if frozen == f.frozen {
		return
	}
	f.frozen = frozen
	if frozen {
		f.thaw = make(chan struct{})
	} else {
		close(f.thaw)
	}
}

func (f *freezer) isFrozen() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.frozen
}

// wait blocks while frozen, until thawed or closed.
func (f *freezer) wait() {
	f.mu.Lock()
	t := f.thaw
	f.mu.Unlock()
	select {
	case <-t:
	case <-f.closed:
	}
}

func (f *freezer) close() { f.once.Do(func() { close(f.closed) }) }

// listener wraps a pod's listener so its connections stall while frozen.
type freezeListener struct {
	net.Listener
	f *freezer
}

func (l freezeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return freezeConn{Conn: c, f: l.f}, nil
}

type freezeConn struct {
	net.Conn
	f *freezer
}

func (c freezeConn) Read(b []byte) (int, error) {
	c.f.wait()
	n, err := c.Conn.Read(b)
	c.f.wait() // bytes that arrived while frozen are handled only after the thaw
	return n, err
}

func (c freezeConn) Write(b []byte) (int, error) {
	c.f.wait()
	return c.Conn.Write(b)
}
