package endpointslice

import (
	"bytes"
	"context"
	"errors"
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
// Subscribe keeps waiting for the first list (a refused connection may pass), and the
// failing calls are logged at Warn naming the Service and the error; client-go alone says
// nothing at the default verbosity. When ctx ends, Subscribe returns and Close is prompt.
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

	subCtx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := src.Subscribe(subCtx, endpoint.Key{Namespace: "ns", Service: "be", Port: "grpc"}, func(endpoint.Set) {})
		errc <- err
	}()
	for !strings.Contains(buf.String(), "level=WARN") {
		select {
		case err := <-errc:
			t.Fatalf("Subscribe returned %v before any Warn; a refused connection is retried", err)
		case <-ctx.Done():
			t.Fatal("no Warn about the failing list/watch")
		case <-time.After(20 * time.Millisecond):
		}
	}
	line := buf.String()
	for _, want := range []string{"endpointslices", "service=ns/be", "connection refused", host} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q does not say %q", line, want)
		}
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Subscribe after cancel: %v, want context.Canceled", err)
		}
	case <-ctx.Done():
		t.Fatal("Subscribe did not return after its context ended")
	}
	closed := make(chan struct{})
	go func() { src.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second): // client-go's watch-list backoff alone can reach 60 s
		t.Fatal("Close held up by the informer's backoff")
	}
}
