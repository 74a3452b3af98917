package dnsrefresh

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseTarget: a target is refused or split into a non-empty host and a port from 1 to
// 65535, and never panics.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"be-srv-lb.default.svc.cluster.local:50051", "127.0.0.1", "[::1]:53", "::1", "[::1]", "host:",
		":80", "host:0", "host:65536", "a:b:c", "", "[", "]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		host, port, err := parseTarget(s)
		if err != nil {
			return
		}
		if host == "" || port == 0 {
			t.Fatalf("%q accepted as host %q port %d", s, host, port)
		}
		if strings.Contains(s, ":") && !strings.Contains(host, ":") && !strings.HasSuffix(s, ":"+strconv.Itoa(int(port))) {
			t.Fatalf("%q accepted as host %q port %d: port not the target's", s, host, port)
		}
	})
}
