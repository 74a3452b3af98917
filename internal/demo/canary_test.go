package demo

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/frontend"
)

// TestCanaryRoute: `spread demo`'s ready-made GRPCRoute over real gRPC on loopback, through
// the frontend's xds-canary mode (its grpc-go xDS client, the demo's control plane, the
// route translated by grpcroute): be-v2 gets its 10 % ± 3 (binomial, n 5,000: σ 0.42 %, so
// ±3 % is 7 σ), be's share stays round-robin over be's pods, and the other xds mode (be-srv)
// never reaches be-v2.
func TestCanaryRoute(t *testing.T) {
	d := startDemo(t, "127.0.81.1", 3)
	v2 := map[string]bool{}
	for _, p := range d.Cluster.V2Pods() {
		v2[p.Name] = true
	}
	if len(v2) != cluster.V2Replicas {
		t.Fatalf("be-v2 pods %v, want %d", d.Cluster.V2Pods(), cluster.V2Replicas)
	}
	seen := map[string]int{}
	deadline := time.Now().Add(30 * time.Second)
	for len(seen) < 3+cluster.V2Replicas {
		if time.Now().After(deadline) {
			t.Fatalf("xds-canary reached only %v", seen)
		}
		for p, n := range call(t, d, "/call/xds-canary?n=200").Counts {
			seen[p] += n
		}
	}
	const n = 5000
	counts := map[string]int{}
	for range n / frontend.MaxCalls {
		for p, k := range call(t, d, fmt.Sprintf("/call/xds-canary?n=%d", frontend.MaxCalls)).Counts {
			counts[p] += k
		}
	}
	be, onV2 := map[string]int{}, 0
	for p, k := range counts {
		if v2[p] {
			onV2 += k
		} else {
			be[p] = k
		}
	}
	t.Logf("xds-canary over %d calls: be-v2 %d; be %v", n, onV2, be)
	if share := float64(onV2) / n; math.Abs(share-0.10) > 0.03 {
		t.Errorf("be-v2 got %.1f %% of the calls, want 10 %% ± 3 (%v)", 100*share, counts)
	}
	lo, hi := math.MaxInt, 0
	for _, k := range be {
		lo, hi = min(lo, k), max(hi, k)
	}
	// round_robin over be's 3 ready pods: counts differ by at most 1; 5 leaves room for a
	// reconnect.
	if len(be) != 3 || hi-lo > 5 {
		t.Errorf("be's share not round-robin over its 3 pods: %v", be)
	}
	for p := range call(t, d, "/call/xds?n=300").Counts {
		if v2[p] {
			t.Errorf("xds (be-srv) reached be-v2 pod %s", p)
		}
	}
}
