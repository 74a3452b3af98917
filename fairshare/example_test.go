package fairshare_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/spread-grpc/spread/fairshare"
)

// The decision on one of five pods holding 8 connections each after the Deployment grew to
// eight: its share is 5, so it sheds its busiest connections, two per round.
func ExampleDecide() {
	now := time.Now()
	var own []fairshare.Conn
	for i := range 8 {
		own = append(own, fairshare.Conn{ID: uint64(i + 1), Opened: now.Add(-time.Minute), Calls: uint64(10 * i)})
	}
	d := fairshare.Decide(fairshare.Policy{}, fairshare.Input{
		Self: "pod-a", Own: own, Now: now,
		Peers: []fairshare.Peer{{"pod-b", 8}, {"pod-c", 8}, {"pod-d", 8}, {"pod-e", 8}, {"pod-f", 0}, {"pod-g", 0}, {"pod-h", 0}},
	})
	fmt.Printf("mean %.1f, share %d, balanced %v, shed %v, admit a new one: %v\n", d.Mean, d.Share, d.Balanced, d.Shed, d.Admit(len(own)))
	// Output: mean 5.0, share 5, balanced false, shed [8 7], admit a new one: false
}

// A Server in place of a grpc.Server: the constructor builds a grpc.Server per connection
// with the services registered. Peers (here a fixed list; HTTPPeers in a cluster) give it
// the fleet's counts.
func ExampleNewServer() {
	hs := health.NewServer()
	srv, err := fairshare.NewServer(func(extra ...grpc.ServerOption) *grpc.Server {
		g := grpc.NewServer(extra...)
		healthpb.RegisterHealthServer(g, hs)
		return g
	}, fairshare.WithName("pod-a"), fairshare.WithPeers(fairshare.PeersFunc(staticPeers)))
	if err != nil {
		fmt.Println(err)
		return
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	fmt.Println(r.GetStatus(), err, "connections:", srv.Conns())
	cc.Close()
	srv.GracefulStop()
	fmt.Println("stopped:", <-done)
	// Output:
	// SERVING <nil> connections: 1
	// stopped: <nil>
}

func staticPeers(context.Context) ([]fairshare.Peer, error) {
	return []fairshare.Peer{{Name: "pod-b", Conns: 3}}, nil
}
