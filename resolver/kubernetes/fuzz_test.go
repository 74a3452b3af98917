package kubernetes

import (
	"net/url"
	"strconv"
	"testing"

	"google.golang.org/grpc/resolver"
	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzParseTarget: whatever the target, ParseTarget either refuses it or returns a key whose
// Service and namespace are DNS labels and whose port is a valid number or name.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"kubernetes:///be-srv.default:grpc", "kubernetes:///be-srv:50051", "kubernetes://prod/be-srv:grpc",
		"kubernetes:///be-srv.default.svc.cluster.local:grpc", "kubernetes:///", "kubernetes://ns/", "kubernetes:///a:0",
		"kubernetes:///a:65536", "kubernetes:///A.b:grpc", "kubernetes:///a.b:grpc?x=1", "kubernetes://u@ns/a:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		key, err := ParseTarget(resolver.Target{URL: *u})
		if err != nil {
			return
		}
		if len(validation.IsDNS1035Label(key.Service)) > 0 || len(validation.IsDNS1123Label(key.Namespace)) > 0 {
			t.Fatalf("%q accepted as %+v: service or namespace not a DNS label", s, key)
		}
		if n, err := strconv.Atoi(key.Port); err == nil {
			if n < 1 || n > 65535 {
				t.Fatalf("%q accepted with port %d", s, n)
			}
		} else if len(validation.IsValidPortName(key.Port)) > 0 {
			t.Fatalf("%q accepted with port name %q", s, key.Port)
		}
	})
}
