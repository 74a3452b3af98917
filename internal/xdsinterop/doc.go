// Package xdsinterop holds the interop tests of Spread's xDS control plane: real clients of
// three gRPC implementations — grpc-go, Node's @grpc/grpc-js-xds (from the lockfile in
// examples/node) and gRPC C-core (Debian's python3-grpcio 1.51, which predates gRFC A52) —
// against `spread xds` fed by EndpointSlices on a real API server (internal/kubetest), and
// the Node example against `spread demo`'s control plane.
//
// The clients outside Go run as child processes speaking a line protocol (one JSON request
// per line, one JSON answer per line; see examples/node/client.js). Node's dependencies are
// installed by `make node-deps` into .cache/node/<lockfile hash> (or $SPREAD_NODE_MODULES);
// without them, or without python3-grpcio, the tests skip, and fail when
// SPREAD_REQUIRE_INTEROP=1 (as .ci/run sets).
//
// Only test code lives here.
package xdsinterop
