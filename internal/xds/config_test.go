package xds

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/spread-grpc/spread/endpoint"
)

func TestParseServiceConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ann    map[string]string
		want   LBPolicy
		reason string
	}{
		{"none", nil, RoundRobin, ""},
		{"other prefixes ignored", map[string]string{"example.com/x": "1", "spread.dev/owner": "me"}, RoundRobin, ""},
		{"least request", map[string]string{AnnotationLBPolicy: "least_request", AnnotationChoiceCount: "3"}, LeastRequest, ""},
		{"dash spelling", map[string]string{AnnotationLBPolicy: "Pick-First"}, PickFirst, ""},
		{"ring hash", map[string]string{AnnotationLBPolicy: "ring_hash", AnnotationHashHeader: "x-user"}, RingHash, ""},
		{"wrr", map[string]string{AnnotationLBPolicy: "weighted_round_robin", AnnotationWRRBlackout: "2s", AnnotationWRROOB: "true"}, WeightedRoundRobin, ""},
		{"unknown policy", map[string]string{AnnotationLBPolicy: "random"}, "", ReasonUnknownPolicy},
		{"ring hash without header", map[string]string{AnnotationLBPolicy: "ring_hash"}, "", ReasonMissingHashHeader},
		{"binary header", map[string]string{AnnotationLBPolicy: "ring_hash", AnnotationHashHeader: "x-id-bin"}, "", ReasonInvalidHashHeader},
		{"upper-case header", map[string]string{AnnotationLBPolicy: "ring_hash", AnnotationHashHeader: "X-User"}, "", ReasonInvalidHashHeader},
		{"choice count 1", map[string]string{AnnotationLBPolicy: "least_request", AnnotationChoiceCount: "1"}, "", ReasonInvalidNumber},
		{"zero blackout", map[string]string{AnnotationLBPolicy: "weighted_round_robin", AnnotationWRRBlackout: "0s"}, "", ReasonInvalidDuration},
		{"bad bool", map[string]string{AnnotationLBPolicy: "weighted_round_robin", AnnotationWRROOB: "yes please"}, "", ReasonInvalidBool},
		{"header without ring hash", map[string]string{AnnotationHashHeader: "x-user"}, "", ReasonNotApplicable},
		{"typo", map[string]string{"spread.dev/lb-polcy": "ring_hash"}, "", ReasonUnknownAnnotation},
	} {
		c, err := ParseServiceConfig(tc.ann)
		if tc.reason == "" {
			if err != nil || c.Policy != tc.want {
				t.Errorf("%s: got %+v, %v; want %s", tc.name, c, err, tc.want)
			}
			continue
		}
		ce, ok := errors.AsType[*ConfigError](err)
		if !ok || ce.Reason != tc.reason {
			t.Errorf("%s: err %v, want reason %s", tc.name, err, tc.reason)
		}
	}
	c, _ := ParseServiceConfig(map[string]string{AnnotationLBPolicy: "weighted_round_robin", AnnotationWRRBlackout: "2s"})
	if c.Blackout != 2*time.Second || c.Update != -1 {
		t.Errorf("wrr durations %+v", c)
	}
}

func testSet() endpoint.Set {
	return endpoint.NewSet([]endpoint.Endpoint{
		{Address: "192.0.2.1", Port: 80, Zone: "a", Ready: true, Serving: true},
		{Address: "192.0.2.2", Port: 80, Zone: "a", Serving: true, Terminating: true},
		{Address: "192.0.2.3", Port: 80, Zone: "b", Ready: true, Serving: true},
		{Address: "192.0.2.4", Port: 80, Zone: "", Terminating: true},
	})
}

func TestBuildCLA(t *testing.T) {
	cla := buildCLA("be.default:80", testSet(), "a")
	if err := validateCLA(cla); err != nil {
		t.Fatal(err)
	}
	prio := map[string]uint32{}
	for _, l := range cla.GetEndpoints() {
		prio[l.GetLocality().GetZone()] = l.GetPriority()
		if l.GetLoadBalancingWeight().GetValue() == 0 {
			t.Errorf("zone %q without weight", l.GetLocality().GetZone())
		}
	}
	if prio["a"] != 0 || prio["b"] != 1 || prio[""] != 1 {
		t.Errorf("priorities %v, want a:0 b:1 '':1", prio)
	}
	got := map[string]string{}
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			got[e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = e.GetHealthStatus().String()
		}
	}
	want := map[string]string{"192.0.2.1": "HEALTHY", "192.0.2.2": "DRAINING", "192.0.2.3": "HEALTHY", "192.0.2.4": "UNHEALTHY"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s, want %s", k, got[k], v)
		}
	}
	zp := zonePolicy{enabled: true, minHealthy: 1}
	if !zp.preferZone(testSet(), "a") || zp.preferZone(testSet(), "c") || zp.preferZone(testSet(), "") {
		t.Error("preferZone: want a preferred, c and '' not")
	}
	if (zonePolicy{enabled: true, minHealthy: 2}).preferZone(testSet(), "a") {
		t.Error("zone a has 1 healthy endpoint; minHealthy 2 must not prefer it")
	}
}

func TestValidateCatchesWhatGRPCWouldReject(t *testing.T) {
	good := func() *resourceSet {
		rs := newResourceSet()
		cl, err := buildCluster("s", DefaultServiceConfig())
		if err != nil {
			t.Fatal(err)
		}
		rs.listeners["s"] = buildListener("s", "s")
		rs.routes["s"] = buildRoute("s", "s", DefaultServiceConfig())
		rs.clusters["s"] = cl
		rs.clas["s"] = buildCLA("s", testSet(), "")
		return rs
	}
	if err := good().validate(); err != nil {
		t.Fatalf("good set rejected: %v", err)
	}
	for name, breakIt := range map[string]func(*resourceSet){
		"missing route":   func(rs *resourceSet) { delete(rs.routes, "s") },
		"missing cluster": func(rs *resourceSet) { delete(rs.clusters, "s") },
		"missing CLA":     func(rs *resourceSet) { delete(rs.clas, "s") },
		"zero weight":     func(rs *resourceSet) { rs.clas["s"].Endpoints[0].LoadBalancingWeight = wrapperspb.UInt32(0) },
		"priority gap":    func(rs *resourceSet) { rs.clas["s"].Endpoints[0].Priority = 2 },
		"duplicate address": func(rs *resourceSet) {
			l := rs.clas["s"].Endpoints[0]
			l.LbEndpoints = append(l.LbEndpoints, l.LbEndpoints[0])
		},
		"route to nowhere": func(rs *resourceSet) { rs.routes["s"] = buildRoute("s", "other", DefaultServiceConfig()) },
		"no lb policy":     func(rs *resourceSet) { rs.clusters["s"].LoadBalancingPolicy = nil },
	} {
		rs := good()
		breakIt(rs)
		if err := rs.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
