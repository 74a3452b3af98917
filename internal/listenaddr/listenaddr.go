// Package listenaddr checks a command's listen-address flags before anything listens, so a
// typo is a usage error (exit 2) that names the flag instead of a failed net.Listen later.
package listenaddr

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Off is the value that turns an optional listener off.
const Off = "-"

// Check refuses a listen address that net.Listen would refuse only later: not host:port, a
// port outside 0-65535, a host that is neither an IP nor a DNS name. Off passes when
// allowOff is set. flag names the flag in the error (without its dashes).
func Check(flag, addr string, allowOff bool) error {
	if addr == Off && allowOff {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--%s %q: want host:port, like 127.0.0.1:8080 or :8080", flag, addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("--%s %q: port %q: want 0 to 65535", flag, addr, port)
	}
	if host != "" && !validHost(host) {
		return fmt.Errorf("--%s %q: host %q is neither an IP address nor a DNS name", flag, addr, host)
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
