package grpcroute

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/xds"
)

// ControllerName is how spread xds signs the status entries it writes into routes.
const ControllerName gatewayv1.GatewayController = "spread.dev/xds"

// ReasonConflicted is the Accepted=False reason of a route that matches exactly what an
// older route attached to the same Service port already matches (an implementation-specific
// reason, as the Gateway API allows).
const ReasonConflicted gatewayv1.RouteConditionReason = "Conflicted"

// Condition is one status condition a route gets for one parent.
type Condition struct {
	OK      bool
	Reason  gatewayv1.RouteConditionReason
	Message string
}

// Parent is the outcome for one parentRef that names a Service spread xds serves.
type Parent struct {
	Ref gatewayv1.ParentReference
	// Keys are the served Service ports the route attaches to through Ref.
	Keys         []endpoint.Key
	Accepted     Condition
	ResolvedRefs Condition
}

// Rule is one (rule, match) pair of a route in the route model, with what Merge needs to
// order it by the Gateway API's precedence.
type Rule struct {
	xds.RouteRule
	RuleIndex, MatchIndex int
}

// Translation is one route's translation. Routes with no Service parent served by spread
// xds translate to no Parents (they belong to someone else).
type Translation struct {
	Route      types.NamespacedName
	Generation int64
	Created    time.Time
	Parents    []Parent
	Rules      []Rule
}

// Valid reports whether the route may be applied: at least one parent and every parent
// Accepted with its references resolved.
func (t Translation) Valid() bool {
	if len(t.Parents) == 0 {
		return false
	}
	for _, p := range t.Parents {
		if !p.Accepted.OK || !p.ResolvedRefs.OK {
			return false
		}
	}
	return true
}

// Services indexes the Service ports spread xds serves, for Translate.
type Services struct {
	byName map[types.NamespacedName][]xds.Service
}

// IndexServices indexes list (as a ServiceSource delivers it).
func IndexServices(list []xds.Service) Services {
	s := Services{byName: map[types.NamespacedName][]xds.Service{}}
	for _, svc := range list {
		n := types.NamespacedName{Namespace: svc.Key.Namespace, Name: svc.Key.Service}
		s.byName[n] = append(s.byName[n], svc)
	}
	return s
}

// ports returns the served ports of ns/name.
func (s Services) ports(ns, name string) []xds.Service {
	return s.byName[types.NamespacedName{Namespace: ns, Name: name}]
}

// byNumber finds the served port of ns/name whose number (its key or an alias) is port.
func (s Services) byNumber(ns, name string, port int32) (endpoint.Key, bool) {
	num := strconv.Itoa(int(port))
	for _, svc := range s.ports(ns, name) {
		if svc.Key.Port == num || slices.Contains(svc.Aliases, num) {
			return svc.Key, true
		}
	}
	return endpoint.Key{}, false
}

func isService(group *gatewayv1.Group, kind *gatewayv1.Kind, defaultGroup, defaultKind string) bool {
	g, k := defaultGroup, defaultKind
	if group != nil {
		g = string(*group)
	}
	if kind != nil {
		k = string(*kind)
	}
	return (g == "" || g == "core") && k == "Service"
}

func ok(reason gatewayv1.RouteConditionReason, msg string) Condition {
	return Condition{OK: true, Reason: reason, Message: msg}
}

func bad(reason gatewayv1.RouteConditionReason, format string, a ...any) Condition {
	return Condition{Reason: reason, Message: fmt.Sprintf(format, a...)}
}

// Translate turns one GRPCRoute into the route model, against the Service ports spread xds
// serves. It is a pure function of its arguments. What a proxyless gRPC client cannot do —
// filters, session persistence, hostnames, rules without backends, cross-namespace
// references — is refused (Accepted=False UnsupportedValue, or ResolvedRefs=False), never
// silently dropped.
func Translate(rt *gatewayv1.GRPCRoute, svcs Services) Translation {
	t := Translation{
		Route:      types.NamespacedName{Namespace: rt.Namespace, Name: rt.Name},
		Generation: rt.Generation,
		Created:    rt.CreationTimestamp.Time,
	}
	// Route-wide outcome, the same for every parent.
	accepted := ok(gatewayv1.RouteReasonAccepted, "Accepted by spread xds")
	resolved := ok(gatewayv1.RouteReasonResolvedRefs, "All backends resolved")
	refuse := func(c Condition) {
		if accepted.OK {
			accepted = c
		}
	}
	unresolved := func(c Condition) {
		if resolved.OK {
			resolved = c
		}
	}
	if len(rt.Spec.Hostnames) > 0 {
		refuse(bad(gatewayv1.RouteReasonUnsupportedValue, "hostnames are not supported on routes whose parent is a Service"))
	}
	if len(rt.Spec.Rules) == 0 {
		refuse(bad(gatewayv1.RouteReasonUnsupportedValue, "the route has no rules"))
	}
	for ri, r := range rt.Spec.Rules {
		where := "rule " + strconv.Itoa(ri)
		if r.Name != nil {
			where += " (" + string(*r.Name) + ")"
		}
		for _, f := range r.Filters {
			refuse(bad(gatewayv1.RouteReasonUnsupportedValue, "%s: filter %s is not supported: proxyless gRPC clients cannot apply it", where, f.Type))
		}
		if r.SessionPersistence != nil {
			refuse(bad(gatewayv1.RouteReasonUnsupportedValue, "%s: sessionPersistence is not supported by proxyless gRPC clients", where))
		}
		var backends []xds.WeightedBackend
		var total int64
		for bi, b := range r.BackendRefs {
			bwhere := fmt.Sprintf("%s, backendRef %d (%s)", where, bi, b.Name)
			for _, f := range b.Filters {
				refuse(bad(gatewayv1.RouteReasonUnsupportedValue, "%s: filter %s is not supported: proxyless gRPC clients cannot apply it", bwhere, f.Type))
			}
			if !isService(b.Group, b.Kind, "", "Service") {
				unresolved(bad(gatewayv1.RouteReasonInvalidKind, "%s: only core Services can be backends", bwhere))
				continue
			}
			if b.Namespace != nil && string(*b.Namespace) != rt.Namespace {
				unresolved(bad(gatewayv1.RouteReasonRefNotPermitted, "%s: backends in other namespaces (ReferenceGrant) are not supported", bwhere))
				continue
			}
			if b.Port == nil {
				unresolved(bad(gatewayv1.RouteReasonUnsupportedValue, "%s: a Service backend needs a port", bwhere))
				continue
			}
			key, found := svcs.byNumber(rt.Namespace, string(b.Name), *b.Port)
			if !found {
				unresolved(bad(gatewayv1.RouteReasonBackendNotFound,
					"%s: Service %s/%s port %d not found, or not served by spread xds (annotate it spread.dev/xds: \"true\")",
					bwhere, rt.Namespace, b.Name, *b.Port))
				continue
			}
			w := int32(1)
			if b.Weight != nil {
				w = *b.Weight
			}
			if w < 0 {
				refuse(bad(gatewayv1.RouteReasonUnsupportedValue, "%s: negative weight %d", bwhere, w))
				continue
			}
			total += int64(w)
			backends = append(backends, xds.WeightedBackend{Key: key, Weight: uint32(w)})
		}
		if len(r.BackendRefs) == 0 {
			refuse(bad(gatewayv1.RouteReasonUnsupportedValue, "%s: no backendRefs: proxyless gRPC clients cannot fail calls by route", where))
		} else if total == 0 && len(backends) == len(r.BackendRefs) {
			refuse(bad(gatewayv1.RouteReasonUnsupportedValue, "%s: every backendRef has weight 0: proxyless gRPC clients cannot fail calls by route", where))
		}
		matches := r.Matches
		if len(matches) == 0 {
			matches = []gatewayv1.GRPCRouteMatch{{}} // no matches: every call
		}
		for mi, m := range matches {
			rm, err := translateMatch(m)
			if err != nil {
				refuse(bad(gatewayv1.RouteReasonUnsupportedValue, "%s, match %d: %v", where, mi, err))
				continue
			}
			t.Rules = append(t.Rules, Rule{RouteRule: xds.RouteRule{Match: rm, Backends: backends}, RuleIndex: ri, MatchIndex: mi})
		}
	}

	for _, ref := range rt.Spec.ParentRefs {
		if !isService(ref.Group, ref.Kind, gatewayv1.GroupName, "Gateway") {
			continue // a Gateway, or another kind: not spread's
		}
		ns := rt.Namespace
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		ports := svcs.ports(ns, string(ref.Name))
		if len(ports) == 0 {
			continue // a Service spread xds does not serve: another mesh's, or none
		}
		p := Parent{Ref: ref, Accepted: accepted, ResolvedRefs: resolved}
		switch {
		case ns != rt.Namespace:
			p.Accepted = bad(gatewayv1.RouteReasonUnsupportedValue,
				"consumer routes (route namespace %s, Service namespace %s) are not supported: only routes in the Service's namespace", rt.Namespace, ns)
		case ref.Port != nil:
			k, found := svcs.byNumber(ns, string(ref.Name), *ref.Port)
			if !found {
				p.Accepted = bad(gatewayv1.RouteReasonNoMatchingParent, "Service %s/%s has no served port %d", ns, ref.Name, *ref.Port)
			} else {
				p.Keys = []endpoint.Key{k}
			}
		case ref.SectionName != nil:
			for _, svc := range ports {
				if svc.Key.Port == string(*ref.SectionName) {
					p.Keys = append(p.Keys, svc.Key)
				}
			}
			if len(p.Keys) == 0 {
				p.Accepted = bad(gatewayv1.RouteReasonNoMatchingParent, "Service %s/%s has no served port named %s", ns, ref.Name, *ref.SectionName)
			}
		default:
			for _, svc := range ports {
				p.Keys = append(p.Keys, svc.Key)
			}
		}
		t.Parents = append(t.Parents, p)
	}
	return t
}

// translateMatch turns one GRPCRouteMatch into a RouteMatch.
func translateMatch(m gatewayv1.GRPCRouteMatch) (xds.RouteMatch, error) {
	var rm xds.RouteMatch
	if mm := m.Method; mm != nil {
		if mm.Service != nil {
			rm.Service = *mm.Service
		}
		if mm.Method != nil {
			rm.Method = *mm.Method
		}
		typ := gatewayv1.GRPCMethodMatchExact
		if mm.Type != nil {
			typ = *mm.Type
		}
		switch typ {
		case gatewayv1.GRPCMethodMatchExact:
			if strings.Contains(rm.Service, "/") || strings.Contains(rm.Method, "/") {
				return rm, fmt.Errorf("service %q / method %q contain '/'", rm.Service, rm.Method)
			}
		case gatewayv1.GRPCMethodMatchRegularExpression:
			rm.Regex = true
			for _, e := range []string{rm.Service, rm.Method} {
				if _, err := regexp.Compile(e); err != nil {
					return rm, fmt.Errorf("regular expression %q: %v", e, err)
				}
			}
		default:
			return rm, fmt.Errorf("method match type %q is not supported", typ)
		}
	}
	for _, h := range m.Headers {
		name := strings.ToLower(string(h.Name))
		if strings.HasPrefix(name, "grpc-") || strings.HasSuffix(name, "-bin") || strings.HasPrefix(name, ":") {
			return rm, fmt.Errorf("header %q cannot be matched by gRPC routes (grpc-, -bin and pseudo-headers are not visible to them)", h.Name)
		}
		hm := xds.HeaderMatch{Name: name, Value: h.Value}
		typ := gatewayv1.GRPCHeaderMatchExact
		if h.Type != nil {
			typ = *h.Type
		}
		switch typ {
		case gatewayv1.GRPCHeaderMatchExact:
		case gatewayv1.GRPCHeaderMatchRegularExpression:
			hm.Regex = true
			if _, err := regexp.Compile(h.Value); err != nil {
				return rm, fmt.Errorf("header %q: regular expression %q: %v", h.Name, h.Value, err)
			}
		default:
			return rm, fmt.Errorf("header match type %q is not supported", typ)
		}
		rm.Headers = append(rm.Headers, hm)
	}
	return rm, nil
}

// sameMatch reports whether two matches select exactly the same calls (header order aside).
func sameMatch(a, b xds.RouteMatch) bool {
	if a.Service != b.Service || a.Method != b.Method || a.Regex != b.Regex || len(a.Headers) != len(b.Headers) {
		return false
	}
	sorted := func(h []xds.HeaderMatch) []xds.HeaderMatch {
		h = slices.Clone(h)
		slices.SortFunc(h, func(x, y xds.HeaderMatch) int {
			return cmp.Or(cmp.Compare(x.Name, y.Name), cmp.Compare(x.Value, y.Value), cmpBool(x.Regex, y.Regex))
		})
		return h
	}
	return slices.Equal(sorted(a.Headers), sorted(b.Headers))
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	default:
		return -1
	}
}

// older orders routes by the Gateway API's tie-break: creation time, then namespace/name.
func older(a, b Translation) int {
	return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.Route.String(), b.Route.String()))
}

// Merge combines the routes to apply (valid translations) into each Service port's rules,
// ordered by the Gateway API's precedence: more characters of service, then of method, then
// more header matches, then the older route, then rule and match order. A route that
// matches exactly what an older route attached to the same Service port matches is left out
// whole and reported in conflicts (route → message). It is a pure function.
func Merge(ts []Translation) (rules map[endpoint.Key][]xds.RouteRule, conflicts map[types.NamespacedName]string) {
	ts = slices.Clone(ts)
	slices.SortFunc(ts, older)
	type entry struct {
		rule  Rule
		route int // index into ts: precedence among routes
	}
	byKey := map[endpoint.Key][]entry{}
	owner := map[endpoint.Key][]types.NamespacedName{}
	conflicts = map[types.NamespacedName]string{}
	for i, t := range ts {
		keys := map[endpoint.Key]bool{}
		for _, p := range t.Parents {
			for _, k := range p.Keys {
				keys[k] = true
			}
		}
		conflict := ""
	check:
		for k := range keys {
			for j, e := range byKey[k] {
				for _, r := range t.Rules {
					if sameMatch(e.rule.Match, r.Match) {
						conflict = fmt.Sprintf("matches what the older route %s already matches on Service port %s", owner[k][j], k)
						break check
					}
				}
			}
		}
		if conflict != "" {
			conflicts[t.Route] = conflict
			continue
		}
		for k := range keys {
			for _, r := range t.Rules {
				byKey[k] = append(byKey[k], entry{rule: r, route: i})
				owner[k] = append(owner[k], t.Route)
			}
		}
	}
	rules = map[endpoint.Key][]xds.RouteRule{}
	for k, es := range byKey {
		slices.SortStableFunc(es, func(a, b entry) int {
			am, bm := a.rule.Match, b.rule.Match
			return cmp.Or(
				-cmp.Compare(len(am.Service), len(bm.Service)),
				-cmp.Compare(len(am.Method), len(bm.Method)),
				-cmp.Compare(len(am.Headers), len(bm.Headers)),
				cmp.Compare(a.route, b.route),
				cmp.Compare(a.rule.RuleIndex, b.rule.RuleIndex),
				cmp.Compare(a.rule.MatchIndex, b.rule.MatchIndex),
			)
		})
		out := make([]xds.RouteRule, len(es))
		for i, e := range es {
			out[i] = e.rule.RouteRule
		}
		rules[k] = out
	}
	return rules, conflicts
}
