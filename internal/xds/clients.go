package xds

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// ClientStatus is one connected xDS client (one ADS stream) as the control plane sees it:
// who it is, and per resource type what was sent to it and what it accepted or rejected.
type ClientStatus struct {
	// Stream numbers the ADS stream within this process.
	Stream int64 `json:"stream"`
	// NodeID, Zone and UserAgent come from the client's bootstrap node and its library
	// (e.g. "gRPC Go 1.85.0", "gRPC Node Pure JS 1.14.7", "gRPC Python 1.51.1").
	NodeID    string    `json:"node_id"`
	Zone      string    `json:"zone,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	Connected time.Time `json:"connected"`
	// Types is keyed by short type name: listener, route, cluster, endpoint.
	Types map[string]TypeStatus `json:"types"`
}

// TypeStatus is what one client was sent and answered for one resource type.
//
// The client is up to date when Acked == Sent; it is waiting to answer when they differ and
// Nacked is empty; it rejected the latest response when Nacked is set (until it ACKs again).
type TypeStatus struct {
	// Resources are the names it subscribes to (none: a wildcard subscription).
	Resources []string `json:"resources,omitempty"`
	// Sent is the version of the last response sent, at SentAt.
	Sent   string    `json:"sent,omitempty"`
	SentAt time.Time `json:"sent_at,omitzero"`
	// Acked is the last version the client accepted, at AckedAt.
	Acked   string    `json:"acked,omitempty"`
	AckedAt time.Time `json:"acked_at,omitzero"`
	// Nacked is the version of the response the client rejected, with its error text, at
	// NackedAt; cleared when the client next ACKs.
	Nacked   string    `json:"nacked,omitempty"`
	Error    string    `json:"error,omitempty"`
	NackedAt time.Time `json:"nacked_at,omitzero"`
	// Nacks counts the rejections on this stream.
	Nacks int `json:"nacks"`
}

// Nack is a rejection standing now: a client NACKed a response and has not ACKed since.
type Nack struct {
	Stream    int64     `json:"stream"`
	NodeID    string    `json:"node_id"`
	Zone      string    `json:"zone,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	Type      string    `json:"type"`
	Version   string    `json:"version"`
	Resources []string  `json:"resources,omitempty"`
	Error     string    `json:"error"`
	Since     time.Time `json:"since"`
}

// clientTracker records ClientStatus per ADS stream, from the stream callbacks. It is safe
// for concurrent use. A stream's record is dropped when the stream closes.
type clientTracker struct {
	now func() time.Time

	mu      sync.Mutex
	clients map[int64]*trackedClient
	nacking map[string]int // by type: clients with a standing rejection (kept as requests come, not counted per request)
}

type trackedClient struct {
	status ClientStatus
	sent   map[string][]sentResponse // by type: the last few responses, newest last
}

type sentResponse struct{ nonce, version string }

// keepSent bounds how many recent responses per type a NACK can be matched against (a
// client answers the newest; older nonces only arrive from a client still catching up).
const keepSent = 4

func newClientTracker(now func() time.Time) *clientTracker {
	return &clientTracker{now: now, clients: map[int64]*trackedClient{}, nacking: map[string]int{}}
}

func (c *clientTracker) open(stream int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clients[stream] = &trackedClient{
		status: ClientStatus{Stream: stream, Connected: c.now(), Types: map[string]TypeStatus{}},
		sent:   map[string][]sentResponse{},
	}
}

func (c *clientTracker) closed(stream int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tc, ok := c.clients[stream]; ok {
		for t, ts := range tc.status.Types {
			if standing(ts) {
				c.nacking[t]--
			}
		}
	}
	delete(c.clients, stream)
}

// standing reports whether ts holds a rejection the client has not ACKed since.
func standing(ts TypeStatus) bool { return ts.Error != "" || !ts.NackedAt.IsZero() }

// request records a discovery request and returns the NACK it carries, if it is one.
func (c *clientTracker) request(stream int64, req *discoveryv3.DiscoveryRequest) (Nack, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tc, ok := c.clients[stream]
	if !ok {
		return Nack{}, false
	}
	if n := req.GetNode(); n != nil && tc.status.NodeID == "" {
		tc.status.NodeID, tc.status.Zone, tc.status.UserAgent = n.GetId(), n.GetLocality().GetZone(), userAgent(n)
	}
	t := shortType(req.GetTypeUrl())
	ts := tc.status.Types[t]
	ts.Resources = slices.Sorted(slices.Values(req.GetResourceNames()))
	now := c.now()
	var nack Nack
	isNack := false
	switch {
	case req.GetErrorDetail() != nil:
		ts.Nacks++
		ts.Nacked = tc.versionOf(t, req.GetResponseNonce())
		ts.Error = req.GetErrorDetail().GetMessage()
		ts.NackedAt = now
		nack = Nack{Stream: stream, NodeID: tc.status.NodeID, Zone: tc.status.Zone, UserAgent: tc.status.UserAgent,
			Type: t, Version: ts.Nacked, Resources: ts.Resources, Error: ts.Error, Since: now}
		isNack = true
	case req.GetResponseNonce() != "":
		ts.Acked, ts.AckedAt = req.GetVersionInfo(), now
		ts.Nacked, ts.Error, ts.NackedAt = "", "", time.Time{}
	case req.GetVersionInfo() != "":
		// A first request on a new stream carrying the version the client already has
		// (from an earlier stream): it holds that version.
		ts.Acked = req.GetVersionInfo()
	}
	if was, is := standing(tc.status.Types[t]), standing(ts); was != is {
		if is {
			c.nacking[t]++
		} else {
			c.nacking[t]--
		}
	}
	tc.status.Types[t] = ts
	return nack, isNack
}

// versionOf returns the version of the response sent with nonce ("" if not among the last
// keepSent responses of type t).
func (tc *trackedClient) versionOf(t, nonce string) string {
	for _, s := range slices.Backward(tc.sent[t]) {
		if s.nonce == nonce {
			return s.version
		}
	}
	return ""
}

// response records a response sent.
func (c *clientTracker) response(stream int64, resp *discoveryv3.DiscoveryResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tc, ok := c.clients[stream]
	if !ok {
		return
	}
	t := shortType(resp.GetTypeUrl())
	ts := tc.status.Types[t]
	ts.Sent, ts.SentAt = resp.GetVersionInfo(), c.now()
	tc.status.Types[t] = ts
	s := append(tc.sent[t], sentResponse{nonce: resp.GetNonce(), version: resp.GetVersionInfo()})
	if len(s) > keepSent {
		s = slices.Delete(s, 0, len(s)-keepSent)
	}
	tc.sent[t] = s
}

// list returns every client, by stream number, as copies.
func (c *clientTracker) list() []ClientStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]ClientStatus, 0, len(c.clients))
	for _, tc := range c.clients {
		s := tc.status
		s.Types = maps.Clone(s.Types)
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b ClientStatus) int { return cmp.Compare(a.Stream, b.Stream) })
	return out
}

// nacks returns the rejections standing now, by stream and type.
func (c *clientTracker) nacks() []Nack {
	var out []Nack
	for _, s := range c.list() {
		for _, t := range slices.Sorted(maps.Keys(s.Types)) {
			ts := s.Types[t]
			if !standing(ts) {
				continue
			}
			out = append(out, Nack{Stream: s.Stream, NodeID: s.NodeID, Zone: s.Zone, UserAgent: s.UserAgent,
				Type: t, Version: ts.Nacked, Resources: ts.Resources, Error: ts.Error, Since: ts.NackedAt})
		}
	}
	return out
}

// nackingByType counts the clients with a standing rejection, by type. It is called on
// every ACK, so it reads counts kept up to date by request and closed instead of walking
// every client (with 2,000 streams that walk, under the lock, per request was most of a
// push's time).
func (c *clientTracker) nackingByType() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.nacking)
}

func userAgent(n *corev3.Node) string {
	ua := n.GetUserAgentName()
	if v := n.GetUserAgentVersion(); v != "" {
		ua += " " + v
	}
	return ua
}

// Clients returns every connected client (ADS stream) with what it was sent and what it
// accepted or rejected, by stream number.
func (s *Server) Clients() []ClientStatus { return s.clients.list() }

// Nacks returns the rejections standing now: responses a client NACKed and has not ACKed
// a later one since (a closed stream takes its rejections with it).
func (s *Server) Nacks() []Nack { return s.clients.nacks() }
