package xdsinterop

import (
	"context"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spread-grpc/spread/internal/cluster"
)

// TestFairShareNonGoClients: clients nobody can change, in other languages, through the
// demo's ClusterIP VIP to fair-share pods. A grpc-js client and a C-core client (Debian's
// python3-grpcio), each with one long-lived pick_first connection, share one pod with six idle
// grpc-go clients. The cluster scales to two pods: the first sheds its busiest connections —
// the two that call — with a GOAWAY. Each must reconnect through the VIP by itself (landing
// at random; a pod at its share turns it away again) until it reaches the new pod, with no
// failed call on the way.
func TestFairShareNonGoClients(t *testing.T) {
	node, modules := nodeModules(t)
	py := python(t)
	c, err := cluster.Start(cluster.Config{Replicas: 1, FirstPodIP: netip.MustParseAddr("127.0.62.1"), PodPort: 0,
		VIP: "127.96.0.62:0", DNSAddr: "127.0.62.253:0", XDSAddr: "-", Grace: 5 * time.Second,
		FairShareInterval: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("cluster stop: %v", err)
		}
	})
	vipAddr := c.VIPAddr()
	first := c.Pods()[0].Pod
	root := repoRoot(t)
	// No xDS here: a plain ip:port target (pick_first). The bootstrap is never read.
	clients := map[string]*procClient{
		"grpc-js": startProc(t, "grpc-js", []byte("{}"), []string{"NODE_PATH=" + modules},
			node, filepath.Join(root, "examples", "node", "client.js"), "--lines", vipAddr),
		"c-core": startProc(t, "c-core", []byte("{}"), nil,
			py, filepath.Join(root, "internal", "xdsinterop", "testdata", "ccore_client.py"), vipAddr),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for name, pc := range clients {
		r, err := pc.do(ctx, request{N: 20, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		if r.failed() != 0 || r.Counts[first] != 20 {
			t.Fatalf("%s before the scale-up: %v, errors %v; want 20 calls on %s", name, r.Counts, r.Errors, first)
		}
	}
	// Six idle grpc-go connections on the same pod: 8 in all, 4 each after the scale-up.
	for range 6 {
		cc, err := grpc.NewClient("passthrough:///"+vipAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		cc.Connect()
		for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
			if !cc.WaitForStateChange(ctx, s) {
				t.Fatal("a grpc-go client never connected")
			}
		}
	}
	if n := c.PodConns()[first]; n != 8 {
		t.Fatalf("%s holds %d connections, want 8", first, n)
	}
	if err := c.Scale(2); err != nil {
		t.Fatal(err)
	}
	var second string
	for _, p := range c.Pods() {
		if p.Pod != first {
			second = p.Pod
		}
	}
	if second == "" {
		t.Fatal("no second pod after the scale-up")
	}
	// Both call without pause until their answers come from the new pod.
	var wg sync.WaitGroup
	for name, pc := range clients {
		wg.Go(func() {
			total, errs := map[string]int{}, map[string]int{}
			deadline := time.Now().Add(90 * time.Second)
			for total[second] == 0 {
				if time.Now().After(deadline) {
					t.Errorf("%s never reached the new pod %s in 90 s: answers %v, errors %v", name, second, total, errs)
					return
				}
				r, err := pc.do(ctx, request{N: 50, Name: name})
				if err != nil {
					t.Error(err)
					return
				}
				for k, v := range r.Counts {
					total[k] += v
				}
				for k, v := range r.Errors {
					errs[k] += v
				}
			}
			if len(errs) != 0 {
				t.Errorf("%s: failed calls across the shed: %v (answers %v)", name, errs, total)
			}
			t.Logf("%s: answers %v, reconnected to %s", name, total, second)
		})
	}
	wg.Wait()
}
