package xds

import (
	"encoding/json"
	"net/http"
	"sync"
)

// Sync states of one resource type at one client, as `spread xds status` shows them (the
// states `istioctl proxy-status` uses, plus NACKED).
const (
	// StateSynced: the client ACKed the version this server serves it now.
	StateSynced = "SYNCED"
	// StateStale: the client holds another version: a response is in flight or unanswered,
	// or it has not been sent the current one yet.
	StateStale = "STALE"
	// StateNacked: the client rejected the latest response (Error says why) and keeps its
	// previous configuration.
	StateNacked = "NACKED"
	// StateNotSent: the client has not asked for this type.
	StateNotSent = "NOT SENT"
)

// ClientSync is one connected client (ADS stream) in the status view.
type ClientSync struct {
	NodeID    string `json:"node_id"`
	Zone      string `json:"zone,omitempty"`
	Peer      string `json:"peer,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
	Stream    int64  `json:"stream"`
	// Streams counts the ADS streams open now with this node id (several xDS clients in one
	// process, or a reconnect not yet noticed by the server).
	Streams int `json:"streams"`
	// Types: listener, route, cluster, endpoint.
	Types map[string]TypeSync `json:"types"`
}

// TypeSync is one resource type at one client.
type TypeSync struct {
	State string `json:"state"`
	// Current is the version this server serves the client now; Sent, Acked and Nacked are
	// the client's (see TypeStatus).
	Current string `json:"current"`
	Sent    string `json:"sent,omitempty"`
	Acked   string `json:"acked,omitempty"`
	Nacked  string `json:"nacked,omitempty"`
	Error   string `json:"error,omitempty"`
}

// peers remembers each ADS stream's peer address (from the stream context).
type peers struct {
	mu sync.Mutex
	m  map[int64]string
}

func (p *peers) set(id int64, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[int64]string{}
	}
	p.m[id] = addr
}

func (p *peers) drop(id int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, id)
}

func (p *peers) get(id int64) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[id]
}

// Status returns every connected client with, per resource type, its sync state against
// the version this server serves it now.
func (s *Server) Status() []ClientSync {
	versions := s.Versions()
	s.zonesMu.RLock()
	admitted := make(map[string]bool, len(s.admitted))
	for z := range s.admitted {
		admitted[z] = true
	}
	s.zonesMu.RUnlock()
	list := s.clients.list()
	perNode := map[string]int{}
	for _, c := range list {
		perNode[c.NodeID]++
	}
	out := make([]ClientSync, 0, len(list))
	for _, c := range list {
		key := ""
		if admitted[c.Zone] {
			key = c.Zone
		}
		cs := ClientSync{NodeID: c.NodeID, Zone: c.Zone, Peer: s.peers.get(c.Stream), UserAgent: c.UserAgent,
			Stream: c.Stream, Streams: perNode[c.NodeID], Types: map[string]TypeSync{}}
		for _, t := range []string{"listener", "route", "cluster", "endpoint"} {
			ts, asked := c.Types[t]
			st := TypeSync{Current: versions[key][t], Sent: ts.Sent, Acked: ts.Acked, Nacked: ts.Nacked, Error: ts.Error}
			switch {
			case !asked:
				st.State = StateNotSent
			case ts.Error != "" || !ts.NackedAt.IsZero():
				st.State = StateNacked
			case ts.Acked != "" && ts.Acked == st.Current:
				st.State = StateSynced
			default:
				st.State = StateStale
			}
			cs.Types[t] = st
		}
		out = append(out, cs)
	}
	return out
}

// StatusHandler serves Status as JSON (mount it at /debug/xds/clients).
func (s *Server) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.Status())
	})
}
