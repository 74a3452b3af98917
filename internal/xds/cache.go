package xds

import (
	"context"
	"errors"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// zoneCache is a state-of-the-world xDS cache keyed by client zone, serving go-control-plane's
// sotw server. Unlike go-control-plane's SnapshotCache, which marshals every resource again
// for every response (a 5,000-endpoint assignment pushed to 500 clients spent most of its
// time in proto.Marshal), it holds each resource marshaled once, and every response shares
// those bytes.
//
// Versions are content hashes, the same in every replica. A request naming the current
// version on a fresh stream (a client that moved from another replica, or reconnected after
// a restart) is not answered again. A request naming a version this cache never had is held
// for up to hold (the client is ahead of this replica, which will reach that version and
// then answer under it; or it holds a state from before this process), so a lagging replica
// never moves a client back to an older configuration.
type zoneCache struct {
	hash func(*corev3.Node) string
	hold time.Duration

	mu      sync.Mutex
	snaps   map[string]map[string]*typeSnapshot // key → type URL → resources
	seen    map[string]map[string]*versionLog   // key → type URL → versions this cache had
	watches map[string]map[int64]*sotwWatch     // key → watch id → watch
	nextID  int64
}

// versionLog remembers the last maxSeenVersions versions of one type.
type versionLog struct {
	has   map[string]bool
	order []string
}

const maxSeenVersions = 256

func (l *versionLog) add(v string) {
	if l.has[v] {
		return
	}
	l.has[v] = true
	l.order = append(l.order, v)
	if len(l.order) > maxSeenVersions {
		delete(l.has, l.order[0])
		l.order = l.order[1:]
	}
}

type typeSnapshot struct {
	version   string
	resources map[string]*anypb.Any
}

type sotwWatch struct {
	req *cachev3.Request
	sub cachev3.Subscription
	out chan cachev3.Response
	// held: the client named a version this cache never had; only the timer answers it,
	// unless the snapshot reaches the client's version (then it is an ordinary watch).
	held  bool
	timer *time.Timer
}

var _ cachev3.Cache = (*zoneCache)(nil)

func newZoneCache(hash func(*corev3.Node) string, hold time.Duration) *zoneCache {
	return &zoneCache{hash: hash, hold: hold, snaps: map[string]map[string]*typeSnapshot{},
		seen: map[string]map[string]*versionLog{}, watches: map[string]map[int64]*sotwWatch{}}
}

// set replaces the snapshot of key and answers the waiting watches whose type changed.
func (c *zoneCache) set(key string, snap map[string]*typeSnapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.snaps[key] = snap
	if c.seen[key] == nil {
		c.seen[key] = map[string]*versionLog{}
	}
	for url, ts := range snap {
		l := c.seen[key][url]
		if l == nil {
			l = &versionLog{has: map[string]bool{}}
			c.seen[key][url] = l
		}
		l.add(ts.version)
	}
	for id, w := range c.watches[key] {
		ts := snap[w.req.GetTypeUrl()]
		if ts == nil {
			continue
		}
		if ts.version == w.req.GetVersionInfo() {
			if w.held { // caught up with the client: no older state reaches it
				w.held = false
				w.timer.Stop()
				// Same rules as an unheld watch: the first request of a stream is answered
				// (under the client's own version), so a client that reconnected with a new
				// subscription, or that dropped its resources (shouldRespond), is not left
				// waiting for the next change.
				if shouldRespond(w.req, w.sub, ts) {
					w.out <- respond(w.req, w.sub, ts)
					delete(c.watches[key], id)
				}
			}
			continue
		}
		if w.held || w.req.GetErrorDetail() != nil && rejected(w.sub.ReturnedResources(), ts.version) {
			continue
		}
		if c.hold > 0 && c.unknownLocked(key, w.req) { // parked before this cache had a snapshot
			c.holdLocked(key, id, w)
			continue
		}
		// The server gives every watch a channel with room for its one response.
		w.out <- respond(w.req, w.sub, ts)
		delete(c.watches[key], id)
	}
}

// CreateWatch answers at once when the client lacks the current version (or a resource it
// newly subscribed to), holds a request for a version this cache never had (see zoneCache),
// and otherwise parks the watch until set changes its type.
func (c *zoneCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	key := c.hash(req.GetNode())
	c.mu.Lock()
	defer c.mu.Unlock()
	w := &sotwWatch{req: req, sub: sub, out: out}
	ts := c.snaps[key][req.GetTypeUrl()]
	hold := ts != nil && c.hold > 0 && c.unknownLocked(key, req)
	if ts != nil && !hold && shouldRespond(req, sub, ts) {
		out <- respond(req, sub, ts)
		return func() {}, nil
	}
	c.nextID++
	id := c.nextID
	if c.watches[key] == nil {
		c.watches[key] = map[int64]*sotwWatch{}
	}
	c.watches[key][id] = w
	if hold {
		c.holdLocked(key, id, w)
	}
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if w.timer != nil {
			w.timer.Stop()
		}
		delete(c.watches[key], id)
	}, nil
}

// holdLocked holds watch id until the snapshot reaches its version (set) or hold passes;
// then it answers with the snapshot current at that time.
func (c *zoneCache) holdLocked(key string, id int64, w *sotwWatch) {
	w.held = true
	w.timer = time.AfterFunc(c.hold, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.watches[key][id] != w || !w.held {
			return
		}
		delete(c.watches[key], id)
		if ts := c.snaps[key][w.req.GetTypeUrl()]; ts != nil {
			w.out <- respond(w.req, w.sub, ts)
		}
	})
}

// unknownLocked reports whether req names a version this cache never had for its type.
func (c *zoneCache) unknownLocked(key string, req *cachev3.Request) bool {
	v := req.GetVersionInfo()
	if v == "" {
		return false
	}
	l := c.seen[key][req.GetTypeUrl()]
	return l == nil || !l.has[v]
}

func shouldRespond(req *cachev3.Request, sub cachev3.Subscription, ts *typeSnapshot) bool {
	known := sub.ReturnedResources()
	if req.GetVersionInfo() != ts.version && !(req.GetErrorDetail() != nil && rejected(known, ts.version)) {
		return true
	}
	if req.GetResponseNonce() == "" {
		// The first request of a type on a stream is always answered, even when it names
		// the current version: a client may keep a type's version while dropping the
		// resources themselves. grpc-js-xds ends its ADS stream when an idle channel
		// unsubscribes from everything, forgets the resources, keeps the versions, and on
		// leaving idle opens a new stream naming them: unanswered, its calls hang. (A
		// client moving between replicas with the current version gets identical bytes
		// under the same version, and ACKs them.)
		return true
	}
	if sub.IsWildcard() {
		for n := range ts.resources {
			if _, ok := known[n]; !ok {
				return true
			}
		}
		return false
	}
	for n := range sub.SubscribedResources() {
		if _, ok := known[n]; !ok {
			if _, ok := ts.resources[n]; ok {
				return true
			}
		}
	}
	return false
}

// rejected reports whether a NACK (whose version_info is the client's last good version)
// rejected version itself: everything last returned on the stream carried it. Sending it
// again would only be rejected again, in a loop as fast as the client can answer, so the
// watch waits for the next version (or a change of subscription) instead.
func rejected(returned map[string]string, version string) bool {
	if len(returned) == 0 {
		return false
	}
	for _, v := range returned {
		if v != version {
			return false
		}
	}
	return true
}

func respond(req *cachev3.Request, sub cachev3.Subscription, ts *typeSnapshot) *response {
	r := &response{req: req, version: ts.version, returned: map[string]string{}}
	add := func(n string, a *anypb.Any) {
		r.resources = append(r.resources, a)
		r.returned[n] = ts.version
	}
	if sub.IsWildcard() {
		for n, a := range ts.resources {
			add(n, a)
		}
	} else {
		for n := range sub.SubscribedResources() {
			if a, ok := ts.resources[n]; ok {
				add(n, a)
			}
		}
	}
	return r
}

// CreateDeltaWatch refuses: grpc-go speaks state-of-the-world ADS.
func (c *zoneCache) CreateDeltaWatch(*cachev3.DeltaRequest, cachev3.Subscription, chan cachev3.DeltaResponse) (func(), error) {
	return nil, errors.New("delta xDS is not supported")
}

// Fetch refuses: no REST xDS.
func (c *zoneCache) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, errors.New("REST xDS is not supported")
}

// response is one sotw response over pre-marshaled resources. The Anys are shared between
// responses and never modified; each response gets its own DiscoveryResponse (the server
// writes the nonce into it).
type response struct {
	req       *cachev3.Request
	version   string
	resources []*anypb.Any
	returned  map[string]string
}

var _ cachev3.Response = (*response)(nil)

func (r *response) GetDiscoveryResponse() (*discoveryv3.DiscoveryResponse, error) {
	return &discoveryv3.DiscoveryResponse{VersionInfo: r.version, Resources: r.resources, TypeUrl: r.req.GetTypeUrl()}, nil
}
func (r *response) GetRequest() *discoveryv3.DiscoveryRequest { return r.req }
func (r *response) GetVersion() (string, error)               { return r.version, nil }
func (r *response) GetResponseVersion() string                { return r.version }
func (r *response) GetReturnedResources() map[string]string   { return r.returned }
func (r *response) GetContext() context.Context               { return context.Background() }
