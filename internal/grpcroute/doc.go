// Package grpcroute turns Gateway API GRPCRoutes attached to Services (the GAMMA profile)
// into the xDS control plane's route model (xds.RouteRule), and reports back in each
// route's status.
//
// Three parts, kept apart:
//
//   - Translate and Merge (translate.go) are pure functions: one GRPCRoute against the
//     Service ports spread xds serves → a Translation (per-parent Accepted / ResolvedRefs
//     conditions and rules); the valid translations of all routes → each Service port's
//     ordered rules, by the Gateway API's precedence.
//   - Source (source.go) is an xds.ServiceSource wrapping another one: it watches routes
//     (a Kubernetes informer, or a fixed list read from a file for the demo), translates
//     them, keeps each route's last good translation applied while a newer generation is
//     invalid, and delivers the Services with their rules.
//   - The status writer (status.go) keeps the status.parents entries signed ControllerName
//     up to date, with observedGeneration, leaving other controllers' entries alone.
//
// What proxyless gRPC clients cannot do is refused in the status, never ignored: every
// GRPCRoute filter type (grpc-go and grpc-js apply none of RequestHeaderModifier,
// ResponseHeaderModifier, RequestMirror or ExtensionRef on a route), sessionPersistence,
// hostnames, rules without backends (calls cannot be failed by route), consumer routes
// and cross-namespace backends (no ReferenceGrant support).
package grpcroute
