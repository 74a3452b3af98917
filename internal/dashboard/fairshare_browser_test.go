package dashboard_test

import (
	"fmt"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/demo"
)

// podCountsJS reads the pod table: connections and calls served per pod, as the page shows them.
const podCountsJS = `Object.fromEntries(Array.from(document.querySelectorAll('#pods tbody tr')).map(tr =>
	[tr.dataset.pod, {conns: +tr.querySelector('.conns').textContent, served: +tr.querySelector('.served').textContent}]))`

type podCounts struct {
	Conns  int    `json:"conns"`
	Served uint64 `json:"served"`
}

// TestBrowserConnsPerPod runs `spread demo --fair-share-interval 300ms --clusterip-clients 20`:
// the pod table shows each pod's connections (the same numbers as the cluster's PodConns)
// next to the calls it served, and after a scale-up from the page the new pods' connection
// counts rise from 0 as the fair-share pods shed toward them.
func TestBrowserConnsPerPod(t *testing.T) {
	tab := browser(t)
	const clients = 20
	d, err := demo.Start(demo.Config{
		Cluster: cluster.Config{Replicas: 3, FirstPodIP: netip.MustParseAddr("127.0.51.1"), PodPort: 0,
			VIP: "127.96.0.51:0", DNSAddr: "127.0.0.1:0", XDSAddr: "-", DNSTTL: time.Second,
			FairShareInterval: 300 * time.Millisecond},
		FrontendAddr: "127.0.0.1:0", AdminAddr: "-", Modes: []string{"clusterip"},
		Clients: demo.ClientsConfig{N: clients, Rate: 5, For: 2 * time.Minute},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("demo Stop: %v", err)
		}
	})
	if err := chromedp.Do(tab, chromedp.Navigate(d.FrontendURL+"/")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, tab, "the pod table", `document.body.dataset.ready === '1' && document.querySelectorAll('#pods tbody tr').length === 3`, 20*time.Second)

	// matches waits until the page shows the cluster's connection counts, every client's
	// connection placed, and cond holds of them.
	matches := func(what string, cond func(map[string]podCounts) bool) map[string]podCounts {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		var page map[string]podCounts
		var cluster map[string]int
		for time.Now().Before(deadline) {
			page = eval[map[string]podCounts](t, tab, podCountsJS)
			cluster = d.Cluster.PodConns()
			shown, total := map[string]int{}, 0
			for pod, c := range page {
				shown[pod] = c.Conns
				total += c.Conns
			}
			if maps.Equal(shown, cluster) && total >= clients && cond(page) {
				return page
			}
			time.Sleep(100 * time.Millisecond) // the page redraws every 250 ms
		}
		t.Fatalf("%s: the page never showed the cluster's connections\npage:    %v\ncluster: %v", what, page, cluster)
		return nil
	}
	before := matches("3 pods", func(p map[string]podCounts) bool { return len(p) == 3 })
	calls, _, _ := d.Clients.Counts()
	var served uint64
	for _, c := range before {
		served += c.Served
	}
	if served == 0 || calls == 0 {
		t.Errorf("calls served shown %d, clients made %d: want both above 0", served, calls)
	}

	for _, want := range []int{4, 5} {
		click(t, tab, "#scale-up")
		waitFor(t, tab, fmt.Sprintf("%d replicas", want), fmt.Sprintf(`document.getElementById('replicas').textContent === '%d'`, want), 10*time.Second)
	}
	// The new pods get connections only because the old ones shed toward them: ClusterIP
	// clients never reconnect by themselves.
	matches("the new pods holding connections", func(p map[string]podCounts) bool {
		if len(p) != 5 {
			return false
		}
		for pod, c := range p {
			if _, old := before[pod]; !old && c.Conns == 0 {
				return false
			}
		}
		return true
	})
	if _, failed, last := d.Clients.Counts(); failed != 0 {
		t.Errorf("%d ClusterIP client calls failed (last: %s)", failed, last)
	}
}
