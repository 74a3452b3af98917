package echotest

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/spread-grpc/spread/echo"
)

func TestBackendCountsEchoCalls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := Start(t, "pod-a", "zone-a")
	d := NewDialer()
	d.Map(FakeIP(1), b.Addr)
	cc, err := grpc.NewClient(FakeIP(1)+":50051", d.Option(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := echo.NewEchoServerClient(cc)

	start := time.Now()
	r, err := c.SayHello(ctx, &echo.EchoRequest{Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetPod() != "pod-a" || r.GetZone() != "zone-a" || r.GetPodIp() != "127.0.0.1" {
		t.Fatalf("reply %v, want pod-a in zone-a at 127.0.0.1", r)
	}
	if first, ok := b.FirstCall("x"); !ok || first.Before(start) {
		t.Fatalf("FirstCall(x) = %v, %v; want a time after %v", first, ok, start)
	}
	if _, ok := b.FirstCall("y"); ok {
		t.Fatal("FirstCall(y) reported a call that never happened")
	}
	// Health checks are not echo calls.
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if b.Calls() != 1 {
		t.Fatalf("Calls() = %d after one echo call and one health check, want 1", b.Calls())
	}

	s, err := c.SayHelloStream(ctx, &echo.EchoRequest{Name: "s", Count: 2, IntervalMs: 200})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	if b.Calls() != 2 || b.Active() != 1 {
		t.Fatalf("with a stream open: Calls() = %d, Active() = %d; want 2, 1", b.Calls(), b.Active())
	}
	for {
		if _, err := s.Recv(); err != nil {
			break
		}
	}
	if d.Dialed() != 1 {
		t.Fatalf("Dialed() = %d, want 1", d.Dialed())
	}
	b.Stop()
	b.Stop() // idempotent
	if _, err := c.SayHello(ctx, &echo.EchoRequest{Name: "x"}, grpc.WaitForReady(false)); err == nil {
		t.Fatal("a stopped backend answered")
	}
}
