package endpointslice

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/spread-grpc/spread/endpoint"
)

// Trim merges every slice of one Service into the endpoint set of one port. port is a port
// name ("grpc") or number ("50051"), as in endpoint.Key. It only reads the slices (they may be
// informer cache objects).
//
// Ports resolve per slice, because each slice carries its own port list:
//   - a name selects the slice port with that name;
//   - a number selects the slice port with that number; when no port has that number and the
//     slice has exactly one port, that one is used (a single-port Service whose port differs
//     from its targetPort: the slice holds the target port, the user knows the Service port).
//
// Only TCP ports of IPv4 and IPv6 slices count (FQDN slices are deprecated and skipped). Each
// endpoint contributes its first address, as the EndpointSlice API defines. Conditions follow
// the API documentation: a nil ready means ready, a nil serving takes ready's value, a nil
// terminating means not terminating.
func Trim(slices []*discoveryv1.EndpointSlice, port string) endpoint.Set {
	var eps []endpoint.Endpoint
	for _, sl := range slices {
		if sl == nil {
			continue
		}
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		p, ok := resolvePort(sl.Ports, port)
		if !ok {
			continue
		}
		for i := range sl.Endpoints {
			e := &sl.Endpoints[i]
			if len(e.Addresses) == 0 {
				continue
			}
			eps = append(eps, trimEndpoint(e, p))
		}
	}
	if len(eps) == 0 {
		return endpoint.Set{}
	}
	return endpoint.NewSet(eps)
}

func trimEndpoint(e *discoveryv1.Endpoint, port int32) endpoint.Endpoint {
	ready := e.Conditions.Ready == nil || *e.Conditions.Ready
	serving := ready
	if e.Conditions.Serving != nil {
		serving = *e.Conditions.Serving
	}
	out := endpoint.Endpoint{
		Address:     e.Addresses[0],
		Port:        port,
		Ready:       ready,
		Serving:     serving,
		Terminating: e.Conditions.Terminating != nil && *e.Conditions.Terminating,
	}
	if e.TargetRef != nil && (e.TargetRef.Kind == "Pod" || e.TargetRef.Kind == "") {
		out.Pod = e.TargetRef.Name
	}
	if e.NodeName != nil {
		out.Node = *e.NodeName
	}
	if e.Zone != nil {
		out.Zone = *e.Zone
	}
	return out
}

// resolvePort finds the endpoint port number for want (a port name or number) in one slice.
func resolvePort(ports []discoveryv1.EndpointPort, want string) (int32, bool) {
	num, err := strconv.ParseInt(want, 10, 32)
	isNum := err == nil && num > 0
	var tcp []discoveryv1.EndpointPort
	for _, p := range ports {
		if p.Port == nil || (p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP) {
			continue
		}
		tcp = append(tcp, p)
	}
	for _, p := range tcp {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if isNum && *p.Port == int32(num) || !isNum && name == want {
			return *p.Port, true
		}
	}
	if isNum && len(tcp) == 1 {
		return *tcp[0].Port, true
	}
	return 0, false
}
