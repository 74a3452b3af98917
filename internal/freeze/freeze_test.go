package freeze

import (
	"bufio"
	"fmt"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestFreezeThawClose: a frozen server accepts the connection but answers nothing; after
// the thaw it answers what arrived meanwhile; Close releases it for good.
func TestFreezeThawClose(t *testing.T) {
	s := New()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := s.Listener(l)
	done := make(chan struct{})
	go func() { // a line echo server
		defer close(done)
		c, err := fl.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprint(c, line)
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	ask := func(msg string, wait time.Duration) (string, error) {
		c.SetDeadline(time.Now().Add(wait))
		fmt.Fprintln(c, msg)
		return r.ReadString('\n')
	}
	if got, err := ask("a", 5*time.Second); err != nil || got != "a\n" {
		t.Fatalf("thawed: %q, %v", got, err)
	}
	s.Set(true)
	if !s.Frozen() {
		t.Fatal("Frozen() = false after Set(true)")
	}
	if got, err := ask("b", 200*time.Millisecond); err == nil {
		t.Fatalf("frozen server answered %q", got)
	}
	s.Set(false)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "b\n" {
		t.Fatalf("after thaw: %q, %v; want the buffered b", got, err)
	}
	s.Set(true)
	s.Close() // the process died: nothing blocks
	c.Close()
	l.Close()
	<-done
}
