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
		":80", "host:0", "host:65536", "a:b:c", "", "[", "]", "0:01"} {
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
		// The port is the target's own, read as a decimal number ("host:01" is port 1, as
		// net.LookupPort reads it).
		if i := strings.LastIndex(s, ":"); i >= 0 && !strings.Contains(host, ":") {
			if n, err := strconv.ParseUint(s[i+1:], 10, 16); err != nil || n != uint64(port) {
				t.Fatalf("%q accepted as host %q port %d: port not the target's", s, host, port)
			}
		}
	})
}
