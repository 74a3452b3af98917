package xds

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/server/config"
	sotw "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/spread-grpc/spread/endpoint"
)

// Option configures a Server.
type Option func(*options)

type options struct {
	log      *slog.Logger
	reg      prometheus.Registerer
	zones    zonePolicy
	maxZones int
	hold     time.Duration
	onConfig func(Service, error)
	now      func() time.Time
}

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithRegisterer registers the server's metrics (default: none are registered).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.reg = r } }

// WithZonePreference turns zone preference on (the default, with minHealthy 1): a client
// whose bootstrap node locality names a zone gets that zone's endpoints at priority 0 as
// long as it has at least minHealthy healthy endpoints, and the other zones at priority 1.
// minHealthy ≤ 0 turns zone preference off: every client gets all zones at priority 0.
func WithZonePreference(minHealthy int) Option {
	return func(o *options) { o.zones = zonePolicy{enabled: minHealthy > 0, minHealthy: minHealthy} }
}

// WithMaxZones bounds how many distinct client zones get a snapshot of their own (default
// 64); clients of further zones get the zone-less snapshot.
func WithMaxZones(n int) Option { return func(o *options) { o.maxZones = n } }

// WithUnknownVersionHold sets how long a request naming a version this server never had
// waits before it is answered (default 2s). Versions are derived from content, so such a
// version comes from a replica that is ahead (this one is about to reach it, and then sends
// nothing) or from a state this process never saw; holding it keeps a lagging replica from
// moving a client back to an older configuration. 0 answers at once.
func WithUnknownVersionHold(d time.Duration) Option { return func(o *options) { o.hold = d } }

// WithConfigErrorHandler sets fn to be told when a Service's annotations are rejected (the
// last good configuration stays): once per Service port and distinct error, not again while
// the same error persists. It is called with the Server's lock held: it must not block or
// call the Server (an event recorder's non-blocking Event is fine).
func WithConfigErrorHandler(fn func(svc Service, err error)) Option {
	return func(o *options) { o.onConfig = fn }
}

// Server is the ADS control plane. Create it with New, register it on a grpc.Server with
// Register, and Run it. Its methods may be called concurrently.
type Server struct {
	opts      options
	log       *slog.Logger
	m         *metrics
	endpoints EndpointSource
	services  ServiceSource
	cache     *zoneCache
	clients   *clientTracker
	peers     peers // ADS stream → peer address
	ads       serverv3.Server
	codec     *sharedCodec // ServerOptions
	instance  string       // identifies the process in /debug/xds (versions do not depend on it)

	streamCtx  context.Context // ends every ADS stream when cancelled
	endStreams context.CancelFunc
	ready      chan struct{}
	dirty      chan struct{} // capacity 1: "rebuild"

	zonesMu  sync.RWMutex
	admitted map[string]bool // client zones with a snapshot of their own

	mu           sync.Mutex
	runCtx       context.Context
	svcs         map[endpoint.Key]*serviceState
	servicesSeen bool
	isReady      bool
	zonesChanged bool
	snaps        map[string]*zoneSnapshot     // by client zone ("" = no preference)
	marshaled    map[proto.Message]*anypb.Any // resources marshaled for the current snapshots
}

type serviceState struct {
	svc    Service
	cfg    ServiceConfig // last good configuration
	cfgErr error         // why the current annotations are not used, if they are not
	cancel context.CancelFunc
	wait   func()

	set     endpoint.Set
	synced  bool      // a first set arrived
	pending time.Time // first unpushed change, for push latency; zero if none

	cfgDirty, edsDirty bool
	routed             bool  // route is rendered from svc.Routes (routes.go)
	routesErr          error // why svc.Routes are not rendered, if they are not
	// Built resources, reused while unchanged (so versions only move when content does).
	listeners []*listenerv3.Listener
	route     *routev3.RouteConfiguration
	cluster   *clusterv3.Cluster
	flatCLA   *endpointv3.ClusterLoadAssignment
	zoneCLA   map[string]*endpointv3.ClusterLoadAssignment // only zones that differ from flat
}

type zoneSnapshot struct {
	res      *resourceSet
	versions map[types.ResponseType]string
}

// New returns a Server that serves the Services services announces, with endpoints from
// endpoints.
func New(endpoints EndpointSource, services ServiceSource, opts ...Option) (*Server, error) {
	if endpoints == nil || services == nil {
		return nil, errors.New("xds: New needs an endpoint source and a service source")
	}
	o := options{log: slog.Default(), zones: zonePolicy{enabled: true, minHealthy: 1}, maxZones: 64, hold: 2 * time.Second, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	m, err := newMetrics(o.reg)
	if err != nil {
		return nil, fmt.Errorf("xds: metrics: %w", err)
	}
	s := &Server{
		opts:      o,
		log:       o.log,
		m:         m,
		endpoints: endpoints,
		services:  services,
		instance:  strconv.FormatInt(o.now().UnixNano(), 36),
		ready:     make(chan struct{}),
		dirty:     make(chan struct{}, 1),
		admitted:  map[string]bool{},
		svcs:      map[endpoint.Key]*serviceState{},
		snaps:     map[string]*zoneSnapshot{},
		clients:   newClientTracker(o.now),
		codec:     newSharedCodec(),
	}
	s.streamCtx, s.endStreams = context.WithCancel(context.Background())
	s.cache = newZoneCache(nodeHash{s}.ID, o.hold)
	s.ads = serverv3.NewServer(s.streamCtx, s.cache, s.callbacks(), sotwLogger(o.log))
	return s, nil
}

// Register adds the Aggregated Discovery Service to g. Create g with s.ServerOptions(), so
// every stream's responses share the resources' bytes (see ServerOptions).
func (s *Server) Register(g grpc.ServiceRegistrar) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, s.ads)
}

// Ready is closed after the first full sync: the service source delivered its list and
// every Service in it has its first endpoint set. Before that, ADS requests are held.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Run watches the sources and keeps the snapshots current until ctx is done. Then it ends
// every ADS stream (clients reconnect, to another replica or to this one restarted), stops
// its subscriptions and returns. Call it once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.runCtx != nil {
		s.mu.Unlock()
		return errors.New("xds: Run called twice")
	}
	s.runCtx = ctx
	s.mu.Unlock()
	defer s.endStreams()

	wait, err := s.services.WatchServices(ctx, s.onServices)
	if err != nil {
		return fmt.Errorf("xds: watch services: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			s.endStreams()
			wait()
			s.mu.Lock()
			var waits []func()
			for k, st := range s.svcs {
				st.cancel()
				waits = append(waits, st.wait)
				delete(s.svcs, k)
			}
			s.mu.Unlock()
			for _, w := range waits {
				w()
			}
			return nil
		case <-s.dirty:
			s.mu.Lock()
			s.rebuildLocked()
			s.mu.Unlock()
		}
	}
}

func (s *Server) markDirty() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// onServices applies a new list of Service ports.
func (s *Server) onServices(list []Service) {
	want := make(map[endpoint.Key]Service, len(list))
	for _, svc := range list {
		want[svc.Key] = svc
	}
	type sub struct {
		key endpoint.Key
		st  *serviceState
		ctx context.Context
	}
	var subs []sub
	var waits []func()

	s.mu.Lock()
	for k, st := range s.svcs {
		if _, ok := want[k]; !ok {
			st.cancel()
			waits = append(waits, st.wait)
			delete(s.svcs, k)
			s.log.Info("xds: service removed", "service", k.String())
		}
	}
	for k, svc := range want {
		st, ok := s.svcs[k]
		if ok {
			if !maps.Equal(st.svc.Annotations, svc.Annotations) || !slices.Equal(st.svc.Aliases, svc.Aliases) || st.svc.UID != svc.UID || !routesEqual(st.svc.Routes, svc.Routes) {
				st.svc = svc
				s.applyConfigLocked(st)
			}
			continue
		}
		st = &serviceState{svc: svc, cfg: DefaultServiceConfig(), wait: func() {}}
		s.applyConfigLocked(st)
		ctx, cancel := context.WithCancel(s.runCtx)
		st.cancel = cancel
		s.svcs[k] = st
		subs = append(subs, sub{k, st, ctx})
		s.log.Info("xds: service added", "service", k.String(), "aliases", svc.Aliases)
	}
	s.servicesSeen = true
	s.mu.Unlock()

	for _, w := range waits {
		w()
	}
	// Subscribe outside the lock (a source may deliver the first set synchronously), and
	// concurrently (a source may block until it has listed the Service).
	var wg sync.WaitGroup
	for _, sb := range subs {
		wg.Go(func() {
			wait, err := s.endpoints.Subscribe(sb.ctx, sb.key, func(set endpoint.Set) { s.onEndpoints(sb.st, set) })
			s.mu.Lock()
			defer s.mu.Unlock()
			if err != nil {
				if sb.ctx.Err() == nil {
					s.log.Error("xds: subscribe to endpoints failed; serving no endpoints for it", "service", sb.key.String(), "err", err)
				}
				sb.st.synced = true // do not hold readiness on a key that cannot be watched
				return
			}
			sb.st.wait = wait
		})
	}
	wg.Wait()
	s.markDirty()
}

// applyConfigLocked parses st's annotations. On error the last good configuration stays
// (or, for a Service never seen good, the default), and the error is logged and counted.
func (s *Server) applyConfigLocked(st *serviceState) {
	cfg, err := ParseServiceConfig(st.svc.Annotations)
	if err == nil {
		// Build once to be sure the configuration renders to valid resources.
		_, err = buildCluster(st.svc.Key.String(), cfg)
	}
	if err != nil {
		if s.opts.onConfig != nil && (st.cfgErr == nil || st.cfgErr.Error() != err.Error()) {
			s.opts.onConfig(st.svc, err)
		}
		st.cfgErr = err
		s.m.configErrors.WithLabelValues(st.svc.Key.String(), reasonOf(err)).Inc()
		s.log.Warn("xds: service configuration rejected, keeping the last good one",
			"service", st.svc.Key.String(), "err", err, "kept_policy", st.cfg.Policy)
		st.cfgDirty = true // aliases may still have changed
		return
	}
	st.cfgErr = nil
	st.cfg = cfg
	st.cfgDirty = true
}

func (s *Server) onEndpoints(st *serviceState, set endpoint.Set) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.svcs[st.svc.Key] != st {
		return // removed meanwhile
	}
	st.set = set
	st.synced = true
	st.edsDirty = true
	if st.pending.IsZero() {
		st.pending = s.opts.now()
	}
	s.markDirty()
}

// rebuildLocked brings every snapshot up to date. Called with s.mu held.
func (s *Server) rebuildLocked() {
	if !s.isReady {
		if !s.servicesSeen {
			return
		}
		for _, st := range s.svcs {
			if !st.synced {
				return
			}
		}
	}
	zones := s.zoneListLocked()
	for _, st := range s.svcs {
		s.rebuildServiceLocked(st, zones)
	}
	s.rebuildRoutesLocked()
	s.zonesChanged = false
	now := s.opts.now()
	memo := map[proto.Message]*anypb.Any{}
	for _, z := range zones {
		if err := s.setZoneSnapshotLocked(z, memo); err != nil {
			s.m.snapshotErrors.Inc()
			s.log.Error("xds: snapshot rejected by the consistency check; clients keep the previous one", "zone", z, "err", err)
		}
	}
	s.marshaled = memo
	for _, st := range s.svcs {
		if !st.pending.IsZero() {
			s.m.pushLatency.Observe(now.Sub(st.pending).Seconds())
			st.pending = time.Time{}
		}
	}
	if !s.isReady {
		s.isReady = true
		close(s.ready)
		s.log.Info("xds: first full sync done; serving", "services", len(s.svcs))
	}
}

func (s *Server) zoneListLocked() []string {
	s.zonesMu.RLock()
	defer s.zonesMu.RUnlock()
	zones := append([]string{""}, slices.Collect(maps.Keys(s.admitted))...)
	slices.Sort(zones)
	return zones
}

// rebuildServiceLocked rebuilds what changed of one Service; a build that fails validation
// keeps the previous resources.
func (s *Server) rebuildServiceLocked(st *serviceState, zones []string) {
	name := st.svc.Key.String()
	if st.cfgDirty || st.cluster == nil {
		st.cfgDirty = false
		rs := newResourceSet()
		cl, err := buildCluster(name, st.cfg)
		if err == nil {
			rs.clusters[name] = cl
			rs.routes[name] = buildRoute(name, name, st.cfg)
			rs.listeners[name] = buildListener(name, name)
			for _, a := range st.svc.Aliases {
				k := st.svc.Key
				k.Port = a
				rs.listeners[k.String()] = buildListener(k.String(), name)
			}
			rs.clas[name] = buildCLA(name, nil, "")
			err = rs.validate()
		}
		if err != nil {
			s.m.configErrors.WithLabelValues(name, "invalid_resource").Inc()
			s.log.Error("xds: built resources failed validation; keeping the previous ones", "service", name, "err", err)
		} else {
			if st.cluster == nil || !proto.Equal(st.cluster, rs.clusters[name]) {
				st.cluster = rs.clusters[name]
			}
			if !st.routed && (st.route == nil || !proto.Equal(st.route, rs.routes[name])) {
				st.route = rs.routes[name]
			}
			var ls []*listenerv3.Listener
			for _, n := range slices.Sorted(maps.Keys(rs.listeners)) {
				l := rs.listeners[n]
				if i := slices.IndexFunc(st.listeners, func(o *listenerv3.Listener) bool { return o.GetName() == n }); i >= 0 {
					l = st.listeners[i] // same name → same content
				}
				ls = append(ls, l)
			}
			st.listeners = ls
		}
	}
	if st.edsDirty || st.flatCLA == nil || s.zonesChanged {
		st.edsDirty = false
		flat := buildCLA(name, st.set, "")
		zoneCLA := map[string]*endpointv3.ClusterLoadAssignment{}
		for _, z := range zones {
			if s.opts.zones.preferZone(st.set, z) {
				zoneCLA[z] = buildCLA(name, st.set, z)
			}
		}
		var err error
		for _, c := range append([]*endpointv3.ClusterLoadAssignment{flat}, slices.Collect(maps.Values(zoneCLA))...) {
			if err = validateCLA(c); err != nil {
				break
			}
		}
		if err != nil {
			s.m.configErrors.WithLabelValues(name, "invalid_endpoints").Inc()
			s.log.Error("xds: endpoints failed validation; keeping the previous ones", "service", name, "err", err)
		} else {
			st.flatCLA, st.zoneCLA = flat, zoneCLA
		}
	}
}

var typeURLs = map[types.ResponseType]string{
	types.Listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
	types.Route:    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
	types.Cluster:  "type.googleapis.com/envoy.config.cluster.v3.Cluster",
	types.Endpoint: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
}

// setZoneSnapshotLocked assembles, validates and sets the snapshot for clients of zone z.
// A type's version is a hash of its resources (contentVersion), so it moves only when one of
// them did, and every replica (and a restarted process) names the same content alike. Each
// resource is marshaled once (memo, and the previous rebuild's s.marshaled) however many
// zones and clients get it.
func (s *Server) setZoneSnapshotLocked(z string, memo map[proto.Message]*anypb.Any) error {
	rs := newResourceSet()
	for _, st := range s.svcs {
		if st.cluster == nil || st.flatCLA == nil {
			continue
		}
		for _, l := range st.listeners {
			rs.listeners[l.GetName()] = l
		}
		name := st.svc.Key.String()
		rs.routes[name] = st.route
		rs.clusters[name] = st.cluster
		rs.clas[name] = st.flatCLA
		if c, ok := st.zoneCLA[z]; ok {
			rs.clas[name] = c
		}
	}
	if err := rs.validate(); err != nil {
		return err
	}
	prev := s.snaps[z]
	zs := &zoneSnapshot{res: rs, versions: map[types.ResponseType]string{}}
	snap := map[string]*typeSnapshot{}
	var marshalErr error
	add := func(t types.ResponseType, changed bool, items map[string]proto.Message) {
		ts := &typeSnapshot{resources: make(map[string]*anypb.Any, len(items))}
		for n, m := range items {
			a, err := s.marshal(m, memo)
			if err != nil {
				marshalErr = err
				return
			}
			ts.resources[n] = a
		}
		if prev != nil && !changed {
			ts.version = prev.versions[t] // same resources: no need to hash them again
		} else {
			ts.version = contentVersion(ts.resources)
		}
		zs.versions[t] = ts.version
		snap[typeURLs[t]] = ts
	}
	add(types.Listener, prev == nil || !samePointers(prev.res.listeners, rs.listeners), messages(rs.listeners))
	add(types.Route, prev == nil || !samePointers(prev.res.routes, rs.routes), messages(rs.routes))
	add(types.Cluster, prev == nil || !samePointers(prev.res.clusters, rs.clusters), messages(rs.clusters))
	add(types.Endpoint, prev == nil || !samePointers(prev.res.clas, rs.clas), messages(rs.clas))
	if marshalErr != nil {
		return marshalErr
	}
	if prev == nil || !maps.Equal(prev.versions, zs.versions) {
		s.cache.set(nodeID(z), snap)
		s.m.snapshots.Inc()
	}
	s.snaps[z] = zs
	if z == "" {
		// The same type names as every other type label (typeNames, shortType).
		s.m.resources.WithLabelValues(typeNames[types.Listener]).Set(float64(len(rs.listeners)))
		s.m.resources.WithLabelValues(typeNames[types.Route]).Set(float64(len(rs.routes)))
		s.m.resources.WithLabelValues(typeNames[types.Cluster]).Set(float64(len(rs.clusters)))
		s.m.resources.WithLabelValues(typeNames[types.Endpoint]).Set(float64(countEndpoints(rs.clas)))
	}
	return nil
}

// marshal returns m as an Any, marshaling it only if no snapshot has it yet.
func (s *Server) marshal(m proto.Message, memo map[proto.Message]*anypb.Any) (*anypb.Any, error) {
	if a, ok := memo[m]; ok {
		return a, nil
	}
	a, ok := s.marshaled[m]
	if !ok {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("marshal %T: %w", m, err)
		}
		a = &anypb.Any{TypeUrl: "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName()), Value: b}
	}
	memo[m] = a
	return a, nil
}

// contentVersion names a set of marshaled resources by its content: a hash over the names,
// type URLs and (deterministically marshaled) bytes, in name order. Replicas over the same
// source agree on it, so a client moving between them is not sent what it already has.
func contentVersion(res map[string]*anypb.Any) string {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	for _, n := range slices.Sorted(maps.Keys(res)) {
		field([]byte(n))
		field([]byte(res[n].GetTypeUrl()))
		field(res[n].GetValue())
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func messages[T proto.Message](m map[string]T) map[string]proto.Message {
	out := make(map[string]proto.Message, len(m))
	for n, r := range m {
		out[n] = r
	}
	return out
}

func countEndpoints(clas map[string]*endpointv3.ClusterLoadAssignment) int {
	n := 0
	for _, c := range clas {
		for _, l := range c.GetEndpoints() {
			n += len(l.GetLbEndpoints())
		}
	}
	return n
}

func samePointers[T comparable](a, b map[string]T) bool {
	return maps.Equal(a, b)
}

// nodeID is the snapshot cache key of a client zone.
func nodeID(zone string) string { return "zone/" + zone }

// nodeHash keys clients by their bootstrap zone, if that zone was admitted.
type nodeHash struct{ s *Server }

func (h nodeHash) ID(node *corev3.Node) string {
	z := node.GetLocality().GetZone()
	h.s.zonesMu.RLock()
	ok := h.s.admitted[z]
	h.s.zonesMu.RUnlock()
	if !ok {
		z = ""
	}
	return nodeID(z)
}

// admitZone gives a newly seen client zone a snapshot of its own, before the cache looks
// for one (the request callback runs before the watch is created).
func (s *Server) admitZone(z string) {
	if z == "" || !s.opts.zones.enabled {
		return
	}
	s.zonesMu.RLock()
	ok, n := s.admitted[z], len(s.admitted)
	s.zonesMu.RUnlock()
	if ok || n >= s.opts.maxZones {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zonesMu.Lock()
	if s.admitted[z] || len(s.admitted) >= s.opts.maxZones {
		s.zonesMu.Unlock()
		return
	}
	s.admitted[z] = true
	s.zonesMu.Unlock()
	s.zonesChanged = true
	s.log.Info("xds: new client zone", "zone", z)
	if s.isReady {
		s.rebuildLocked()
	}
}

func sotwLogger(l *slog.Logger) config.XDSOption {
	return sotw.WithLogger(log.LoggerFuncs{
		DebugFunc: func(f string, a ...any) { l.Debug("go-control-plane: " + fmt.Sprintf(f, a...)) },
		InfoFunc:  func(f string, a ...any) { l.Debug("go-control-plane: " + fmt.Sprintf(f, a...)) },
		WarnFunc:  func(f string, a ...any) { l.Warn("go-control-plane: " + fmt.Sprintf(f, a...)) },
		ErrorFunc: func(f string, a ...any) { l.Error("go-control-plane: " + fmt.Sprintf(f, a...)) },
	})
}
