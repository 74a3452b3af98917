// Package fairshare balances the clients you cannot change. Behind a ClusterIP Service every
// client holds one long-lived connection that kube-proxy placed at random, once: pods added
// later get nothing and tens of clients split lopsidedly by chance. A fairshare Server knows
// its fair share of the Service's connections and sheds the excess — gracefully, with a
// GOAWAY that lets in-flight calls finish, a few at a time, with jitter, busiest and oldest
// first — so that each client's reconnect through the VIP lands again at random, until the
// fleet is level. While some pod is below its share, a pod at its share also turns away new
// connections before they carry a call, so a moved client keeps looking until it finds room.
// It works for any client that reconnects on GOAWAY (grpc-go, grpc-java, grpc-js, C-core).
//
// grpc-go has no public way to send GOAWAY to one connection of a grpc.Server (only
// GracefulStop, for all of them, and MaxConnectionAge, on a timer for every connection).
// A fairshare Server therefore serves each accepted connection on its own grpc.Server,
// built by the caller's constructor with the same options and services, and sheds a
// connection with that server's GracefulStop: the supported, tested graceful close
// (GOAWAY, a ping, the final GOAWAY, in-flight calls finish). The cost is one grpc.Server
// (a few kilobytes, no extra goroutine while idle) per connection.
//
// The decision is a pure function (Decide) of the backend's own connections, its peers'
// counts and the time. Peers are the Service's other ready endpoints; each serves its count
// as JSON on its admin port (Server.Handler) and HTTPPeers asks them all every round, fed by
// any endpoint source (the Kubernetes EndpointSlice source, the demo's model).
package fairshare
