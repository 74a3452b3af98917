package dnsrefresh_test

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"github.com/spread-grpc/spread/internal/echotest"
)

// cluster is n backends pod-1..pod-n on 127.0.2.1..127.0.2.n, all on one port, as the pods
// of a headless Service: DNS gives the IPs, the target gives the port.
type cluster struct {
	port int
	pods []*echotest.Backend
}

// startCluster starts n backends; they stop when the test ends. Linux routes all of 127/8 to
// lo, so each backend can have its own address.
func startCluster(t testEnv, n int) *cluster {
	t.Helper()
	for try := 0; try < 20; try++ {
		lis, err := listenAll(n)
		if errors.Is(err, syscall.EADDRINUSE) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		c := &cluster{port: lis[0].Addr().(*net.TCPAddr).Port}
		for i, l := range lis {
			// The real echo backend; Stop ends it at once (its connections are closed, as
			// when a pod dies).
			b, err := echotest.Serve(l, fmt.Sprintf("pod-%d", i+1), "")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(b.Stop)
			c.pods = append(c.pods, b)
		}
		return c
	}
	t.Fatal("no port free on all of 127.0.2.1..n")
	return nil
}

// listenAll listens on 127.0.2.1:0, then on the same port of 127.0.2.2..n.
func listenAll(n int) ([]net.Listener, error) {
	var lis []net.Listener
	port := "0"
	for i := 1; i <= n; i++ {
		l, err := net.Listen("tcp", net.JoinHostPort(fmt.Sprintf("127.0.2.%d", i), port))
		if err != nil {
			for _, l := range lis {
				l.Close()
			}
			return nil, err
		}
		port = strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		lis = append(lis, l)
	}
	return lis, nil
}

// IPs returns the addresses of pods i (1-based).
func (c *cluster) IPs(pods ...int) []string {
	var out []string
	for _, i := range pods {
		host, _, _ := net.SplitHostPort(c.pods[i-1].Addr)
		out = append(out, host)
	}
	return out
}

// testEnv is the part of testing.TB the helpers use, so that Examples can use them too.
type testEnv interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}
