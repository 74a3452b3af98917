package endpointslice

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/spread-grpc/spread/endpoint"
)

func port(name string, n int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(n), Protocol: ptr.To(corev1.ProtocolTCP)}
}

func slice(name, svc string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "ns",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
		Endpoints:   eps,
	}
}

func ep(addr string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{addr}}
}

func TestTrimConditions(t *testing.T) {
	pod := discoveryv1.Endpoint{
		Addresses: []string{"192.0.2.1", "192.0.2.99"},
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "be-1"},
		NodeName:  ptr.To("node-a"),
		Zone:      ptr.To("zone-a"),
	}
	for _, tc := range []struct {
		name       string
		conditions discoveryv1.EndpointConditions
		want       endpoint.Endpoint
	}{
		{"all nil: ready, serving, not terminating", discoveryv1.EndpointConditions{},
			endpoint.Endpoint{Ready: true, Serving: true}},
		{"not ready, serving nil follows ready", discoveryv1.EndpointConditions{Ready: ptr.To(false)},
			endpoint.Endpoint{}},
		{"terminating and serving", discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)},
			endpoint.Endpoint{Serving: true, Terminating: true}},
		{"terminating, not serving", discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false), Terminating: ptr.To(true)},
			endpoint.Endpoint{Terminating: true}},
	} {
		e := pod
		e.Conditions = tc.conditions
		got := Trim([]*discoveryv1.EndpointSlice{slice("s", "svc", []discoveryv1.EndpointPort{port("grpc", 8080)}, e)}, "grpc")
		want := tc.want
		want.Address, want.Port, want.Pod, want.Node, want.Zone = "192.0.2.1", 8080, "be-1", "node-a", "zone-a"
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s: Trim = %+v, want [%+v]", tc.name, got, want)
		}
	}
}

func TestTrimPorts(t *testing.T) {
	multi := []discoveryv1.EndpointPort{port("grpc", 8080), port("metrics", 9090)}
	single := []discoveryv1.EndpointPort{port("", 8080)}
	udp := []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolUDP)}}
	for _, tc := range []struct {
		name  string
		ports []discoveryv1.EndpointPort
		want  string
		port  int32 // 0: the slice contributes nothing
	}{
		{"by name", multi, "grpc", 8080},
		{"by other name", multi, "metrics", 9090},
		{"unknown name", multi, "http", 0},
		{"by number", multi, "9090", 9090},
		{"number not in a multi-port slice", multi, "80", 0},
		{"number of a single-port Service maps to its target port", single, "80", 8080},
		{"udp ignored", udp, "grpc", 0},
		{"no ports", nil, "grpc", 0},
	} {
		got := Trim([]*discoveryv1.EndpointSlice{slice("s", "svc", tc.ports, ep("192.0.2.1"))}, tc.want)
		switch {
		case tc.port == 0 && len(got) != 0:
			t.Errorf("%s: Trim = %v, want nothing", tc.name, got)
		case tc.port != 0 && (len(got) != 1 || got[0].Port != tc.port):
			t.Errorf("%s: Trim = %v, want port %d", tc.name, got, tc.port)
		}
	}
}

func TestTrimMergesSlicesEachWithItsOwnPorts(t *testing.T) {
	a := slice("a", "svc", []discoveryv1.EndpointPort{port("grpc", 8080)}, ep("192.0.2.2"), ep("192.0.2.1"))
	// A second slice of the same Service during a rollout: the port changed.
	b := slice("b", "svc", []discoveryv1.EndpointPort{port("grpc", 8081)}, ep("192.0.2.3"))
	fqdn := slice("c", "svc", []discoveryv1.EndpointPort{port("grpc", 8080)}, ep("backend.example"))
	fqdn.AddressType = discoveryv1.AddressTypeFQDN
	// An endpoint listed in two slices at once (a move between slices) counts once.
	dup := slice("d", "svc", []discoveryv1.EndpointPort{port("grpc", 8080)}, ep("192.0.2.1"))
	empty := slice("e", "svc", []discoveryv1.EndpointPort{port("grpc", 8080)}, discoveryv1.Endpoint{})

	got := Trim([]*discoveryv1.EndpointSlice{a, b, fqdn, dup, empty, nil}, "grpc").HostPorts()
	want := []string{"192.0.2.1:8080", "192.0.2.2:8080", "192.0.2.3:8081"}
	if !slices.Equal(got, want) {
		t.Fatalf("Trim = %v, want %v", got, want)
	}
	if got := Trim(nil, "grpc"); got == nil || len(got) != 0 {
		t.Fatalf("Trim(nil) = %#v, want an empty non-nil set", got)
	}
}
