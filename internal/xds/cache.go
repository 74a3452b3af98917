package xds

import (
	"context"
	"errors"
	"sync"

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
type zoneCache struct {
	hash func(*corev3.Node) string

	mu      sync.Mutex
	snaps   map[string]map[string]*typeSnapshot // key → type URL → resources
	watches map[string]map[int64]*sotwWatch     // key → watch id → watch
	nextID  int64
}

type typeSnapshot struct {
	version   string
	resources map[string]*anypb.Any
}

type sotwWatch struct {
	req *cachev3.Request
	sub cachev3.Subscription
	out chan cachev3.Response
}

var _ cachev3.Cache = (*zoneCache)(nil)

func newZoneCache(hash func(*corev3.Node) string) *zoneCache {
	return &zoneCache{hash: hash, snaps: map[string]map[string]*typeSnapshot{}, watches: map[string]map[int64]*sotwWatch{}}
}

// set replaces the snapshot of key and answers the waiting watches whose type changed.
func (c *zoneCache) set(key string, snap map[string]*typeSnapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.snaps[key] = snap
	for id, w := range c.watches[key] {
		ts := snap[w.req.GetTypeUrl()]
		if ts == nil || ts.version == w.req.GetVersionInfo() {
			continue
		}
		// The server gives every watch a channel with room for its one response.
		w.out <- respond(w.req, w.sub, ts)
		delete(c.watches[key], id)
	}
}

// CreateWatch answers at once when the client lacks the current version (or a resource it
// newly subscribed to), and otherwise parks the watch until set changes its type.
func (c *zoneCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	key := c.hash(req.GetNode())
	c.mu.Lock()
	defer c.mu.Unlock()
	if ts := c.snaps[key][req.GetTypeUrl()]; ts != nil && shouldRespond(req, sub, ts) {
		out <- respond(req, sub, ts)
		return func() {}, nil
	}
	c.nextID++
	id := c.nextID
	if c.watches[key] == nil {
		c.watches[key] = map[int64]*sotwWatch{}
	}
	c.watches[key][id] = &sotwWatch{req: req, sub: sub, out: out}
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.watches[key], id)
	}, nil
}

func shouldRespond(req *cachev3.Request, sub cachev3.Subscription, ts *typeSnapshot) bool {
	if req.GetVersionInfo() != ts.version {
		return true
	}
	known := sub.ReturnedResources()
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
