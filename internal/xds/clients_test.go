package xds

import (
	"maps"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestNackingCountsFollowRequests: the per-type counts of standing rejections (kept as
// requests arrive, for spread_xds_nacking_clients) always equal what the full walk (nacks)
// finds, through NACKs, repeated NACKs, ACKs and closed streams.
func TestNackingCountsFollowRequests(t *testing.T) {
	c := newClientTracker(time.Now)
	cds := typeURLs[types.Cluster]
	walk := func() map[string]int {
		out := map[string]int{}
		for _, n := range c.nacks() {
			out[n.Type]++
		}
		return out
	}
	check := func(step string, want map[string]int) {
		t.Helper()
		got := map[string]int{}
		for k, v := range c.nackingByType() {
			if v != 0 {
				got[k] = v
			}
		}
		if !maps.Equal(got, walk()) || !maps.Equal(got, want) {
			t.Fatalf("%s: counts %v, walk %v, want %v", step, got, walk(), want)
		}
	}
	nack := func(s int64, url string) {
		c.response(s, &discoveryv3.DiscoveryResponse{TypeUrl: url, VersionInfo: "v2", Nonce: "n"})
		c.request(s, &discoveryv3.DiscoveryRequest{TypeUrl: url, VersionInfo: "v1", ResponseNonce: "n", ErrorDetail: status.New(codes.InvalidArgument, "bad").Proto()})
	}
	ack := func(s int64, url string) {
		c.request(s, &discoveryv3.DiscoveryRequest{TypeUrl: url, VersionInfo: "v3", ResponseNonce: "m"})
	}
	for s := int64(1); s <= 3; s++ {
		c.open(s)
		c.request(s, &discoveryv3.DiscoveryRequest{TypeUrl: cds})
	}
	check("no rejections", map[string]int{})
	nack(1, cds)
	nack(2, cds)
	nack(2, cds) // again: still one client
	check("two nacking", map[string]int{"cluster": 2})
	ack(1, cds)
	check("one acked", map[string]int{"cluster": 1})
	nack(3, cds)
	c.closed(2)
	check("one closed", map[string]int{"cluster": 1})
	c.closed(3)
	check("all gone", map[string]int{})
}
