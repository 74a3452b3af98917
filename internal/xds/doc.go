// Package xds is Spread's proxyless xDS control plane: an ADS server (on
// envoyproxy/go-control-plane) that feeds grpc-go `xds:///` clients from the endpoint model.
//
// For every Service port it is told about, it serves the four resources a proxyless grpc-go
// client needs, all named after the endpoint key "<service>.<namespace>:<port>":
//
//	Listener              "<svc>.<ns>:<port>"  API listener, HttpConnectionManager → RDS, router filter
//	RouteConfiguration    "<svc>.<ns>:<port>"  one virtual host "*", prefix "/" → the cluster
//	Cluster               "<svc>.<ns>:<port>"  EDS over ADS, load_balancing_policy from annotations
//	ClusterLoadAssignment "<svc>.<ns>:<port>"  one locality per zone, explicit non-zero weights
//
// so a client dials "xds:///<svc>.<ns>:<port>". Sources are reached only through two small
// interfaces declared here (EndpointSource, ServiceSource). Snapshots are versioned
// monotonically, validated by this package's own consistency check (go-control-plane's
// Snapshot.Consistent does not follow RDS names inside an api_listener), and kept per client
// zone, so that a client's own zone can be preferred (priority 0) with spill-over to the
// others. A Service whose annotations are malformed keeps its last good configuration; the
// error is logged and counted, and no other Service is affected.
package xds
