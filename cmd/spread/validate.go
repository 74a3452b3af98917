package main

import (
	"flag"
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

// Usage headers saying what each server exposes and how it is bounded (the README's
// "Security" section has the whole picture).
const (
	backendUsage = `spread backend [flags]: the echo gRPC backend (a pod).

Listens on every interface by default (--addr :50051, --admin-addr :9090), plaintext and
unauthenticated unless --tls-cert/--tls-key (and --tls-client-ca for mTLS) are given; the admin
port serves /metrics, /healthz and /readyz. Requests over 4 MiB, SayHelloStream over 100000
messages or over 16 MiB of echoed name in total, and resume_after beyond count are refused.`
	frontendUsage = `spread frontend [flags]: the HTTP frontend that calls the backends in every mode.

Listens on every interface by default (--addr :8081, --admin-addr :9091), plaintext and
unauthenticated: put it behind your ingress's authentication. Each server bounds header, read,
write and idle times and open connections.`
	demoUsage = `spread demo [flags]: a whole simulated cluster on loopback, with the frontend.

Every address must be loopback: the frontend and admin ports serve the cluster controls (scale,
kill, freeze) without authentication. They refuse cross-site requests and any Host but their own
addresses (DNS rebinding).`
	xdsUsage = `spread xds [flags]: the proxyless xDS control plane ('spread xds bootstrap -h' for clients).

Listens on every interface by default (ADS :18000, admin :9090), plaintext and unauthenticated
unless --tls-* are given. The admin port serves /metrics, /healthz, /readyz and /debug/xds
(every served Service's endpoints; --no-debug-xds turns it off).`
)

// setUsage prints header before fs's flags on -h.
func setUsage(fs *flag.FlagSet, e *env, header string) {
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, header)
		fmt.Fprintln(e.stderr)
		fs.PrintDefaults()
	}
}
