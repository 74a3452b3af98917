package kubernetes

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc/resolver"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/spread-grpc/spread/endpoint"
)

// ParseTarget turns a gRPC target of this scheme into the Service port it names. Three forms
// are accepted:
//
//	kubernetes:///<service>.<namespace>:<port>   (also <service>.<namespace>.svc[.<cluster-domain>])
//	kubernetes:///<service>:<port>               (namespace "default"; a Builder uses its own default)
//	kubernetes://<namespace>/<service>:<port>
//
// <port> is a Service port name ("grpc", recommended) or number ("50051").
func ParseTarget(t resolver.Target) (endpoint.Key, error) {
	return parseTarget(t, "default")
}

func parseTarget(t resolver.Target, defaultNamespace string) (endpoint.Key, error) {
	bad := func(why string) (endpoint.Key, error) {
		return endpoint.Key{}, fmt.Errorf("kubernetes resolver: target %q: %s; want %s:///<service>.<namespace>:<port> or %s://<namespace>/<service>:<port>",
			t.URL.String(), why, Scheme, Scheme)
	}
	if t.URL.RawQuery != "" || t.URL.Fragment != "" || t.URL.User != nil {
		return bad("query, fragment and user info are not supported")
	}
	ep := t.Endpoint()
	var key endpoint.Key
	switch host := t.URL.Host; {
	case host == "" && ep != "":
		k, err := endpoint.ParseKey(ep)
		if err != nil {
			return bad("cannot parse " + strconv.Quote(ep))
		}
		key = k
		if svcHost, _, _ := strings.Cut(ep, ":"); !strings.Contains(svcHost, ".") {
			key.Namespace = defaultNamespace
		}
	case host != "" && ep != "":
		svc, port, ok := strings.Cut(ep, ":")
		if !ok {
			return bad("missing :<port>")
		}
		key = endpoint.Key{Namespace: host, Service: svc, Port: port}
	case host != "":
		return bad("the authority must be a namespace followed by /<service>:<port>")
	default:
		return bad("empty")
	}
	if key.Port == "" {
		return bad("missing :<port>")
	}
	if errs := validation.IsDNS1035Label(key.Service); len(errs) > 0 {
		return bad("service " + strconv.Quote(key.Service) + ": " + strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(key.Namespace); len(errs) > 0 {
		return bad("namespace " + strconv.Quote(key.Namespace) + ": " + strings.Join(errs, "; "))
	}
	if n, err := strconv.Atoi(key.Port); err == nil {
		if n < 1 || n > 65535 {
			return bad("port " + key.Port + " out of range")
		}
	} else if errs := validation.IsValidPortName(key.Port); len(errs) > 0 {
		return bad("port " + strconv.Quote(key.Port) + ": " + strings.Join(errs, "; "))
	}
	return key, nil
}
