package modes

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/connect"
)

// TestCanaryWeightAndOff: the weight is the cluster's (100: every call on be-v2); a
// negative one turns be-v2, the route and the xds-canary mode off; out of range is an error.
func TestCanaryWeightAndOff(t *testing.T) {
	c := startCluster(t, "127.0.82.1", cluster.Config{Replicas: 1, PodPort: 0, CanaryWeight: 100})
	ms, err := Build(c, Options{}, "xds-canary")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := connect.Dial(ms[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := echo.NewEchoServerClient(conn)
	for range 50 {
		r, err := client.SayHello(ctx, &echo.EchoRequest{Name: "t"}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(r.GetPod(), cluster.V2Deployment+"-") {
			t.Fatalf("weight 100: answered by %s, want a be-v2 pod", r.GetPod())
		}
	}

	off := startCluster(t, "127.0.83.1", cluster.Config{Replicas: 1, PodPort: 0, CanaryWeight: -1})
	if p := off.V2Pods(); len(p) != 0 {
		t.Errorf("canary off: be-v2 pods %v", p)
	}
	if _, err := Build(off, Options{}, "xds-canary"); !errors.Is(err, ErrClusterLacks) {
		t.Errorf("xds-canary without the canary: %v, want ErrClusterLacks", err)
	}
	if _, err := cluster.Start(cluster.Config{CanaryWeight: 101}, nil); err == nil || !strings.Contains(err.Error(), "canary weight") {
		t.Errorf("canary weight 101: %v", err)
	}
	if _, err := cluster.CanaryRoutes(50051, -3); err == nil {
		t.Error("cluster.CanaryRoutes(-3): no error")
	}
}
