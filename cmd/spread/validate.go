package main

import (
	"flag"
	"fmt"
)

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
