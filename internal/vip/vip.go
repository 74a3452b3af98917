// Package vip is a kube-proxy-like L4 load balancer for the demo's ClusterIP Service: it
// accepts TCP connections on a virtual IP and pipes each one to a backend picked at random
// when the connection opens. It balances connections, not calls — which is exactly why one
// long-lived gRPC connection through a ClusterIP lands every call on one pod.
package vip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"
)

// Proxy is the L4 balancer. Its methods may be called concurrently.
type Proxy struct {
	log *slog.Logger

	mu       sync.Mutex
	backends []string
	conns    map[net.Conn]struct{}
	lis      net.Listener
	wg       sync.WaitGroup
	closed   bool
	accepted int
}

// New returns a proxy with no backends.
func New(log *slog.Logger) *Proxy {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Proxy{log: log, conns: map[net.Conn]struct{}{}}
}

// SetBackends replaces the backend addresses ("ip:port") new connections go to. Existing
// connections stay where they are, as with kube-proxy.
func (p *Proxy) SetBackends(addrs []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backends = slices.Clone(addrs)
}

// Backends returns the backend addresses new connections go to now.
func (p *Proxy) Backends() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.backends)
}

// Listen binds addr and starts accepting. It returns the bound address.
func (p *Proxy) Listen(addr string) (string, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("vip: listen %s: %w", addr, err)
	}
	p.mu.Lock()
	p.lis = lis
	p.mu.Unlock()
	p.wg.Add(1)
	go p.accept(lis)
	return lis.Addr().String(), nil
}

// Accepted returns the number of connections accepted so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

func (p *Proxy) accept(lis net.Listener) {
	defer p.wg.Done()
	for {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.accepted++
		var backend string
		if n := len(p.backends); n > 0 {
			backend = p.backends[rand.IntN(n)]
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.pipe(c, backend)
	}
}

func (p *Proxy) pipe(c net.Conn, backend string) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		c.Close()
	}()
	if backend == "" {
		p.log.Debug("no endpoints, rejecting connection", "client", c.RemoteAddr().String())
		return
	}
	b, err := net.DialTimeout("tcp", backend, 2*time.Second)
	if err != nil {
		p.log.Debug("backend unreachable", "backend", backend, "err", err)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		b.Close()
		return
	}
	p.conns[b] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, b)
		p.mu.Unlock()
		b.Close()
	}()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		// Half-close so the other side sees EOF, as a TCP proxy would.
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		} else {
			dst.Close()
		}
		done <- struct{}{}
	}
	go cp(b, c)
	go cp(c, b)
	<-done
	<-done
}

// Close stops accepting, closes every proxied connection and waits for the goroutines, or
// until ctx is done.
func (p *Proxy) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	var err error
	if p.lis != nil {
		err = p.lis.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		return err
	case <-ctx.Done():
		return fmt.Errorf("vip: close: %w", ctx.Err())
	}
}
