package xds

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	cswrrv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/client_side_weighted_round_robin/v3"
	leastrequestv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/least_request/v3"
	pickfirstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/pick_first/v3"
	ringhashv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
	roundrobinv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/round_robin/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/spread-grpc/spread/endpoint"
)

// adsSource says "this resource comes over the same ADS stream".
func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		// Only fails for a nil or unregistered message: a programming error.
		panic(fmt.Sprintf("xds: marshal %T: %v", m, err))
	}
	return a
}

// routerFilter is the terminal HTTP filter grpc-go requires last in every listener. It is
// built once: every listener shares the same bytes.
var routerFilter = &hcmv3.HttpFilter{
	Name:       "envoy.filters.http.router",
	ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
}

// buildListener returns the API listener name → RDS routeName.
func buildListener(name, routeName string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: routeName,
		}},
		HttpFilters: []*hcmv3.HttpFilter{routerFilter},
	}
	return &listenerv3.Listener{
		Name:        name,
		ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(hcm)},
	}
}

// buildRoute sends every call to cluster, hashing on the configured header for ring_hash.
// A call timeout becomes the route's max_stream_duration, which grpc-go applies as the
// call's timeout: on the catch-all route, or on one route per listed method (or service),
// ahead of a catch-all route without it.
func buildRoute(name, cluster string, cfg ServiceConfig) *routev3.RouteConfiguration {
	action := func(timeout time.Duration) *routev3.Route_Route {
		a := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}
		if cfg.Policy == RingHash {
			a.HashPolicy = []*routev3.RouteAction_HashPolicy{{
				PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
					Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: cfg.HashHeader},
				},
			}}
		}
		if timeout > 0 {
			a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(timeout)}
		}
		return &routev3.Route_Route{Route: a}
	}
	var routes []*routev3.Route
	for _, m := range cfg.CallTimeoutMethods {
		match := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/" + m}}
		if !strings.Contains(m, "/") {
			match.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/" + m + "/"}
		}
		routes = append(routes, &routev3.Route{Match: match, Action: action(cfg.CallTimeout)})
	}
	catchAll := cfg.CallTimeout
	if len(cfg.CallTimeoutMethods) > 0 {
		catchAll = 0
	}
	routes = append(routes, &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: action(catchAll),
	})
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{"*"},
			Routes:  routes,
		}},
	}
}

func durationOrNil(d time.Duration) *durationpb.Duration {
	if d < 0 {
		return nil
	}
	return durationpb.New(d)
}

// Policy type URLs, as Cluster.load_balancing_policy carries them.
const (
	roundRobinPolicy   = "envoy.load_balancing_policies.round_robin"
	leastRequestPolicy = "envoy.load_balancing_policies.least_request"
	ringHashPolicy     = "envoy.load_balancing_policies.ring_hash"
	wrrPolicy          = "envoy.load_balancing_policies.client_side_weighted_round_robin"
	pickFirstPolicy    = "envoy.load_balancing_policies.pick_first"
)

// lbPolicy renders cfg as the Cluster.load_balancing_policy extension list (gRFC A52). The
// policy picks over all endpoints of a priority directly — no wrr_locality wrapper — so
// round_robin spreads evenly over endpoints whatever their zones.
//
// A client takes the first policy of the list it supports and NACKs the Cluster if it
// supports none, so every policy a client may lack is followed by round_robin, which every
// A52 client has: grpc-js-xds has no least_request, and weighted_round_robin and
// pick_first only behind environment variables. ring_hash has no fallback: a client that
// silently dropped affinity would be worse than one that says it cannot (and every client
// tested here has it).
func lbPolicy(cfg ServiceConfig) (*clusterv3.LoadBalancingPolicy, error) {
	var name string
	var m proto.Message
	switch cfg.Policy {
	case RoundRobin:
		name, m = roundRobinPolicy, &roundrobinv3.RoundRobin{}
	case LeastRequest:
		lr := &leastrequestv3.LeastRequest{}
		if cfg.ChoiceCount != 0 {
			lr.ChoiceCount = wrapperspb.UInt32(cfg.ChoiceCount)
		}
		name, m = leastRequestPolicy, lr
	case RingHash:
		name, m = ringHashPolicy, &ringhashv3.RingHash{HashFunction: ringhashv3.RingHash_XX_HASH}
	case WeightedRoundRobin:
		w := &cswrrv3.ClientSideWeightedRoundRobin{
			BlackoutPeriod:         durationOrNil(cfg.Blackout),
			WeightUpdatePeriod:     durationOrNil(cfg.Update),
			WeightExpirationPeriod: durationOrNil(cfg.Expiration),
		}
		if cfg.OOB {
			w.EnableOobLoadReport = wrapperspb.Bool(true)
		}
		name, m = wrrPolicy, w
	case PickFirst:
		name, m = pickFirstPolicy, &pickfirstv3.PickFirst{}
	default:
		return nil, &ConfigError{Reason: ReasonUnknownPolicy, Annotation: AnnotationLBPolicy, Value: string(cfg.Policy), Detail: "unsupported"}
	}
	list := []*clusterv3.LoadBalancingPolicy_Policy{{
		TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: name, TypedConfig: mustAny(m)},
	}}
	if cfg.Policy != RoundRobin && cfg.Policy != RingHash {
		list = append(list, &clusterv3.LoadBalancingPolicy_Policy{
			TypedExtensionConfig: &corev3.TypedExtensionConfig{Name: roundRobinPolicy, TypedConfig: roundRobinAny},
		})
	}
	return &clusterv3.LoadBalancingPolicy{Policies: list}, nil
}

// roundRobinAny is the round_robin fallback every non-round-robin policy list ends with.
var roundRobinAny = mustAny(&roundrobinv3.RoundRobin{})

// setLegacyPolicy fills the pre-A52 fields, Cluster.lb_policy and its lb_config, which a
// client reads when it does not read load_balancing_policy (gRPC C-core before 1.55 — C++,
// Python, Ruby, PHP —, grpc-java before 1.47). Such clients know ROUND_ROBIN and RING_HASH
// and NACK any other lb_policy (C-core's CdsTest.WrongLbPolicy: LEAST_REQUEST is "LB policy
// is not supported"), and a NACKed Cluster serves nothing; so least_request,
// weighted_round_robin and pick_first fall back to ROUND_ROBIN there, as in the A52 list.
func setLegacyPolicy(c *clusterv3.Cluster, cfg ServiceConfig) {
	if cfg.Policy != RingHash {
		c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
		return
	}
	c.LbPolicy = clusterv3.Cluster_RING_HASH
	c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
		HashFunction: clusterv3.Cluster_RingHashLbConfig_XX_HASH,
	}}
}

// outlierDetection renders od as Cluster.outlier_detection, nil when off. grpc-go (gRFC A50)
// turns success-rate ejection on unless enforcing_success_rate is 0, and failure-percentage
// ejection off unless enforcing_failure_percentage is above 0: both are set explicitly.
func outlierDetection(od OutlierDetection) *clusterv3.OutlierDetection {
	if !od.Enabled {
		return nil
	}
	return &clusterv3.OutlierDetection{
		Interval:                       durationpb.New(od.Interval),
		BaseEjectionTime:               durationpb.New(od.BaseEjection),
		MaxEjectionTime:                durationpb.New(od.MaxEjection),
		MaxEjectionPercent:             wrapperspb.UInt32(od.MaxEjectionPercent),
		EnforcingSuccessRate:           wrapperspb.UInt32(0),
		FailurePercentageThreshold:     wrapperspb.UInt32(od.Threshold),
		EnforcingFailurePercentage:     wrapperspb.UInt32(100),
		FailurePercentageMinimumHosts:  wrapperspb.UInt32(od.MinimumHosts),
		FailurePercentageRequestVolume: wrapperspb.UInt32(od.RequestVolume),
	}
}

func buildCluster(name string, cfg ServiceConfig) (*clusterv3.Cluster, error) {
	lb, err := lbPolicy(cfg)
	if err != nil {
		return nil, err
	}
	c := &clusterv3.Cluster{
		OutlierDetection:     outlierDetection(cfg.Outlier),
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig:   adsSource(),
			ServiceName: name,
		},
		LoadBalancingPolicy: lb,
		// grpc-go fails calls beyond a cluster's max_requests in flight, 1024 by default: a
		// limit plain round_robin does not have. Lift it.
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:    corev3.RoutingPriority_DEFAULT,
			MaxRequests: wrapperspb.UInt32(math.MaxUint32),
		}}},
	}
	setLegacyPolicy(c, cfg)
	return c, nil
}

func healthStatus(h endpoint.Health) corev3.HealthStatus {
	switch h {
	case endpoint.Healthy:
		return corev3.HealthStatus_HEALTHY
	case endpoint.Draining:
		return corev3.HealthStatus_DRAINING
	default:
		return corev3.HealthStatus_UNHEALTHY
	}
}

// zonePolicy decides priorities: with it on, a client whose own zone has at least
// minHealthy healthy endpoints gets that zone at priority 0 and every other zone at
// priority 1; otherwise (zone unknown, too few healthy, or policy off) every zone is at
// priority 0. grpc-go's priority policy also fails over by itself when priority 0 has no
// READY subchannel, which covers endpoints that are "healthy" here but unreachable.
type zonePolicy struct {
	enabled    bool
	minHealthy int
}

// preferZone reports whether a client in zone gets a zone-preferring assignment of set.
func (zp zonePolicy) preferZone(set endpoint.Set, zone string) bool {
	if !zp.enabled || zone == "" {
		return false
	}
	healthy, other := 0, false
	for _, e := range set {
		if e.Zone == zone {
			if e.Health() == endpoint.Healthy {
				healthy++
			}
		} else {
			other = true
		}
	}
	return other && healthy >= max(zp.minHealthy, 1)
}

// buildCLA assigns set to localities, one per zone (zone "" is a locality of its own), in
// zone order. clientZone != "" puts that zone at priority 0 and the others at priority 1.
// The weights (see claWeights) make every client kind spread evenly over endpoints.
func buildCLA(name string, set endpoint.Set, clientZone string) *endpointv3.ClusterLoadAssignment {
	byZone := map[string][]endpoint.Endpoint{}
	for _, e := range set {
		byZone[e.Zone] = append(byZone[e.Zone], e)
	}
	zones := slices.Sorted(maps.Keys(byZone))
	healthy := make([]int, len(zones))
	for i, z := range zones {
		for _, e := range byZone[z] {
			if e.Health() == endpoint.Healthy {
				healthy[i]++
			}
		}
	}
	unit := weightUnit(healthy)
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for i, z := range zones {
		var prio uint32
		if clientZone != "" && z != clientZone {
			prio = 1
		}
		lw, ew := claWeights(healthy[i], unit)
		var lbs []*endpointv3.LbEndpoint
		for _, e := range byZone[z] {
			w := uint32(1)
			if e.Health() == endpoint.Healthy {
				w = ew
			}
			lbs = append(lbs, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address:       e.Address,
						PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(e.Port)},
					}}},
					Hostname: e.Pod,
				}},
				HealthStatus:        healthStatus(e.Health()),
				LoadBalancingWeight: wrapperspb.UInt32(w),
			})
		}
		cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{Zone: z},
			LbEndpoints:         lbs,
			LoadBalancingWeight: wrapperspb.UInt32(lw),
			Priority:            prio,
		})
	}
	return cla
}

// weightScale is the least total endpoint weight of a locality (see claWeights).
const weightScale = 1 << 16

// weightUnit returns U, the total endpoint weight every locality gets: the smallest multiple
// of the least common multiple of the healthy counts that is at least weightScale, so that
// U / n is exact for every count n; or weightScale itself when that multiple would pass
// 2·weightScale (counts whose lcm is large), where rounding U / n errs by at most n / 2^17.
func weightUnit(healthy []int) uint32 {
	l := 1
	for _, n := range healthy {
		if n <= 0 {
			continue
		}
		l = l / gcd(l, n) * n
		if l > weightScale {
			return weightScale
		}
	}
	return uint32((weightScale + l - 1) / l * l)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// claWeights returns the weight of a locality with n healthy endpoints (n, at least 1: zero
// is invalid and grpc-go drops such a locality) and of each of its healthy endpoints
// (unit / n, rounded; non-healthy endpoints get 1, the least valid weight).
//
// Why: clients use these weights in three different ways, and this encoding is even per
// endpoint in all of them, with n_l healthy endpoints in locality l and N in the priority:
//
//   - Pick a locality by weight, then round robin inside it (pre-A52 clients: C-core before
//     1.55, grpc-java before 1.47; Istio weighs localities the same way): locality l gets
//     n_l / N of the calls, each of its endpoints 1/N. With every locality at weight 1 the
//     lone pod of a one-pod zone got a third of all calls with three zones.
//   - round_robin, least_request, weighted_round_robin over the endpoints of a priority
//     directly (A52 load_balancing_policy, as sent here): weights are not used.
//   - ring_hash, which weighs each endpoint by locality weight × endpoint weight (gRFC A42;
//     grpc-js-xds, C-core): n_l × unit/n_l = unit, the same for every endpoint. grpc-go 1.85
//     normalizes instead (gRFC A113): (n_l / N) × (unit/n_l) / (unit + u_l), with u_l the
//     locality's non-healthy endpoints at weight 1: 1/N within u_l/unit ≤ u_l/65536.
//
// Endpoint weight 1 everywhere (n_l × 1) would skew ring_hash towards big zones, and
// locality weight 1 everywhere would skew the locality-picking clients towards small ones.
func claWeights(n int, unit uint32) (locality, perEndpoint uint32) {
	if n <= 0 {
		return 1, unit
	}
	return uint32(n), (unit + uint32(n)/2) / uint32(n)
}
