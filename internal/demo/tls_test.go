package demo

import (
	"github.com/spread-grpc/spread/internal/cluster"

	"net/netip"
	"os"
	"testing"
)

// TestTLS runs the demo with mTLS on: every mode's calls succeed over TLS, and Stop removes
// the ephemeral certificates.
func TestTLS(t *testing.T) {
	d, err := Start(Config{
		Cluster: cluster.Config{
			Replicas: 3, FirstPodIP: netip.MustParseAddr("127.0.14.1"), PodPort: 0,
			VIP: "127.96.0.10:0", DNSAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0",
		},
		FrontendAddr: "127.0.0.1:0", AdminAddr: "-", TLS: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := d.tlsDir
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("certificate folder: %v", err)
	}
	if r := call(t, d, "/backend"); r.OK != 10 || len(r.Counts) != 1 {
		t.Errorf("clusterip over mTLS: %+v", r)
	}
	waitAllPods(t, d, "headless", 3)
	if r := call(t, d, "/call/dns-refresh?n=9"); r.OK != 9 {
		t.Errorf("dns-refresh over mTLS: %+v", r)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("certificate folder %s left behind: %v", dir, err)
	}
}
