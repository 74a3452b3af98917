// Package dnsrefresh is a gRPC name resolver for the scheme "dns+refresh" that keeps
// following DNS: it re-resolves a headless Service name on an interval, sooner when the
// records' TTL says so, and when gRPC loses a connection (ResolveNow), so that pods added after
// the client started get calls within seconds. grpc-go's own "dns" resolver reads DNS once and
// then only on connection loss, at most every 30 s, so new pods of a steady service never get
// traffic.
//
// Targets:
//
//	dns+refresh:///be-srv-lb.default.svc.cluster.local.:50051   servers of /etc/resolv.conf
//	dns+refresh://10.96.0.10:53/be-srv-lb.default.svc.cluster.local:50051   this DNS server
//
// It queries A and AAAA records with github.com/miekg/dns (UDP, TCP after truncation), so
// that it sees TTLs. With resolv.conf, its search domains and ndots apply as in the C library;
// a name with a trailing dot is looked up as written, which saves the search-domain queries.
//
// Guarantees:
//   - A failed lookup (timeout, network error, SERVFAIL) never removes addresses: the last
//     list stays, the error is logged and counted, and the lookup is retried with backoff.
//     Only a resolver that has no list yet reports the error to gRPC (ReportError), so that
//     calls fail with the DNS error rather than wait.
//   - An authoritative empty answer (NXDOMAIN, or NOERROR without records: a headless Service
//     scaled to zero) empties the list after WithEmptyThreshold answers in a row (default 2,
//     the second one asked after the min interval), so that calls fail fast instead of going
//     to pods that are gone, while a single spurious NXDOMAIN changes nothing.
//   - The list handed to gRPC is sorted and only handed over when it changes. The default
//     service config picks round_robin.
//   - Lookups of one target are at least the min interval apart, whatever asks for them.
//
// Use it for one client, without global state:
//
//	b, err := dnsrefresh.NewBuilder(dnsrefresh.WithInterval(5 * time.Second))
//	if err != nil { ... }
//	conn, err := grpc.NewClient("dns+refresh:///be-srv-lb.default.svc.cluster.local.:50051",
//		grpc.WithResolvers(b), grpc.WithTransportCredentials(creds))
//
// or call Register once from main to make the scheme known to every client of the process.
// Importing the package registers nothing.
package dnsrefresh
