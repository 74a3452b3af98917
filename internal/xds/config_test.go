package xds

import (
	"errors"
	"maps"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
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
		{"near miss without the dash", map[string]string{"spread.dev/lbpolicy": "ring_hash"}, "", ReasonUnknownAnnotation},
		{"near miss in case and separator", map[string]string{"spread.dev/Call_Timeout": "1s"}, "", ReasonUnknownAnnotation},
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
		"outlier percent above 100": func(rs *resourceSet) {
			rs.clusters["s"].OutlierDetection = outlierDetection(DefaultOutlierDetection())
			rs.clusters["s"].OutlierDetection.MaxEjectionPercent = wrapperspb.UInt32(101)
		},
		"negative outlier interval": func(rs *resourceSet) {
			rs.clusters["s"].OutlierDetection = outlierDetection(DefaultOutlierDetection())
			rs.clusters["s"].OutlierDetection.Interval = durationpb.New(-time.Second)
		},
		"negative call timeout": func(rs *resourceSet) {
			rs.routes["s"].VirtualHosts[0].Routes[0].GetRoute().MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(-time.Second)}
		},
	} {
		rs := good()
		breakIt(rs)
		if err := rs.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseOutlierAndCallTimeout(t *testing.T) {
	c, err := ParseServiceConfig(map[string]string{
		AnnotationOutlierDetection: "failure-percentage", AnnotationCallTimeout: "500ms",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Outlier != DefaultOutlierDetection() || c.CallTimeout != 500*time.Millisecond || len(c.CallTimeoutMethods) != 0 {
		t.Errorf("defaults: %+v", c)
	}
	c, err = ParseServiceConfig(map[string]string{
		AnnotationOutlierDetection: "Failure-Percentage", AnnotationODThreshold: "80", AnnotationODMinimumHosts: "2",
		AnnotationODRequestVolume: "10", AnnotationODInterval: "1s", AnnotationODBaseEjection: "10m",
		AnnotationODMaxEjectionPercent: "20", AnnotationCallTimeout: "2s",
		AnnotationCallTimeoutMethods: "echo.EchoServer/SayHello, grpc.health.v1.Health",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := OutlierDetection{Enabled: true, Threshold: 80, MinimumHosts: 2, RequestVolume: 10, Interval: time.Second,
		BaseEjection: 10 * time.Minute, MaxEjection: 10 * time.Minute, MaxEjectionPercent: 20}
	if c.Outlier != want {
		t.Errorf("tunables: %+v, want %+v", c.Outlier, want)
	}
	if len(c.CallTimeoutMethods) != 2 || c.CallTimeoutMethods[1] != "grpc.health.v1.Health" {
		t.Errorf("methods %q", c.CallTimeoutMethods)
	}
	if c, err := ParseServiceConfig(map[string]string{AnnotationOutlierDetection: "off"}); err != nil || c.Outlier.Enabled {
		t.Errorf("off: %+v, %v", c.Outlier, err)
	}
	od := map[string]string{AnnotationOutlierDetection: "failure-percentage"}
	with := func(kv ...string) map[string]string {
		m := maps.Clone(od)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for name, tc := range map[string]struct {
		ann    map[string]string
		reason string
	}{
		"success-rate":          {map[string]string{AnnotationOutlierDetection: "success-rate"}, ReasonUnknownOutlier},
		"tunable without mode":  {map[string]string{AnnotationODThreshold: "50"}, ReasonNotApplicable},
		"threshold 0":           {with(AnnotationODThreshold, "0"), ReasonInvalidNumber},
		"threshold 101":         {with(AnnotationODThreshold, "101"), ReasonInvalidNumber},
		"max percent 200":       {with(AnnotationODMaxEjectionPercent, "200"), ReasonInvalidNumber},
		"volume negative":       {with(AnnotationODRequestVolume, "-1"), ReasonInvalidNumber},
		"interval not duration": {with(AnnotationODInterval, "fast"), ReasonInvalidDuration},
		"interval 1ms":          {with(AnnotationODInterval, "1ms"), ReasonInvalidDuration},
		"ejection 2h":           {with(AnnotationODBaseEjection, "2h"), ReasonInvalidDuration},
		"typo":                  {with("spread.dev/outlier-treshold", "50"), ReasonUnknownAnnotation},
		"timeout typo":          {map[string]string{"spread.dev/call-timout": "1s"}, ReasonUnknownAnnotation},
		"timeout 0":             {map[string]string{AnnotationCallTimeout: "0s"}, ReasonInvalidDuration},
		"timeout no unit":       {map[string]string{AnnotationCallTimeout: "500"}, ReasonInvalidDuration},
		"methods without":       {map[string]string{AnnotationCallTimeoutMethods: "a.B/C"}, ReasonNotApplicable},
		"method with slash":     {map[string]string{AnnotationCallTimeout: "1s", AnnotationCallTimeoutMethods: "/a.B/C"}, ReasonInvalidMethod},
		"empty method in list":  {map[string]string{AnnotationCallTimeout: "1s", AnnotationCallTimeoutMethods: "a.B/C,"}, ReasonInvalidMethod},
		"method with wildcard":  {map[string]string{AnnotationCallTimeout: "1s", AnnotationCallTimeoutMethods: "a.B/*"}, ReasonInvalidMethod},
	} {
		_, err := ParseServiceConfig(tc.ann)
		ce, ok := errors.AsType[*ConfigError](err)
		if !ok || ce.Reason != tc.reason {
			t.Errorf("%s: err %v, want reason %s", name, err, tc.reason)
		}
	}
}

func TestBuildOutlierAndCallTimeout(t *testing.T) {
	cfg := DefaultServiceConfig()
	if cl, _ := buildCluster("s", cfg); cl.GetOutlierDetection() != nil {
		t.Error("outlier detection on without the annotation")
	}
	if rs := buildRoute("s", "s", cfg).GetVirtualHosts()[0].GetRoutes(); len(rs) != 1 || rs[0].GetRoute().GetMaxStreamDuration() != nil {
		t.Errorf("default routes %v", rs)
	}
	cfg.Outlier = DefaultOutlierDetection()
	cfg.CallTimeout = 500 * time.Millisecond
	cl, err := buildCluster("s", cfg)
	if err != nil {
		t.Fatal(err)
	}
	od := cl.GetOutlierDetection()
	if od.GetInterval().AsDuration() != 500*time.Millisecond || od.GetBaseEjectionTime().AsDuration() != 30*time.Second ||
		od.GetMaxEjectionTime().AsDuration() != 300*time.Second || od.GetMaxEjectionPercent().GetValue() != 50 ||
		od.GetFailurePercentageThreshold().GetValue() != 50 || od.GetEnforcingFailurePercentage().GetValue() != 100 ||
		od.GetFailurePercentageMinimumHosts().GetValue() != 3 || od.GetFailurePercentageRequestVolume().GetValue() != 5 {
		t.Errorf("outlier detection %v", od)
	}
	// grpc-go runs success-rate ejection unless enforcing_success_rate is explicitly 0.
	if od.GetEnforcingSuccessRate() == nil || od.GetEnforcingSuccessRate().GetValue() != 0 {
		t.Errorf("success-rate ejection not off: %v", od.GetEnforcingSuccessRate())
	}
	if err := validateCluster(cl); err != nil {
		t.Error(err)
	}
	rs := buildRoute("s", "s", cfg).GetVirtualHosts()[0].GetRoutes()
	if len(rs) != 1 || rs[0].GetRoute().GetMaxStreamDuration().GetMaxStreamDuration().AsDuration() != 500*time.Millisecond {
		t.Errorf("call timeout on every call: %v", rs)
	}
	cfg.CallTimeoutMethods = []string{"echo.EchoServer/SayHello", "grpc.health.v1.Health"}
	rs = buildRoute("s", "s", cfg).GetVirtualHosts()[0].GetRoutes()
	if len(rs) != 3 || rs[0].GetMatch().GetPath() != "/echo.EchoServer/SayHello" || rs[1].GetMatch().GetPrefix() != "/grpc.health.v1.Health/" ||
		rs[2].GetMatch().GetPrefix() != "/" || rs[2].GetRoute().GetMaxStreamDuration() != nil {
		t.Fatalf("per-method routes %v", rs)
	}
	for _, r := range rs[:2] {
		if r.GetRoute().GetMaxStreamDuration().GetMaxStreamDuration().AsDuration() != 500*time.Millisecond || r.GetRoute().GetCluster() != "s" {
			t.Errorf("route %v", r)
		}
	}
}
