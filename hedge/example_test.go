package hedge_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/hedge"
	"github.com/spread-grpc/spread/internal/echotest"
)

// A client whose SayHello calls are hedged after 50 ms, abandoned after 300 ms per attempt,
// and never sent twice to the same pod when another is available.
func Example() {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	pod, err := echotest.Serve(lis, "pod-a", "zone-1")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pod.Stop()

	hedge.RegisterBalancer() // once, in main
	reg := prometheus.NewRegistry()
	h, err := hedge.New(
		hedge.WithPolicy("/echo.EchoServer/SayHello", hedge.Policy{
			Idempotent: true, PerAttemptTimeout: 300 * time.Millisecond, HedgeDelay: 50 * time.Millisecond,
		}),
		hedge.WithBudget(hedge.Budget{Ratio: 0.1, Burst: 10}),
		hedge.WithRegisterer(reg))
	if err != nil {
		fmt.Println(err)
		return
	}
	sc, err := hedge.ServiceConfig("round_robin", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	opts := append(h.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultServiceConfig(sc))
	conn, err := grpc.NewClient("passthrough:///"+pod.Addr, opts...)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := echo.NewEchoServerClient(conn).SayHello(ctx, &echo.EchoRequest{Name: "hedge"})
	if err != nil {
		fmt.Println(err)
		return
	}
	st := h.Stats()
	fmt.Println(rep.GetPod(), st.Calls, st.Attempts >= 1)
	// Output: pod-a 1 true
}
