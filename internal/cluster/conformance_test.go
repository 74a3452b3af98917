package cluster

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/endpoint/endpointtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestClusterConformance runs the endpoint.Source conformance suite against the simulated
// cluster: Change scales it up by one pod, Empty scales it to zero, Stop is its Close and
// an unknown Service is refused.
func TestClusterConformance(t *testing.T) {
	endpointtest.RunConformance(t, func(t *testing.T) endpointtest.Harness {
		c, err := Start(Config{
			Replicas: 2, Grace: 200 * time.Millisecond, FirstPodIP: netip.MustParseAddr("127.0.9.1"),
			VIP: "127.96.9.10:0", DNSAddr: "127.0.0.1:0", XDSAddr: "-",
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		stop := func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := c.Stop(ctx); err != nil {
				t.Errorf("Stop: %v", err)
			}
		}
		t.Cleanup(stop)
		readyIs := func(n int) func(endpoint.Set) bool {
			return func(s endpoint.Set) bool { return len(s) == n && len(s.Ready()) == n }
		}
		return endpointtest.Harness{
			Source:  c,
			Key:     endpoint.Key{Namespace: Namespace, Service: HeadlessService, Port: PortName},
			Initial: c.Endpoints(),
			Change: func(t *testing.T) func(endpoint.Set) bool {
				if err := c.Scale(3); err != nil {
					t.Fatal(err)
				}
				return readyIs(3)
			},
			Empty: func(t *testing.T) {
				if err := c.Scale(0); err != nil {
					t.Fatal(err)
				}
			},
			Refused: &endpoint.Key{Namespace: Namespace, Service: "no-such-service", Port: PortName},
			Close:   stop,
		}
	})
}
