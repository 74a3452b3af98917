package fairshare

import (
	"net"
	"testing"
)

// TestListenerClosesAConnectionNeverHandedOut: a server stopped before it called Accept
// closes its one-connection listener; the connection it never handed out must be closed
// then, or the tracker waiting for it would keep Stop waiting forever (a hang seen in CI,
// TestRestartedPodRejoins).
func TestListenerClosesAConnectionNeverHandedOut(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	closed := make(chan struct{})
	l := &oneConnListener{c: &trackedConn{Conn: a, closed: closed}, done: closed}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	default:
		t.Fatal("Close left the connection it never handed out open")
	}
	if _, err := l.Accept(); err == nil {
		t.Error("Accept after Close handed out a connection")
	}
}
