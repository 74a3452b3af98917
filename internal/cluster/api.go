package cluster

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spread-grpc/spread/internal/dashboard"
	"github.com/spread-grpc/spread/internal/httpjson"
)

// ClusterState is what GET /cluster returns.
type ClusterState struct {
	Replicas  int               `json:"replicas"`
	Pods      []PodStatus       `json:"pods"`
	Endpoints []EndpointJSON    `json:"endpoints"`
	Rollout   *RolloutStatus    `json:"rollout,omitempty"`
	Services  map[string]string `json:"services"`
}

// EndpointJSON is one entry of the endpoint model, as the API shows it.
type EndpointJSON struct {
	Address     string `json:"address"`
	Pod         string `json:"pod"`
	Zone        string `json:"zone"`
	Ready       bool   `json:"ready"`
	Serving     bool   `json:"serving"`
	Terminating bool   `json:"terminating"`
}

// State returns the whole cluster state.
func (c *Cluster) State() ClusterState {
	st := ClusterState{Replicas: c.Replicas(), Pods: c.Status(), Endpoints: []EndpointJSON{},
		Services: map[string]string{
			ClusterIPService: c.VIPAddr(),
			HeadlessService:  c.ServiceName(HeadlessService),
		}}
	for _, e := range c.Endpoints() {
		st.Endpoints = append(st.Endpoints, EndpointJSON{Address: e.HostPort(), Pod: e.Pod, Zone: e.Zone,
			Ready: e.Ready, Serving: e.Serving, Terminating: e.Terminating})
	}
	if r, ok := c.RolloutState(); ok {
		st.Rollout = &r
	}
	return st
}

var _ dashboard.Cluster = (*Cluster)(nil)

// PodStates returns the pods for the dashboard.
func (c *Cluster) PodStates() []dashboard.PodState {
	st := c.Status()
	out := make([]dashboard.PodState, len(st))
	for i, p := range st {
		out[i] = dashboard.PodState{Name: p.Name, Phase: string(p.Phase), Frozen: p.Frozen, Delay: p.Delay,
			Address: p.Address, Zone: p.Zone, Created: p.Created, Conns: p.Conns, CallsServed: p.CallsServed}
	}
	return out
}

// Handler serves the cluster controls, the API behind `spread ctl` and the dashboard:
//
//	GET  /cluster                          the state (pods, endpoints, rollout)
//	POST /cluster/scale?replicas=N         scale the Deployment
//	POST /cluster/rollout                  rolling restart
//	POST /cluster/pods/{pod}/kill          kill hard (connections reset; restarts)
//	POST /cluster/pods/{pod}/delete        delete gracefully (replaced at once)
//	POST /cluster/pods/{pod}/freeze        SIGSTOP-like: accepts TCP, answers nothing
//	POST /cluster/pods/{pod}/thaw          undo freeze
//	POST /cluster/pods/{pod}/slow?delay=D  add D to every call (0 restores)
//
// {pod} is a pod name or "random": a ready pod that the action changes (thaw picks a frozen
// pod, freeze one not frozen, slow?delay=0 a slowed one). Unknown and repeated query
// parameters are refused.
func (c *Cluster) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cluster", func(w http.ResponseWriter, r *http.Request) {
		httpjson.Write(w, http.StatusOK, c.State())
	})
	mux.HandleFunc("POST /cluster/scale", func(w http.ResponseWriter, r *http.Request) {
		q, err := ParseQuery(r.URL.RawQuery, "replicas")
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, err)
			return
		}
		v := q.Get("replicas")
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > MaxReplicas {
			httpjson.Error(w, http.StatusBadRequest, fmt.Errorf("replicas=%q: want a whole number from 0 to %d", v, MaxReplicas))
			return
		}
		if err := c.Scale(n); err != nil {
			httpjson.Error(w, http.StatusInternalServerError, err)
			return
		}
		httpjson.Write(w, http.StatusOK, c.State())
	})
	mux.HandleFunc("POST /cluster/rollout", func(w http.ResponseWriter, r *http.Request) {
		if _, err := ParseQuery(r.URL.RawQuery); err != nil {
			httpjson.Error(w, http.StatusBadRequest, err)
			return
		}
		st, err := c.Rollout()
		if err != nil {
			httpjson.Error(w, http.StatusConflict, err)
			return
		}
		httpjson.Write(w, http.StatusAccepted, st)
	})
	mux.HandleFunc("POST /cluster/pods/{pod}/{action}", func(w http.ResponseWriter, r *http.Request) {
		pod, action := r.PathValue("pod"), r.PathValue("action")
		var allowed []string
		if action == "slow" {
			allowed = []string{"delay"}
		}
		q, err := ParseQuery(r.URL.RawQuery, allowed...)
		if err != nil {
			httpjson.Error(w, http.StatusBadRequest, err)
			return
		}
		var name string
		switch action {
		case "kill":
			name, err = c.Kill(pod)
		case "delete":
			name, err = c.Delete(pod)
		case "freeze", "thaw":
			name, err = c.Freeze(pod, action == "freeze")
		case "slow":
			var d time.Duration
			if d, err = time.ParseDuration(q.Get("delay")); err != nil {
				httpjson.Error(w, http.StatusBadRequest, fmt.Errorf("delay=%q: want a duration like 200ms (0 to 1m)", q.Get("delay")))
				return
			}
			name, err = c.Slow(pod, d)
		default:
			httpjson.Error(w, http.StatusNotFound, fmt.Errorf("unknown action %q: want kill, delete, freeze, thaw or slow", action))
			return
		}
		if err != nil {
			code := http.StatusConflict
			if strings.Contains(err.Error(), "no pod") {
				code = http.StatusNotFound
			} else if strings.Contains(err.Error(), "want") {
				code = http.StatusBadRequest
			}
			httpjson.Error(w, code, err)
			return
		}
		httpjson.Write(w, http.StatusOK, map[string]string{"pod": name, "action": action})
	})
	return mux
}

// ParseQuery parses an admin API query, refusing one that does not parse, parameters other
// than allowed, and parameters given more than once (a second value would be ignored).
func ParseQuery(raw string, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("query %q: %v (separate parameters with &)", raw, err)
	}
	for k, vs := range q {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return nil, fmt.Errorf("unknown query parameter %q: this action takes none", k)
			}
			return nil, fmt.Errorf("unknown query parameter %q: want %s", k, strings.Join(allowed, ", "))
		}
		if len(vs) != 1 {
			return nil, fmt.Errorf("query parameter %q given %d times", k, len(vs))
		}
	}
	return q, nil
}
