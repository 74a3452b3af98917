package cluster

import (
	"net/url"
	"slices"
	"testing"
)

// FuzzParseQuery: the admin API's parameters are accepted only when they parse, are among
// those allowed, and are given once.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"replicas=5", "replicas=5&replicas=0", "replicas=5;x=1", "delay=200ms", "x=1", "", "%zz", "replicas"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := ParseQuery(raw, "replicas", "delay")
		if err != nil {
			return
		}
		if _, perr := url.ParseQuery(raw); perr != nil {
			t.Fatalf("%q accepted although it does not parse", raw)
		}
		for k, vs := range q {
			if !slices.Contains([]string{"replicas", "delay"}, k) || len(vs) != 1 {
				t.Fatalf("%q accepted with %q = %v", raw, k, vs)
			}
		}
	})
}
