package kubernetes

import (
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"
)

type zoneKey struct{}

type podKey struct{}

// EndpointZone returns the topology zone the resolver attached to an endpoint ("" if unknown).
// Balancers see it on the endpoints of their resolver state.
func EndpointZone(e resolver.Endpoint) string { return stringAttr(e.Attributes, zoneKey{}) }

// EndpointPod returns the pod name the resolver attached to an endpoint ("" if unknown).
func EndpointPod(e resolver.Endpoint) string { return stringAttr(e.Attributes, podKey{}) }

// AddressZone returns the zone attached to an address of resolver.State.Addresses.
func AddressZone(a resolver.Address) string { return stringAttr(a.BalancerAttributes, zoneKey{}) }

// AddressPod returns the pod name attached to an address of resolver.State.Addresses.
func AddressPod(a resolver.Address) string { return stringAttr(a.BalancerAttributes, podKey{}) }

func stringAttr(a *attributes.Attributes, key any) string {
	s, _ := a.Value(key).(string) // Value is nil-safe
	return s
}
