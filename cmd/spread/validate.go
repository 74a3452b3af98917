package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// checkAddr refuses a listen address that net.Listen would refuse only later (exit 1): not
// host:port, a port outside 0-65535, a host that is neither an IP nor a DNS name. "-"
// (disabled) passes when allowOff is set.
func checkAddr(flag, addr string, allowOff bool) error {
	if addr == "-" && allowOff {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usageError{fmt.Errorf("--%s %q: want host:port, like 127.0.0.1:8080 or :8080", flag, addr)}
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return usageError{fmt.Errorf("--%s %q: port %q: want 0 to 65535", flag, addr, port)}
	}
	if host != "" && !validHost(host) {
		return usageError{fmt.Errorf("--%s %q: host %q is neither an IP address nor a DNS name", flag, addr, host)}
	}
	return nil
}

// validHost reports whether h is an IP address or a DNS name (letters, digits, '-', '.').
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}
