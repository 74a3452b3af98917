package vip

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// namedServer answers each line with its name, until closed.
func namedServer(t *testing.T, name string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	conns := make(chan net.Conn, 100)
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() {
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						c.Close()
						return
					}
					fmt.Fprintln(c, name)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func ask(t *testing.T, c net.Conn, r *bufio.Reader) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintln(c, "who")
	s, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(s)
}

func TestPicksPerConnection(t *testing.T) {
	p := New(nil)
	p.SetBackends([]string{namedServer(t, "a"), namedServer(t, "b"), namedServer(t, "c")})
	addr, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for range 60 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(c)
		first := ask(t, c, r)
		// Every message on one connection goes to the same backend.
		for range 5 {
			if got := ask(t, c, r); got != first {
				t.Fatalf("connection moved from %s to %s", first, got)
			}
		}
		seen[first]++
		c.Close()
	}
	if len(seen) != 3 {
		t.Errorf("60 connections reached %v, want all 3 backends", seen)
	}

	// New backends affect new connections only.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	before := ask(t, c, r)
	p.SetBackends([]string{namedServer(t, "d")})
	if got := ask(t, c, r); got != before {
		t.Errorf("existing connection moved to %s", got)
	}
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := ask(t, c2, bufio.NewReader(c2)); got != "d" {
		t.Errorf("new connection went to %s, want d", got)
	}
	if p.Accepted() != 62 {
		t.Errorf("Accepted = %d, want 62", p.Accepted())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Close cut the proxied connection.
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// Closed, not the read deadline: a timeout would mean the connection was left open.
	if _, err := r.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("proxied connection still open after Close: %v", err)
	}
}

func TestNoBackendsRejects(t *testing.T) {
	p := New(nil)
	addr, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("connection with no backends was not closed: %v", err)
	}
	p.Close(context.Background())
}
