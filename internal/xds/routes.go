package xds

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/spread-grpc/spread/endpoint"
)

// The route model: what a Service's RouteConfiguration says, independent of where it came
// from (a Gateway API GRPCRoute, translated by internal/grpcroute, in Kubernetes and in the
// demo alike). A Service with no rules (Service.Routes nil) gets the default routing: every
// call to its own cluster.

// RouteRule is one xDS route: calls that satisfy Match go to Backends, split by weight.
// Rules are tried in order; the first whose Match holds wins. A call that no rule matches
// fails (UNAVAILABLE in grpc-go), as the Gateway API requires.
type RouteRule struct {
	Match    RouteMatch
	Backends []WeightedBackend
}

// RouteMatch selects calls by gRPC service and method and by request headers (all must
// hold). Empty Service and Method match any.
type RouteMatch struct {
	// Service is the full gRPC service name ("echo.EchoServer"), or an RE2 expression when
	// Regex is set.
	Service string
	// Method is the method name ("SayHello"), or an RE2 expression when Regex is set.
	Method string
	// Regex makes Service and Method regular expressions matching the whole name.
	Regex   bool
	Headers []HeaderMatch
}

// HeaderMatch holds when the request header Name (lower case) has Value, or, with Regex,
// a value the RE2 expression Value matches as a whole.
type HeaderMatch struct {
	Name  string
	Value string
	Regex bool
}

// WeightedBackend is a share of a rule's calls: they go to the cluster of the Service port
// Key (which must be one the control plane serves), so that Service's own annotations —
// policy, outlier detection — apply to its share. Weight 0 sends it nothing.
type WeightedBackend struct {
	Key    endpoint.Key
	Weight uint32
}

// routesEqual compares two rule lists.
func routesEqual(a, b []RouteRule) bool {
	return slices.EqualFunc(a, b, func(x, y RouteRule) bool {
		return x.Match.Service == y.Match.Service && x.Match.Method == y.Match.Method && x.Match.Regex == y.Match.Regex &&
			slices.Equal(x.Match.Headers, y.Match.Headers) && slices.Equal(x.Backends, y.Backends)
	})
}

// ValidateRoutes checks rules for what this package can render and grpc-go accepts:
// valid RE2 expressions, lower-case header names that gRPC lets routes match (no
// "grpc-" headers, no binary "-bin" headers), and at least one backend with weight in
// every rule.
func ValidateRoutes(rules []RouteRule) error {
	for i, r := range rules {
		if r.Match.Regex {
			for _, e := range []string{r.Match.Service, r.Match.Method} {
				if _, err := regexp.Compile(e); err != nil {
					return fmt.Errorf("rule %d: regular expression %q: %w", i, e, err)
				}
			}
		} else if strings.Contains(r.Match.Service, "/") || strings.Contains(r.Match.Method, "/") {
			return fmt.Errorf("rule %d: service %q / method %q contain '/'", i, r.Match.Service, r.Match.Method)
		}
		for _, h := range r.Match.Headers {
			if !headerName.MatchString(h.Name) || strings.HasPrefix(h.Name, "grpc-") || strings.HasSuffix(h.Name, "-bin") {
				return fmt.Errorf("rule %d: header %q: want a lower-case, non-binary, non-grpc- header name", i, h.Name)
			}
			if h.Regex {
				if _, err := regexp.Compile(h.Value); err != nil {
					return fmt.Errorf("rule %d: header %q: regular expression %q: %w", i, h.Name, h.Value, err)
				}
			}
		}
		var total uint64
		for _, b := range r.Backends {
			total += uint64(b.Weight)
		}
		if total == 0 || total > 1<<32-1 {
			return fmt.Errorf("rule %d: backend weights sum to %d, want 1 to %d", i, total, uint32(1<<32-1))
		}
	}
	return nil
}

// pathMatch renders m's service and method as an xDS path matcher.
func pathMatch(m RouteMatch) *routev3.RouteMatch {
	if m.Regex {
		svc, method := m.Service, m.Method
		if svc == "" {
			svc = "[^/]+"
		}
		if method == "" {
			method = "[^/]+"
		}
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{
			Regex: "/(" + svc + ")/(" + method + ")",
		}}}
	}
	switch {
	case m.Service != "" && m.Method != "":
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/" + m.Service + "/" + m.Method}}
	case m.Service != "":
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/" + m.Service + "/"}}
	case m.Method != "":
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{
			Regex: "/[^/]+/" + regexp.QuoteMeta(m.Method),
		}}}
	default:
		return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	}
}

// callTimeoutFor is the max_stream_duration a rule gets from the parent Service's
// call-timeout annotation: for every rule if no methods are listed, else only for a rule
// that names exactly one listed method (or a method of a listed service).
func callTimeoutFor(m RouteMatch, cfg ServiceConfig) time.Duration {
	if cfg.CallTimeout <= 0 {
		return 0
	}
	if len(cfg.CallTimeoutMethods) == 0 {
		return cfg.CallTimeout
	}
	if m.Regex || m.Service == "" {
		return 0
	}
	for _, lm := range cfg.CallTimeoutMethods {
		if lm == m.Service || (m.Method != "" && lm == m.Service+"/"+m.Method) {
			return cfg.CallTimeout
		}
	}
	return 0
}

// buildRules renders rules as the RouteConfiguration name. cfg is the parent Service's
// configuration (call timeout); backend(key) returns a backend's configuration (for
// ring_hash's hash policy) and whether it is served. Backends with weight 0 are left out
// (grpc-go and grpc-js skip or refuse them).
func buildRules(name string, rules []RouteRule, cfg ServiceConfig, backend func(endpoint.Key) (ServiceConfig, bool)) (*routev3.RouteConfiguration, error) {
	if err := ValidateRoutes(rules); err != nil {
		return nil, err
	}
	var routes []*routev3.Route
	for i, r := range rules {
		match := pathMatch(r.Match)
		for _, h := range r.Match.Headers {
			hm := &routev3.HeaderMatcher{Name: h.Name}
			if h.Regex {
				hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: &matcherv3.RegexMatcher{Regex: h.Value}}
			} else {
				hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_ExactMatch{ExactMatch: h.Value}
			}
			match.Headers = append(match.Headers, hm)
		}
		action := &routev3.RouteAction{}
		var wcs []*routev3.WeightedCluster_ClusterWeight
		hashHeaders := map[string]bool{}
		for _, b := range r.Backends {
			bcfg, ok := backend(b.Key)
			if !ok {
				return nil, fmt.Errorf("rule %d: backend %s is not served", i, b.Key)
			}
			if b.Weight == 0 {
				continue
			}
			if bcfg.Policy == RingHash && !hashHeaders[bcfg.HashHeader] {
				hashHeaders[bcfg.HashHeader] = true
				action.HashPolicy = append(action.HashPolicy, &routev3.RouteAction_HashPolicy{
					PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: bcfg.HashHeader}},
				})
			}
			wcs = append(wcs, &routev3.WeightedCluster_ClusterWeight{Name: b.Key.String(), Weight: wrapperspb.UInt32(b.Weight)})
		}
		if len(wcs) == 1 {
			action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: wcs[0].GetName()}
		} else {
			action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: wcs}}
		}
		if d := callTimeoutFor(r.Match, cfg); d > 0 {
			action.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(d)}
		}
		routes = append(routes, &routev3.Route{Match: match, Action: &routev3.Route_Route{Route: action}})
	}
	return &routev3.RouteConfiguration{
		Name:         name,
		VirtualHosts: []*routev3.VirtualHost{{Name: name, Domains: []string{"*"}, Routes: routes}},
	}, nil
}

// routeClusters lists the clusters a route configuration sends calls to.
func routeClusters(rc *routev3.RouteConfiguration) []string {
	var out []string
	for _, vh := range rc.GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			if c := rt.GetRoute().GetCluster(); c != "" {
				out = append(out, c)
			}
			for _, wc := range rt.GetRoute().GetWeightedClusters().GetClusters() {
				out = append(out, wc.GetName())
			}
		}
	}
	return out
}

// rebuildRoutesLocked renders the rules of every Service that has them, after all clusters
// are built (a rule's backends are other Services' clusters). A Service whose rules cannot
// be rendered — a backend no longer served, say — keeps its previous route configuration,
// or, if it never had rules rendered, its default one. Called with s.mu held.
func (s *Server) rebuildRoutesLocked() {
	backend := func(k endpoint.Key) (ServiceConfig, bool) {
		st, ok := s.svcs[k]
		if !ok || st.cluster == nil || st.flatCLA == nil {
			return ServiceConfig{}, false
		}
		return st.cfg, true
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, st := range s.svcs {
		if st.cluster != nil && st.flatCLA != nil {
			clusters[st.svc.Key.String()] = st.cluster
		}
	}
	for _, st := range s.svcs {
		name := st.svc.Key.String()
		if st.svc.Routes == nil {
			if st.routed {
				// Rules removed: back to the default route.
				st.routed = false
				st.route = buildRoute(name, name, st.cfg)
			}
			continue
		}
		rc, err := buildRules(name, st.svc.Routes, st.cfg, backend)
		if err == nil {
			err = validateRoute(rc, clusters)
		}
		if err != nil {
			if st.routesErr == nil || st.routesErr.Error() != err.Error() {
				s.m.configErrors.WithLabelValues(name, "invalid_routes").Inc()
				s.log.Warn("xds: route rules not applied; keeping the previous routing", "service", name, "err", err)
			}
			st.routesErr = err
			for _, c := range routeClusters(st.route) {
				if clusters[c] == nil {
					// The previous routing names a cluster that is gone: fall back to the
					// default route rather than fail every Service's snapshot.
					st.routed = false
					st.route = buildRoute(name, name, st.cfg)
					break
				}
			}
			continue
		}
		st.routesErr = nil
		st.routed = true
		if st.route == nil || !proto.Equal(st.route, rc) {
			st.route = rc
		}
	}
}

// validateRouteClusters checks that rt sends calls to a cluster, or to weighted clusters
// with a non-zero total weight (grpc-go NACKs a zero total), all of them in clusters.
func validateRouteClusters(rt *routev3.Route, clusters map[string]*clusterv3.Cluster) error {
	var names []string
	if c := rt.GetRoute().GetCluster(); c != "" {
		names = append(names, c)
	} else if wcs := rt.GetRoute().GetWeightedClusters().GetClusters(); len(wcs) > 0 {
		var total uint64
		for _, wc := range wcs {
			total += uint64(wc.GetWeight().GetValue())
			names = append(names, wc.GetName())
		}
		if total == 0 || total > math.MaxUint32 {
			return fmt.Errorf("weighted clusters total %d, want 1 to %d", total, uint32(math.MaxUint32))
		}
	}
	if len(names) == 0 {
		return errors.New("a route has no cluster")
	}
	for _, c := range names {
		if _, ok := clusters[c]; !ok {
			return fmt.Errorf("cluster %q missing", c)
		}
	}
	return nil
}
