package grpcroute

import (
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/xds"
)

var (
	keyBe   = endpoint.Key{Namespace: "default", Service: "be", Port: "grpc"}
	keyBeV2 = endpoint.Key{Namespace: "default", Service: "be-v2", Port: "grpc"}
	keyBeM  = endpoint.Key{Namespace: "default", Service: "be", Port: "metrics"}
	served  = IndexServices([]xds.Service{
		{Key: keyBe, Aliases: []string{"50051"}},
		{Key: keyBeM, Aliases: []string{"9090"}},
		{Key: keyBeV2, Aliases: []string{"50051"}},
		{Key: endpoint.Key{Namespace: "other", Service: "be", Port: "50051"}},
	})
)

func svcParent(name string) gatewayv1.ParentReference {
	return gatewayv1.ParentReference{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")), Name: gatewayv1.ObjectName(name)}
}

func backendRef(name string, port int32, weight *int32) gatewayv1.GRPCBackendRef {
	return gatewayv1.GRPCBackendRef{BackendRef: gatewayv1.BackendRef{
		BackendObjectReference: gatewayv1.BackendObjectReference{Name: gatewayv1.ObjectName(name), Port: ptr.To(gatewayv1.PortNumber(port))},
		Weight:                 weight,
	}}
}

func route(name string, parents []gatewayv1.ParentReference, rules ...gatewayv1.GRPCRouteRule) *gatewayv1.GRPCRoute {
	return &gatewayv1.GRPCRoute{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Generation: 3, UID: k8stypes.UID("uid-" + name)},
		Spec: gatewayv1.GRPCRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: parents},
			Rules:           rules,
		},
	}
}

func canary(w1, w2 int32) gatewayv1.GRPCRouteRule {
	return gatewayv1.GRPCRouteRule{BackendRefs: []gatewayv1.GRPCBackendRef{backendRef("be", 50051, ptr.To(w1)), backendRef("be-v2", 50051, ptr.To(w2))}}
}

func methodRule(typ gatewayv1.GRPCMethodMatchType, svc, method string, to string) gatewayv1.GRPCRouteRule {
	mm := &gatewayv1.GRPCMethodMatch{Type: ptr.To(typ)}
	if svc != "" {
		mm.Service = ptr.To(svc)
	}
	if method != "" {
		mm.Method = ptr.To(method)
	}
	return gatewayv1.GRPCRouteRule{
		Matches:     []gatewayv1.GRPCRouteMatch{{Method: mm}},
		BackendRefs: []gatewayv1.GRPCBackendRef{backendRef(to, 50051, nil)},
	}
}

func TestTranslate(t *testing.T) {
	both := []endpoint.Key{keyBe, keyBeM}
	okParent := func(ref gatewayv1.ParentReference, keys ...endpoint.Key) Parent {
		return Parent{Ref: ref, Keys: keys,
			Accepted:     Condition{OK: true, Reason: gatewayv1.RouteReasonAccepted, Message: "Accepted by spread xds"},
			ResolvedRefs: Condition{OK: true, Reason: gatewayv1.RouteReasonResolvedRefs, Message: "All backends resolved"}}
	}
	for _, tc := range []struct {
		name     string
		rt       *gatewayv1.GRPCRoute
		parents  []Parent // nil: only check reasons below
		accepted gatewayv1.RouteConditionReason
		resolved gatewayv1.RouteConditionReason
		msg      string // in the failing condition's message
		rules    []xds.RouteRule
	}{
		{
			name:    "canary 90/10 on every served port of the parent",
			rt:      route("canary", []gatewayv1.ParentReference{svcParent("be")}, canary(90, 10)),
			parents: []Parent{okParent(svcParent("be"), both...)},
			rules:   []xds.RouteRule{{Backends: []xds.WeightedBackend{{Key: keyBe, Weight: 90}, {Key: keyBeV2, Weight: 10}}}},
		},
		{
			name: "parent port picks one port; weight defaults to 1",
			rt: route("p", []gatewayv1.ParentReference{func() gatewayv1.ParentReference {
				p := svcParent("be")
				p.Port = ptr.To(gatewayv1.PortNumber(50051))
				return p
			}()}, gatewayv1.GRPCRouteRule{BackendRefs: []gatewayv1.GRPCBackendRef{backendRef("be-v2", 50051, nil)}}),
			accepted: gatewayv1.RouteReasonAccepted, resolved: gatewayv1.RouteReasonResolvedRefs,
			rules: []xds.RouteRule{{Backends: []xds.WeightedBackend{{Key: keyBeV2, Weight: 1}}}},
		},
		{
			name:     "method exact, service only, method only and regex",
			rt:       route("m", []gatewayv1.ParentReference{svcParent("be")}, methodRule(gatewayv1.GRPCMethodMatchExact, "echo.EchoServer", "SayHelloStream", "be-v2"), methodRule(gatewayv1.GRPCMethodMatchExact, "", "Ping", "be"), methodRule(gatewayv1.GRPCMethodMatchRegularExpression, "echo\\..*", "Say.*", "be")),
			accepted: gatewayv1.RouteReasonAccepted, resolved: gatewayv1.RouteReasonResolvedRefs,
			rules: []xds.RouteRule{
				{Match: xds.RouteMatch{Service: "echo.EchoServer", Method: "SayHelloStream"}, Backends: []xds.WeightedBackend{{Key: keyBeV2, Weight: 1}}},
				{Match: xds.RouteMatch{Method: "Ping"}, Backends: []xds.WeightedBackend{{Key: keyBe, Weight: 1}}},
				{Match: xds.RouteMatch{Service: "echo\\..*", Method: "Say.*", Regex: true}, Backends: []xds.WeightedBackend{{Key: keyBe, Weight: 1}}},
			},
		},
		{
			name: "header match, name lower-cased",
			rt: route("h", []gatewayv1.ParentReference{svcParent("be")}, gatewayv1.GRPCRouteRule{
				Matches: []gatewayv1.GRPCRouteMatch{{Headers: []gatewayv1.GRPCHeaderMatch{
					{Name: "X-Canary", Value: "yes"},
					{Type: ptr.To(gatewayv1.GRPCHeaderMatchRegularExpression), Name: "user", Value: "alice|bob"},
				}}},
				BackendRefs: []gatewayv1.GRPCBackendRef{backendRef("be-v2", 50051, nil)},
			}),
			accepted: gatewayv1.RouteReasonAccepted, resolved: gatewayv1.RouteReasonResolvedRefs,
			rules: []xds.RouteRule{{Match: xds.RouteMatch{Headers: []xds.HeaderMatch{{Name: "x-canary", Value: "yes"}, {Name: "user", Value: "alice|bob", Regex: true}}},
				Backends: []xds.WeightedBackend{{Key: keyBeV2, Weight: 1}}}},
		},
		{
			name:     "unknown backend",
			rt:       route("u", []gatewayv1.ParentReference{svcParent("be")}, gatewayv1.GRPCRouteRule{BackendRefs: []gatewayv1.GRPCBackendRef{backendRef("be-v3", 50051, nil)}}),
			accepted: gatewayv1.RouteReasonAccepted, resolved: gatewayv1.RouteReasonBackendNotFound, msg: "be-v3",
		},
		{
			name:     "backend port not served",
			rt:       route("u", []gatewayv1.ParentReference{svcParent("be")}, gatewayv1.GRPCRouteRule{BackendRefs: []gatewayv1.GRPCBackendRef{backendRef("be-v2", 1234, nil)}}),
			accepted: gatewayv1.RouteReasonAccepted, resolved: gatewayv1.RouteReasonBackendNotFound, msg: "port 1234",
		},
		{
			name: "backend of another kind",
			rt: route("k", []gatewayv1.ParentReference{svcParent("be")}, gatewayv1.GRPCRouteRule{BackendRefs: []gatewayv1.GRPCBackendRef{func() gatewayv1.GRPCBackendRef {
				b := backendRef("be-v2", 50051, nil)
				b.Group, b.Kind = ptr.To(gatewayv1.Group("example.com")), ptr.To(gatewayv1.Kind("Bucket"))
				return b
			}()}}),
			accepted: gatewayv1.RouteReasonAccepted, resolved: gatewayv1.RouteReasonInvalidKind,
		},
		{
			name: "backend in another namespace",
			rt: route("n", []gatewayv1.ParentReference{svcParent("be")}, gatewayv1.GRPCRouteRule{BackendRefs: []gatewayv1.GRPCBackendRef{func() gatewayv1.GRPCBackendRef {
				b := backendRef("be", 50051, nil)
				b.Namespace = ptr.To(gatewayv1.Namespace("other"))
				return b
			}()}}),
			accepted: gatewayv1.RouteReasonAccepted, resolved: gatewayv1.RouteReasonRefNotPermitted,
		},
		{
			name: "unsupported filter",
			rt: route("f", []gatewayv1.ParentReference{svcParent("be")}, func() gatewayv1.GRPCRouteRule {
				r := canary(90, 10)
				r.Filters = []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterRequestHeaderModifier, RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{}}}
				return r
			}()),
			accepted: gatewayv1.RouteReasonUnsupportedValue, resolved: gatewayv1.RouteReasonResolvedRefs, msg: "RequestHeaderModifier",
		},
		{
			name: "unsupported backend filter",
			rt: route("f", []gatewayv1.ParentReference{svcParent("be")}, func() gatewayv1.GRPCRouteRule {
				r := canary(90, 10)
				r.BackendRefs[1].Filters = []gatewayv1.GRPCRouteFilter{{Type: gatewayv1.GRPCRouteFilterRequestMirror}}
				return r
			}()),
			accepted: gatewayv1.RouteReasonUnsupportedValue, resolved: gatewayv1.RouteReasonResolvedRefs, msg: "RequestMirror",
		},
		{
			name:     "all weights zero",
			rt:       route("z", []gatewayv1.ParentReference{svcParent("be")}, canary(0, 0)),
			accepted: gatewayv1.RouteReasonUnsupportedValue, resolved: gatewayv1.RouteReasonResolvedRefs, msg: "weight 0",
		},
		{
			name:     "no backends",
			rt:       route("z", []gatewayv1.ParentReference{svcParent("be")}, gatewayv1.GRPCRouteRule{}),
			accepted: gatewayv1.RouteReasonUnsupportedValue, resolved: gatewayv1.RouteReasonResolvedRefs, msg: "no backendRefs",
		},
		{
			name: "hostnames",
			rt: func() *gatewayv1.GRPCRoute {
				r := route("h", []gatewayv1.ParentReference{svcParent("be")}, canary(1, 1))
				r.Spec.Hostnames = []gatewayv1.Hostname{"be.example"}
				return r
			}(),
			accepted: gatewayv1.RouteReasonUnsupportedValue, resolved: gatewayv1.RouteReasonResolvedRefs, msg: "hostnames",
		},
		{
			name:     "bad regex",
			rt:       route("r", []gatewayv1.ParentReference{svcParent("be")}, methodRule(gatewayv1.GRPCMethodMatchRegularExpression, "echo(", "", "be")),
			accepted: gatewayv1.RouteReasonUnsupportedValue, resolved: gatewayv1.RouteReasonResolvedRefs, msg: "regular expression",
		},
		{
			name: "grpc- header",
			rt: route("g", []gatewayv1.ParentReference{svcParent("be")}, gatewayv1.GRPCRouteRule{
				Matches:     []gatewayv1.GRPCRouteMatch{{Headers: []gatewayv1.GRPCHeaderMatch{{Name: "grpc-timeout", Value: "1S"}}}},
				BackendRefs: []gatewayv1.GRPCBackendRef{backendRef("be", 50051, nil)},
			}),
			accepted: gatewayv1.RouteReasonUnsupportedValue, resolved: gatewayv1.RouteReasonResolvedRefs, msg: "grpc-timeout",
		},
		{
			name: "parent port not served",
			rt: route("p", []gatewayv1.ParentReference{func() gatewayv1.ParentReference {
				p := svcParent("be")
				p.Port = ptr.To(gatewayv1.PortNumber(1))
				return p
			}()}, canary(1, 1)),
			accepted: gatewayv1.RouteReasonNoMatchingParent, resolved: gatewayv1.RouteReasonResolvedRefs,
		},
		{
			name: "consumer route",
			rt: route("c", []gatewayv1.ParentReference{func() gatewayv1.ParentReference {
				p := svcParent("be")
				p.Namespace = ptr.To(gatewayv1.Namespace("other"))
				return p
			}()}, canary(1, 1)),
			accepted: gatewayv1.RouteReasonUnsupportedValue, resolved: gatewayv1.RouteReasonResolvedRefs, msg: "consumer",
		},
		{
			name:    "a Gateway parent and an unserved Service are not ours",
			rt:      route("g", []gatewayv1.ParentReference{{Name: "gw"}, svcParent("frontend")}, canary(1, 1)),
			parents: []Parent{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Translate(tc.rt, served)
			if tc.parents != nil {
				if len(tc.parents) == 0 && len(got.Parents) == 0 {
					return
				}
				if !reflect.DeepEqual(got.Parents, tc.parents) {
					t.Fatalf("parents:\n got %+v\nwant %+v", got.Parents, tc.parents)
				}
			} else {
				if len(got.Parents) != 1 {
					t.Fatalf("%d parents, want 1: %+v", len(got.Parents), got.Parents)
				}
				p := got.Parents[0]
				if p.Accepted.Reason != tc.accepted || p.ResolvedRefs.Reason != tc.resolved {
					t.Fatalf("Accepted %s (%s), ResolvedRefs %s (%s); want %s, %s", p.Accepted.Reason, p.Accepted.Message, p.ResolvedRefs.Reason, p.ResolvedRefs.Message, tc.accepted, tc.resolved)
				}
				if p.Accepted.OK != (tc.accepted == gatewayv1.RouteReasonAccepted) || p.ResolvedRefs.OK != (tc.resolved == gatewayv1.RouteReasonResolvedRefs) {
					t.Fatalf("OK flags wrong: %+v", p)
				}
				if tc.msg != "" && !strings.Contains(p.Accepted.Message+p.ResolvedRefs.Message, tc.msg) {
					t.Fatalf("messages %q / %q lack %q", p.Accepted.Message, p.ResolvedRefs.Message, tc.msg)
				}
			}
			if wantValid := tc.rules != nil; got.Valid() != wantValid {
				t.Fatalf("Valid() = %v, want %v", got.Valid(), wantValid)
			}
			if tc.rules != nil {
				var rules []xds.RouteRule
				for _, r := range got.Rules {
					rules = append(rules, r.RouteRule)
				}
				if !reflect.DeepEqual(rules, tc.rules) {
					t.Fatalf("rules:\n got %+v\nwant %+v", rules, tc.rules)
				}
			}
		})
	}
}

func TestMergePrecedenceAndConflicts(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(rt *gatewayv1.GRPCRoute, d time.Duration) *gatewayv1.GRPCRoute {
		rt.CreationTimestamp = metav1.NewTime(t0.Add(d))
		return rt
	}
	parents := []gatewayv1.ParentReference{svcParent("be")}
	catchAll := Translate(at(route("a-catch-all", parents, canary(90, 10)), 0), served)
	methods := Translate(at(route("b-methods", parents,
		methodRule(gatewayv1.GRPCMethodMatchExact, "echo.EchoServer", "", "be"),
		methodRule(gatewayv1.GRPCMethodMatchExact, "echo.EchoServer", "SayHelloStream", "be-v2")), time.Second), served)
	dup := Translate(at(route("c-dup", parents, methodRule(gatewayv1.GRPCMethodMatchExact, "echo.EchoServer", "SayHelloStream", "be")), 2*time.Second), served)

	rules, conflicts := Merge([]Translation{dup, catchAll, methods})
	if len(conflicts) != 1 || !strings.Contains(conflicts[dup.Route], "b-methods") {
		t.Fatalf("conflicts %v, want c-dup conflicting with b-methods", conflicts)
	}
	got := rules[keyBe]
	want := []xds.RouteMatch{
		{Service: "echo.EchoServer", Method: "SayHelloStream"}, // longest service, then method
		{Service: "echo.EchoServer"},
		{}, // the catch-all last, although its route is older
	}
	if len(got) != len(want) {
		t.Fatalf("%d rules, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if !reflect.DeepEqual(got[i].Match, want[i]) {
			t.Fatalf("rule %d matches %+v, want %+v", i, got[i].Match, want[i])
		}
	}
	if got[0].Backends[0].Key != keyBeV2 {
		t.Fatalf("SayHelloStream goes to %v, want be-v2", got[0].Backends)
	}
	if !reflect.DeepEqual(rules[keyBeM], got) {
		t.Fatalf("the metrics port got other rules: %+v", rules[keyBeM])
	}
	if _, ok := rules[keyBeV2]; ok {
		t.Fatal("be-v2 is no parent but got rules")
	}
}
