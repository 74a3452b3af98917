package endpoint

import "context"

// Source is a source of endpoint sets: it follows the endpoints of Service ports (Keys) and
// hands every change to its subscribers. It is the one contract between Spread's sources (the
// Kubernetes EndpointSlice watcher in package endpointslice, the demo's simulated cluster,
// test fakes such as endpointtest.Fake) and its consumers (the kubernetes resolver, the xDS
// control plane, the demo's DNS and VIP). Every implementation runs the conformance suite in
// package endpointtest, which checks each promise below.
//
// Subscribe follows key and calls fn with its endpoint sets:
//
//   - First set. The first call of fn carries the key's current set as of the source's first
//     sync (for Kubernetes: after the Service's EndpointSlices have been listed), possibly
//     empty; every later call carries a newer set, including the empty set when the last
//     endpoint leaves. Delivery may coalesce: a slow fn skips intermediate sets, but always
//     ends on the newest one. A set equal to the last delivered one may or may not be
//     delivered again.
//   - One goroutine. fn is called from one goroutine at a time, never concurrently with
//     itself, and must not modify the set (sets are shared between subscribers).
//   - Blocking until the first sync. Subscribe may block until the source has synced the
//     key, so that it can report a failure instead of waiting forever: it returns an error,
//     and no subscription (fn is never called), when the key cannot be followed — for
//     example Forbidden or Unauthorized from the first list, a key the source does not
//     have, a malformed key, a source already closed, or ctx done before the sync (ctx
//     already done when Subscribe is called is always an error). Errors after the first
//     sync are the source's to retry; the last known set stays current meanwhile.
//     A source that learns of a key only when it is first published (a test fake) may
//     return at once and deliver that first set later. Callers following several keys
//     should subscribe concurrently.
//   - Stopping. The subscription lasts until ctx is done or the source is closed. wait,
//     non-nil exactly when err is nil, blocks until delivery has stopped: after it returns,
//     fn is not called again. Call it after cancelling ctx.
//   - Close. A source that holds resources (watches, goroutines) has a Close method: it ends
//     every subscription (their wait returns) and makes later Subscribe calls fail.
//
// Subscribe may be called concurrently, any number of times, for the same or different keys.
type Source interface {
	Subscribe(ctx context.Context, key Key, fn func(Set)) (wait func(), err error)
}
