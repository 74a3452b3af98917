package compare

import (
	"context"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/cluster"
)

// 40 ClusterIP clients through the VIP, 5 → 8 pods: with pods doing nothing the new pods never
// get a call; with fair share (short rounds here, for speed) all three do.
func TestManyClientsScaleUp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two clusters for 16 s")
	}
	nothing, ok := ManyClientsContender("clusterip-40")
	if !ok {
		t.Fatal("no clusterip-40 contender")
	}
	fair, _ := ManyClientsContender("clusterip-40-fairshare")
	fair.Name = "clusterip-40-fairshare-fast"
	fair.Cluster = func(c *cluster.Config) { c.FairShareInterval = 300 * time.Millisecond }
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Contenders: []Contender{nothing, fair}, Scenarios: scenarios(t, "scale-up"),
		Rate: 100, Duration: 16 * time.Second, FirstNet: 200,
		// Generous: a client turned away waits for its next connection; under -race on a busy
		// machine a few reconnects in a row can take over a second (see docs/fairshare.md).
		CallTimeout: 10 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := get(t, rep, "scale-up", "clusterip-40")
	if n.NewPods != 3 || n.NewPodsReached != 0 {
		t.Errorf("clusterip-40: %d of %d new pods reached, want none of 3", n.NewPodsReached, n.NewPods)
	}
	f := get(t, rep, "scale-up", fair.Name)
	if f.NewPods != 3 || f.NewPodsReached != 3 {
		t.Errorf("fair share: %d of %d new pods reached; want all 3", f.NewPodsReached, f.NewPods)
	}
	// Failed calls are not asserted here: every row of this harness loses calls to deadlines
	// when the machine is overloaded (-race, parallel packages). The zero-failure claim is
	// fairshare's TestScaleUpThroughVIP; failures are logged for the record.
	t.Logf("failed calls: clusterip-40 %d %v, fair share %d %v", n.Failed, n.Report.Errors, f.Failed, f.Report.Errors)
	t.Logf("clusterip-40 max/min %.2f; fair share max/min %.2f, all new pods after %.0f ms, errors %v", n.MaxMin, f.MaxMin, f.AllNewMS, f.Report.Errors)
}
