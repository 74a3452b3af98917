package xds

import (
	"errors"
	"fmt"
	"net/netip"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// resourceSet is one snapshot's resources by type and name.
type resourceSet struct {
	listeners map[string]*listenerv3.Listener
	routes    map[string]*routev3.RouteConfiguration
	clusters  map[string]*clusterv3.Cluster
	clas      map[string]*endpointv3.ClusterLoadAssignment
}

func newResourceSet() *resourceSet {
	return &resourceSet{
		listeners: map[string]*listenerv3.Listener{},
		routes:    map[string]*routev3.RouteConfiguration{},
		clusters:  map[string]*clusterv3.Cluster{},
		clas:      map[string]*endpointv3.ClusterLoadAssignment{},
	}
}

// validate is this package's consistency check. go-control-plane's Snapshot.Consistent
// does not look inside api_listener for RDS names (so it rejects every proxyless snapshot);
// this one follows Listener → RouteConfiguration → Cluster → ClusterLoadAssignment and also
// checks the rules grpc-go enforces when it unmarshals (the ones that would NACK a response
// or silently drop data): a terminal router filter, ADS config sources, known LB policy
// extensions, outlier detection limits, valid route timeouts, non-zero locality weights,
// contiguous priorities, unique localities per priority and unique endpoint addresses.
func (r *resourceSet) validate() error {
	var errs []error
	for name, l := range r.listeners {
		rn, err := listenerRoute(l)
		if err != nil {
			errs = append(errs, fmt.Errorf("listener %q: %w", name, err))
			continue
		}
		if _, ok := r.routes[rn]; !ok {
			errs = append(errs, fmt.Errorf("listener %q: route configuration %q missing", name, rn))
		}
	}
	for name, rc := range r.routes {
		if err := validateRoute(rc, r.clusters); err != nil {
			errs = append(errs, fmt.Errorf("route configuration %q: %w", name, err))
		}
	}
	for name, c := range r.clusters {
		if err := validateCluster(c); err != nil {
			errs = append(errs, fmt.Errorf("cluster %q: %w", name, err))
			continue
		}
		if _, ok := r.clas[edsName(c)]; !ok {
			errs = append(errs, fmt.Errorf("cluster %q: cluster load assignment %q missing", name, edsName(c)))
		}
	}
	for name, cla := range r.clas {
		if err := validateCLA(cla); err != nil {
			errs = append(errs, fmt.Errorf("cluster load assignment %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func edsName(c *clusterv3.Cluster) string {
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

// listenerRoute checks an API listener and returns the RDS name it refers to.
func listenerRoute(l *listenerv3.Listener) (string, error) {
	api := l.GetApiListener().GetApiListener()
	if api == nil {
		return "", errors.New("no api_listener")
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := api.UnmarshalTo(hcm); err != nil {
		return "", fmt.Errorf("api_listener is not an HttpConnectionManager: %w", err)
	}
	rds := hcm.GetRds()
	if rds == nil {
		return "", errors.New("no RDS route specifier")
	}
	if rds.GetConfigSource().GetAds() == nil && rds.GetConfigSource().GetSelf() == nil {
		return "", errors.New("RDS config source is neither ADS nor self")
	}
	f := hcm.GetHttpFilters()
	if len(f) == 0 || f[len(f)-1].GetTypedConfig().GetTypeUrl() != routerFilter.GetTypedConfig().GetTypeUrl() {
		return "", errors.New("last HTTP filter is not the router")
	}
	if rds.GetRouteConfigName() == "" {
		return "", errors.New("empty route configuration name")
	}
	return rds.GetRouteConfigName(), nil
}

func validateRoute(rc *routev3.RouteConfiguration, clusters map[string]*clusterv3.Cluster) error {
	if len(rc.GetVirtualHosts()) == 0 {
		return errors.New("no virtual hosts")
	}
	for _, vh := range rc.GetVirtualHosts() {
		if len(vh.GetDomains()) == 0 {
			return fmt.Errorf("virtual host %q has no domains", vh.GetName())
		}
		for _, rt := range vh.GetRoutes() {
			if err := validateRouteClusters(rt, clusters); err != nil {
				return fmt.Errorf("virtual host %q: %w", vh.GetName(), err)
			}
			if msd := rt.GetRoute().GetMaxStreamDuration(); msd != nil {
				for _, d := range []*durationpb.Duration{msd.GetMaxStreamDuration(), msd.GetGrpcTimeoutHeaderMax()} {
					if d != nil && (d.CheckValid() != nil || d.AsDuration() < 0) {
						return fmt.Errorf("virtual host %q: invalid max_stream_duration %v", vh.GetName(), d)
					}
				}
			}
			for _, hp := range rt.GetRoute().GetHashPolicy() {
				if hp.GetHeader().GetHeaderName() == "" {
					return fmt.Errorf("virtual host %q: hash policy without header", vh.GetName())
				}
			}
		}
	}
	return nil
}

var knownPolicies = map[string]bool{
	"type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin":                                        true,
	"type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest":                                    true,
	"type.googleapis.com/envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash":                                            true,
	"type.googleapis.com/envoy.extensions.load_balancing_policies.pick_first.v3.PickFirst":                                          true,
	"type.googleapis.com/envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin": true,
}

func validateCluster(c *clusterv3.Cluster) error {
	if c.GetType() != clusterv3.Cluster_EDS {
		return fmt.Errorf("type %v, want EDS", c.GetType())
	}
	if src := c.GetEdsClusterConfig().GetEdsConfig(); src.GetAds() == nil && src.GetSelf() == nil {
		return errors.New("EDS config source is neither ADS nor self")
	}
	ps := c.GetLoadBalancingPolicy().GetPolicies()
	if len(ps) == 0 {
		return errors.New("no load_balancing_policy")
	}
	for _, p := range ps {
		if !knownPolicies[p.GetTypedExtensionConfig().GetTypedConfig().GetTypeUrl()] {
			return fmt.Errorf("load balancing policy %q is not one grpc-go accepts", p.GetTypedExtensionConfig().GetTypedConfig().GetTypeUrl())
		}
	}
	return validateOutlierDetection(c.GetOutlierDetection())
}

// validateOutlierDetection checks what grpc-go NACKs (gRFC A50): durations valid and not
// negative, percentages at most 100.
func validateOutlierDetection(od *clusterv3.OutlierDetection) error {
	if od == nil {
		return nil
	}
	for name, d := range map[string]*durationpb.Duration{
		"interval": od.GetInterval(), "base_ejection_time": od.GetBaseEjectionTime(), "max_ejection_time": od.GetMaxEjectionTime(),
	} {
		if d != nil && (d.CheckValid() != nil || d.AsDuration() < 0) {
			return fmt.Errorf("outlier_detection.%s %v is invalid", name, d)
		}
	}
	for name, p := range map[string]*wrapperspb.UInt32Value{
		"max_ejection_percent": od.GetMaxEjectionPercent(), "enforcing_success_rate": od.GetEnforcingSuccessRate(),
		"failure_percentage_threshold": od.GetFailurePercentageThreshold(), "enforcing_failure_percentage": od.GetEnforcingFailurePercentage(),
	} {
		if p.GetValue() > 100 {
			return fmt.Errorf("outlier_detection.%s = %d, above 100", name, p.GetValue())
		}
	}
	return nil
}

func validateCLA(cla *endpointv3.ClusterLoadAssignment) error {
	prios := map[uint32]map[string]bool{}
	addrs := map[string]bool{}
	for _, l := range cla.GetEndpoints() {
		if l.GetLoadBalancingWeight().GetValue() == 0 {
			return fmt.Errorf("locality %q has no weight (grpc-go would drop it)", l.GetLocality().GetZone())
		}
		lk := l.GetLocality().GetRegion() + "/" + l.GetLocality().GetZone() + "/" + l.GetLocality().GetSubZone()
		if prios[l.GetPriority()] == nil {
			prios[l.GetPriority()] = map[string]bool{}
		}
		if prios[l.GetPriority()][lk] {
			return fmt.Errorf("locality %q twice at priority %d", lk, l.GetPriority())
		}
		prios[l.GetPriority()][lk] = true
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			ip, err := netip.ParseAddr(sa.GetAddress())
			if err != nil {
				return fmt.Errorf("endpoint address %q: %w", sa.GetAddress(), err)
			}
			if sa.GetPortValue() == 0 || sa.GetPortValue() > 65535 {
				return fmt.Errorf("endpoint %s: port %d out of range", ip, sa.GetPortValue())
			}
			ap := netip.AddrPortFrom(ip, uint16(sa.GetPortValue())).String()
			if addrs[ap] {
				return fmt.Errorf("endpoint %s listed twice", ap)
			}
			addrs[ap] = true
		}
	}
	for p := range uint32(len(prios)) {
		if prios[p] == nil {
			return fmt.Errorf("priorities are not contiguous from 0: %d missing", p)
		}
	}
	return nil
}
