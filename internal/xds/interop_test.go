package xds

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spread-grpc/spread/endpoint"
)

// zonedSet is count healthy endpoints per zone (in order), plus unhealthy[z] non-healthy ones.
func zonedSet(zones []string, counts []int, unhealthy map[string]int) endpoint.Set {
	var eps []endpoint.Endpoint
	ip := 1
	add := func(z string, ready bool) {
		eps = append(eps, endpoint.Endpoint{Address: fmt.Sprintf("10.0.%d.%d", ip/250, ip%250+1), Port: 80, Zone: z, Ready: ready, Serving: ready})
		ip++
	}
	for i, z := range zones {
		for range counts[i] {
			add(z, true)
		}
		for range unhealthy[z] {
			add(z, false)
		}
	}
	return endpoint.NewSet(eps)
}

// shares computes the share of traffic each healthy endpoint of priority 0 gets under the
// three ways clients use EDS weights (see claWeights).
func shares(cla *endpointv3.ClusterLoadAssignment) (localityPick, multiply, normalized map[string]float64) {
	localityPick, multiply, normalized = map[string]float64{}, map[string]float64{}, map[string]float64{}
	var sumLW, sumProduct float64
	var locs []*endpointv3.LocalityLbEndpoints
	for _, l := range cla.GetEndpoints() {
		if l.GetPriority() != 0 {
			continue
		}
		locs = append(locs, l)
	}
	healthy := func(e *endpointv3.LbEndpoint) bool { return e.GetHealthStatus() == corev3.HealthStatus_HEALTHY }
	for _, l := range locs {
		n := 0
		for _, e := range l.GetLbEndpoints() {
			if healthy(e) {
				n++
				sumProduct += float64(l.GetLoadBalancingWeight().GetValue()) * float64(e.GetLoadBalancingWeight().GetValue())
			}
		}
		if n > 0 { // a locality without a ready endpoint is not picked
			sumLW += float64(l.GetLoadBalancingWeight().GetValue())
		}
	}
	var sumNorm float64
	for _, l := range locs {
		n, sumEW := 0, 0.0
		for _, e := range l.GetLbEndpoints() {
			sumEW += float64(e.GetLoadBalancingWeight().GetValue()) // grpc-go sums over all, healthy or not
			if healthy(e) {
				n++
			}
		}
		lw := float64(l.GetLoadBalancingWeight().GetValue())
		var locSum float64
		for _, l2 := range locs {
			locSum += float64(l2.GetLoadBalancingWeight().GetValue())
		}
		for _, e := range l.GetLbEndpoints() {
			if !healthy(e) {
				continue
			}
			a := e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
			ew := float64(e.GetLoadBalancingWeight().GetValue())
			localityPick[a] = lw / sumLW / float64(n)
			multiply[a] = lw * ew / sumProduct
			normalized[a] = (lw / locSum) * (ew / sumEW)
			sumNorm += normalized[a]
		}
	}
	for a := range normalized { // ring_hash gives the ring out in proportion
		normalized[a] /= sumNorm
	}
	return localityPick, multiply, normalized
}

// TestCLAWeightsEvenForEveryClientKind: with unequal zones, every healthy endpoint gets 1/N
// whether the client picks a locality by weight (pre-A52), multiplies locality × endpoint
// weight (ring_hash, A42) or normalizes them (grpc-go 1.85, A113).
func TestCLAWeightsEvenForEveryClientKind(t *testing.T) {
	for _, tc := range []struct {
		name      string
		zones     []string
		counts    []int
		unhealthy map[string]int
		tol       float64 // relative
	}{
		{"a,a,b,b,c", []string{"a", "b", "c"}, []int{2, 2, 1}, nil, 1e-9},
		{"one zone", []string{"a"}, []int{5}, nil, 1e-9},
		{"1+7", []string{"a", "b"}, []int{1, 7}, nil, 1e-9},
		{"draining pods count for nothing", []string{"a", "b", "c"}, []int{2, 2, 1}, map[string]int{"a": 3, "c": 1}, 1e-4},
		{"a zone with only unhealthy pods", []string{"a", "b", "c"}, []int{2, 3, 0}, map[string]int{"c": 2}, 1e-4},
		{"sizes 1..20 (lcm beyond the scale)", zoneNames(20), seq(20), nil, 2e-4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := zonedSet(tc.zones, tc.counts, tc.unhealthy)
			cla := buildCLA("s", set, "")
			if err := validateCLA(cla); err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, c := range tc.counts {
				n += c
			}
			lp, mul, norm := shares(cla)
			for kind, sh := range map[string]map[string]float64{"locality pick": lp, "A42 multiply": mul, "A113 normalized": norm} {
				if len(sh) != n {
					t.Fatalf("%s: %d endpoints, want %d", kind, len(sh), n)
				}
				for a, s := range sh {
					if d := math.Abs(s*float64(n) - 1); d > tc.tol {
						t.Errorf("%s: %s gets %.6f, want 1/%d (off by %.2g)", kind, a, s, n, d)
					}
				}
			}
			for _, l := range cla.GetEndpoints() {
				for _, e := range l.GetLbEndpoints() {
					if p := uint64(l.GetLoadBalancingWeight().GetValue()) * uint64(e.GetLoadBalancingWeight().GetValue()); p > math.MaxUint32/64 {
						t.Errorf("locality × endpoint weight %d: too close to uint32 overflow", p)
					}
				}
			}
		})
	}
}

// TestCLAWeightsOldEncodingWasUneven shows the test above can fail: locality weight 1 made
// the lone zone-c pod take a third of the calls of a locality-picking client.
func TestCLAWeightsOldEncodingWasUneven(t *testing.T) {
	cla := buildCLA("s", zonedSet([]string{"a", "b", "c"}, []int{2, 2, 1}, nil), "")
	for _, l := range cla.GetEndpoints() {
		l.LoadBalancingWeight.Value = 1
	}
	lp, _, _ := shares(cla)
	max := 0.0
	for _, s := range lp {
		max = math.Max(max, s)
	}
	if math.Abs(max-1.0/3) > 1e-9 {
		t.Fatalf("with locality weight 1 the zone-c pod gets %.3f, expected 1/3", max)
	}
}

func zoneNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("z%02d", i)
	}
	return out
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// TestClusterPolicyListsAndLegacyFields: every policy a client may lack is followed by
// round_robin; the legacy lb_policy is one pre-A52 clients accept.
func TestClusterPolicyListsAndLegacyFields(t *testing.T) {
	const rrURL = "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin"
	for _, tc := range []struct {
		policy LBPolicy
		first  string
		legacy clusterv3.Cluster_LbPolicy
		n      int
	}{
		{RoundRobin, rrURL, clusterv3.Cluster_ROUND_ROBIN, 1},
		{LeastRequest, "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest", clusterv3.Cluster_ROUND_ROBIN, 2},
		{WeightedRoundRobin, "type.googleapis.com/envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin", clusterv3.Cluster_ROUND_ROBIN, 2},
		{PickFirst, "type.googleapis.com/envoy.extensions.load_balancing_policies.pick_first.v3.PickFirst", clusterv3.Cluster_ROUND_ROBIN, 2},
		{RingHash, "type.googleapis.com/envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash", clusterv3.Cluster_RING_HASH, 1},
	} {
		cfg := DefaultServiceConfig()
		cfg.Policy, cfg.HashHeader = tc.policy, "x-user"
		c, err := buildCluster("s", cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := validateCluster(c); err != nil {
			t.Errorf("%s: %v", tc.policy, err)
		}
		ps := c.GetLoadBalancingPolicy().GetPolicies()
		if len(ps) != tc.n || ps[0].GetTypedExtensionConfig().GetTypedConfig().GetTypeUrl() != tc.first {
			t.Errorf("%s: policies %v", tc.policy, ps)
		}
		if tc.n == 2 && ps[1].GetTypedExtensionConfig().GetTypedConfig().GetTypeUrl() != rrURL {
			t.Errorf("%s: fallback %v, want round_robin", tc.policy, ps[1])
		}
		if c.GetLbPolicy() != tc.legacy {
			t.Errorf("%s: lb_policy %v, want %v", tc.policy, c.GetLbPolicy(), tc.legacy)
		}
		if rh := c.GetRingHashLbConfig(); (tc.policy == RingHash) != (rh != nil) || rh != nil && rh.GetHashFunction() != clusterv3.Cluster_RingHashLbConfig_XX_HASH {
			t.Errorf("%s: ring_hash_lb_config %v", tc.policy, rh)
		}
	}
}

// TestBootstrapAlwaysHasLocality: node.locality is present with and without a zone (A27:
// locality is an object of region, zone, sub_zone; grpc-js-xds requires it).
func TestBootstrapAlwaysHasLocality(t *testing.T) {
	for _, zone := range []string{"", "zone-a"} {
		b, err := Bootstrap(BootstrapConfig{ServerURI: "xds.example:18000", Zone: zone})
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			XDSServers []struct {
				ServerURI    string `json:"server_uri"`
				ChannelCreds []struct {
					Type string `json:"type"`
				} `json:"channel_creds"`
				ServerFeatures []string `json:"server_features"`
			} `json:"xds_servers"`
			Node map[string]json.RawMessage `json:"node"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		loc, ok := got.Node["locality"]
		if !ok {
			t.Fatalf("zone %q: no node.locality in %s", zone, b)
		}
		var l map[string]string
		if err := json.Unmarshal(loc, &l); err != nil {
			t.Fatalf("locality %s: %v", loc, err)
		}
		if l["zone"] != zone || len(l) > 1 {
			t.Errorf("locality %v, want zone %q only", l, zone)
		}
		if len(got.XDSServers) != 1 || got.XDSServers[0].ServerURI != "xds.example:18000" || len(got.XDSServers[0].ChannelCreds) != 1 || got.XDSServers[0].ChannelCreds[0].Type != "insecure" {
			t.Errorf("xds_servers %+v", got.XDSServers)
		}
	}
}

// TestClientTrackerAckNack follows one client through ACK, NACK and ACK again.
func TestClientTrackerAckNack(t *testing.T) {
	now := time.Unix(1000, 0)
	tr := newClientTracker(func() time.Time { return now })
	tr.open(7)
	node := &corev3.Node{Id: "n1", Locality: &corev3.Locality{Zone: "a"}, UserAgentName: "gRPC Go", UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: "1.85.0"}}
	cds := typeURLs[types.Cluster]
	req := func(version, nonce string, nack string) (Nack, bool) {
		r := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: cds, VersionInfo: version, ResponseNonce: nonce, ResourceNames: []string{"s"}}
		if nack != "" {
			r.ErrorDetail = status.New(codes.InvalidArgument, nack).Proto()
		}
		return tr.request(7, r)
	}
	if _, ok := req("", "", ""); ok {
		t.Fatal("first request taken for a NACK")
	}
	tr.response(7, &discoveryv3.DiscoveryResponse{TypeUrl: cds, VersionInfo: "v1", Nonce: "1"})
	req("v1", "1", "")
	tr.response(7, &discoveryv3.DiscoveryResponse{TypeUrl: cds, VersionInfo: "v2", Nonce: "2"})
	n, ok := req("v1", "2", "bad cluster")
	if !ok || n.Version != "v2" || n.Error != "bad cluster" || n.NodeID != "n1" || n.Type != "cluster" || n.UserAgent != "gRPC Go 1.85.0" || len(n.Resources) != 1 {
		t.Fatalf("NACK: %+v %v", n, ok)
	}
	if ns := tr.nacks(); len(ns) != 1 || ns[0].Version != "v2" {
		t.Fatalf("standing NACKs %+v", ns)
	}
	st := tr.list()[0].Types["cluster"]
	if st.Acked != "v1" || st.Sent != "v2" || st.Nacked != "v2" || st.Nacks != 1 {
		t.Fatalf("status %+v", st)
	}
	tr.response(7, &discoveryv3.DiscoveryResponse{TypeUrl: cds, VersionInfo: "v3", Nonce: "3"})
	req("v3", "3", "")
	if ns := tr.nacks(); len(ns) != 0 {
		t.Fatalf("NACK still listed after an ACK: %+v", ns)
	}
	if st := tr.list()[0].Types["cluster"]; st.Acked != "v3" || st.Nacks != 1 {
		t.Fatalf("status after ACK %+v", st)
	}
	tr.closed(7)
	if len(tr.list()) != 0 {
		t.Fatal("closed stream still listed")
	}
}
