package endpointslice

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/spread-grpc/spread/endpoint"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestUnreachableAPIServerIsLogged: a real client to a loopback port nothing listens on.
// client-go alone retries in silence (watch-list mode: nothing below klog verbosity 2, and a
// backoff that ignores the context). Subscribe must return an error naming the refused
// connection, promptly, so that its caller (the resolver: ReportError, then backoff) can
// say so; the failure is logged at Warn naming the Service; and Close is prompt.
func TestUnreachableAPIServerIsLogged(t *testing.T) {
	ctx := testCtx(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := lis.Addr().String()
	lis.Close()
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "https://" + host, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	var buf syncBuffer
	src := New(client, WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
	defer src.Close()

	_, err = src.Subscribe(ctx, endpoint.Key{Namespace: "ns", Service: "be", Port: "grpc"}, func(endpoint.Set) {})
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "ns/be") {
		t.Fatalf("Subscribe with the API server unreachable: %v, want an error naming the Service and the refused connection", err)
	}
	line := buf.String()
	if !strings.Contains(line, "level=WARN") {
		t.Fatalf("no Warn about the failing list/watch: %q", line)
	}
	for _, want := range []string{"endpointslices", "service=ns/be", "connection refused", host} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q does not say %q", line, want)
		}
	}
	if n := src.activeWatches(); n != 0 {
		t.Errorf("%d watches left after a failed Subscribe", n)
	}
	closed := make(chan struct{})
	go func() { src.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second): // client-go's watch-list backoff alone can reach 60 s
		t.Fatal("Close held up by the informer's backoff")
	}
}
