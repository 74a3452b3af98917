package xds

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Dump is the JSON shape of /debug/xds.
type Dump struct {
	Instance string              `json:"instance"`
	Ready    bool                `json:"ready"`
	Services []ServiceDump       `json:"services"`
	Zones    map[string]ZoneDump `json:"zones"` // by client zone; "" = no zone preference
	// Nacks are the rejections standing now (listed until the client ACKs again).
	Nacks []Nack `json:"nacks"`
	// Clients are the connected ADS streams, with versions sent, ACKed and NACKed per type.
	Clients []ClientStatus `json:"clients"`
}

// ServiceDump is one Service's state in a Dump.
type ServiceDump struct {
	Name       string   `json:"name"`
	Aliases    []string `json:"aliases,omitempty"`
	Policy     LBPolicy `json:"policy"`
	HashHeader string   `json:"hash_header,omitempty"`
	// OutlierDetection is "failure-percentage" when on; CallTimeout is the route timeout.
	OutlierDetection string `json:"outlier_detection,omitempty"`
	CallTimeout      string `json:"call_timeout,omitempty"`
	ConfigError      string `json:"config_error,omitempty"`
	Endpoints        int    `json:"endpoints"`
	Synced           bool   `json:"synced"`
}

// ZoneDump is one zone's snapshot in a Dump: versions and resources by type.
type ZoneDump struct {
	Versions  map[string]string            `json:"versions"`
	Resources map[string][]json.RawMessage `json:"resources"`
}

var typeNames = map[types.ResponseType]string{
	types.Listener: "listener", types.Route: "route", types.Cluster: "cluster", types.Endpoint: "endpoint",
}

// Versions returns the current snapshot versions: zone → type (listener, route, cluster,
// endpoint) → version. Cheaper than Dump.
func (s *Server) Versions() map[string]map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]map[string]string, len(s.snaps))
	for z, zs := range s.snaps {
		out[z] = map[string]string{}
		for t, name := range typeNames {
			out[z][name] = zs.versions[t]
		}
	}
	return out
}

// Dump returns the current Services and snapshots.
func (s *Server) Dump() (Dump, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := Dump{Instance: s.instance, Ready: s.isReady, Services: []ServiceDump{}, Zones: map[string]ZoneDump{},
		Nacks: s.clients.nacks(), Clients: s.clients.list()}
	if d.Nacks == nil {
		d.Nacks = []Nack{}
	}
	byName := map[string]*serviceState{}
	for k, st := range s.svcs {
		byName[k.String()] = st
	}
	for _, n := range slices.Sorted(maps.Keys(byName)) {
		st := byName[n]
		sd := ServiceDump{Name: n, Aliases: st.svc.Aliases, Policy: st.cfg.Policy, HashHeader: st.cfg.HashHeader, Endpoints: len(st.set), Synced: st.synced}
		if st.cfg.Outlier.Enabled {
			sd.OutlierDetection = OutlierFailurePercentage
		}
		if st.cfg.CallTimeout > 0 {
			sd.CallTimeout = st.cfg.CallTimeout.String()
		}
		if st.cfgErr != nil {
			sd.ConfigError = st.cfgErr.Error()
		}
		d.Services = append(d.Services, sd)
	}
	mo := protojson.MarshalOptions{UseProtoNames: true}
	for z, zs := range s.snaps {
		zd := ZoneDump{Versions: map[string]string{}, Resources: map[string][]json.RawMessage{}}
		for t, name := range typeNames {
			zd.Versions[name] = zs.versions[t]
		}
		for name, items := range map[string]map[string]proto.Message{
			"listener": messages(zs.res.listeners), "route": messages(zs.res.routes),
			"cluster": messages(zs.res.clusters), "endpoint": messages(zs.res.clas),
		} {
			for _, rn := range slices.Sorted(maps.Keys(items)) {
				b, err := mo.Marshal(items[rn])
				if err != nil {
					return Dump{}, fmt.Errorf("xds: dump %s %q: %w", name, rn, err)
				}
				zd.Resources[name] = append(zd.Resources[name], b)
			}
		}
		d.Zones[z] = zd
	}
	return d, nil
}

// DebugHandler serves Dump as JSON (mount it at /debug/xds).
func (s *Server) DebugHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		d, err := s.Dump()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(d)
	})
}

// ReadyHandler answers 200 after the first full sync and 503 before (mount it at /readyz).
func (s *Server) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-s.ready:
			fmt.Fprintln(w, "ok")
		default:
			http.Error(w, "waiting for the first full sync", http.StatusServiceUnavailable)
		}
	})
}
