// Package cluster is a whole simulated Kubernetes cluster in one process, on loopback: backend
// "pods" of a Deployment on 127.0.1.x, an authoritative cluster DNS (ClusterIP and headless
// Service names), a kube-proxy-like L4 VIP, and Spread's xDS control plane fed by it (xds.go).
// Its endpoint state is one endpoint.Publisher that all its Services (they select the same
// pods) share, the same model the Kubernetes source produces, so every consumer (DNS, VIP,
// xDS, resolvers) works against it unchanged. Handler (api.go) is its HTTP admin API, the
// one `spread ctl` and the dashboard's controls talk to.
//
// `spread demo` (package demo) runs it behind the frontend; `spread load` and `spread
// compare` start one of their own. Package modes builds the client connection recipes
// (connect.Mode) that reach it.
package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/fairshare"
	"github.com/spread-grpc/spread/internal/backend"
	"github.com/spread-grpc/spread/internal/clusterdns"
	"github.com/spread-grpc/spread/internal/freeze"
	"github.com/spread-grpc/spread/internal/vip"
)

// Names of the simulated objects, as in the sample's manifests.
const (
	Namespace        = "default"
	Deployment       = "be-deployment"
	ClusterIPService = "be-srv"
	HeadlessService  = "be-srv-lb"
	// TunedService selects the same pods as ClusterIPService; the demo's xDS control plane
	// serves it with outlier detection and a call deadline (mode xds-tuned).
	TunedService = "be-srv-tuned"
	PortName     = "grpc"
)

// ClusterConfig describes the simulated cluster.
type Config struct {
	// Replicas is the backend Deployment's size (default 5, at most MaxReplicas).
	Replicas int
	// FirstPodIP is the first pod's address; pod i gets FirstPodIP+i (default 127.0.1.1).
	FirstPodIP netip.Addr
	// PodPort is every pod's gRPC port (default 50051; 0 picks a free one shared by all pods).
	PodPort int
	// VIP is the ClusterIP Service's "ip:port" (default 127.96.0.10:<pod port>; port 0 picks one).
	VIP string
	// DNSAddr is where the cluster DNS listens (default 127.0.0.1:8053).
	DNSAddr string
	// Domain is the cluster domain (default cluster.local).
	Domain string
	// DNSTTL is the TTL of DNS answers (default 5s, as CoreDNS's kubernetes plugin).
	DNSTTL time.Duration
	// Grace bounds each pod's drain (default 5s).
	Grace time.Duration
	// Zones are assigned to pods in turn (default zone-a, zone-b, zone-c).
	Zones []string
	// EndpointDelay is how long a pod change takes to reach the endpoint model (and so DNS,
	// VIP and every resolver), like EndpointSlice propagation in a real cluster (default 0).
	EndpointDelay time.Duration
	// PreStop is how long a deleted pod keeps serving before it starts draining, like a
	// preStop sleep (default: EndpointDelay, so clients learn of the removal first).
	PreStop time.Duration
	// RestartDelay is how long a killed pod's container takes to come back (default 1s).
	RestartDelay time.Duration
	// XDSAddr is where the demo's xDS control plane listens (default 127.0.0.1 on a free
	// port; "-" disables it and the xds mode).
	XDSAddr string
	// MaxConnectionAge, if set, is every pod's server-side connection age (backend
	// MaxConnectionAge): clients reconnect, and so re-resolve, at least that often.
	MaxConnectionAge time.Duration
	// MaxConnectionAgeGrace bounds calls on an aged connection (default: the pods' Grace).
	MaxConnectionAgeGrace time.Duration
	// MaxStreamAge, if set, ends every pod's streams after this age (±10%) with the
	// stream-age status, so resuming clients re-balance (see echo.IsStreamAgeEnd).
	MaxStreamAge time.Duration
	// RolloutPause is the time between rolling-restart steps, after the new pod's endpoint
	// is out (default 200ms), like minReadySeconds.
	RolloutPause time.Duration
	// TLSCert, TLSKey and TLSClientCA, when set, make every pod serve mTLS with these files
	// (see backend.Config).
	TLSCert, TLSKey, TLSClientCA string
	// CanaryWeight is the share (1 to 100 %) of CanaryService's calls that the demo's
	// canary GRPCRoute sends to the be-v2 Deployment (default 10); negative: no be-v2, no
	// route (also without the xDS control plane). See canary.go.
	CanaryWeight int
	// FairShareInterval, if set, makes every pod shed connections above its fair share
	// (package fairshare) in rounds this long. Pods learn each other's counts from the
	// cluster's model (the ready pods) instead of over their admin ports.
	FairShareInterval time.Duration
}

// MaxReplicas bounds the Deployment's size.
const MaxReplicas = 200

// podIPRange is how many addresses from FirstPodIP pods may take: room for a full surge.
const podIPRange = 2*MaxReplicas + 2

// DefaultClusterConfig returns the value every zero field of a ClusterConfig takes, declared
// once: StartCluster fills zero fields from it, and `spread demo`'s flags show it. Fields not
// set here derive from others (VIP from PodPort, PreStop from EndpointDelay,
// MaxConnectionAgeGrace from Grace) or are off by default. XDSAddr is a free port on
// 127.0.0.1 unless set (`spread demo` sets the well-known 127.0.0.1:18000).
func DefaultConfig() Config {
	return Config{
		Replicas:     5,
		FirstPodIP:   netip.MustParseAddr("127.0.1.1"),
		PodPort:      50051,
		DNSAddr:      "127.0.0.1:8053",
		XDSAddr:      "127.0.0.1:0",
		Domain:       "cluster.local",
		DNSTTL:       5 * time.Second,
		Grace:        5 * time.Second,
		RestartDelay: time.Second,
		RolloutPause: 200 * time.Millisecond,
		Zones:        []string{"zone-a", "zone-b", "zone-c"},
		CanaryWeight: 10,
	}
}

func (c *Config) defaults() error {
	d := DefaultConfig()
	if c.Replicas == 0 {
		c.Replicas = d.Replicas
	}
	if c.Replicas < 0 || c.Replicas > MaxReplicas {
		return fmt.Errorf("demo: replicas %d: want 1 to %d", c.Replicas, MaxReplicas)
	}
	if c.CanaryWeight == 0 {
		c.CanaryWeight = d.CanaryWeight
	}
	if c.CanaryWeight > 100 {
		return fmt.Errorf("demo: canary weight %d: want 1 to 100, or negative for none", c.CanaryWeight)
	}
	if !c.FirstPodIP.IsValid() {
		c.FirstPodIP = d.FirstPodIP
	}
	if !c.FirstPodIP.Is4() || !c.FirstPodIP.IsLoopback() {
		return fmt.Errorf("demo: first pod IP %s: want an IPv4 loopback address (127.0.0.0/8)", c.FirstPodIP)
	}
	last := c.FirstPodIP
	for range podIPRange {
		last = last.Next()
	}
	if !last.IsLoopback() {
		return fmt.Errorf("demo: first pod IP %s leaves no room for %d pods inside 127.0.0.0/8", c.FirstPodIP, MaxReplicas)
	}
	if c.PodPort < 0 || c.PodPort > 65535 {
		return fmt.Errorf("demo: pod port %d: want 0 to 65535", c.PodPort)
	}
	if c.PodPort == 0 && c.VIP == "" {
		c.PodPort = d.PodPort
	}
	if c.VIP == "" {
		c.VIP = net.JoinHostPort("127.96.0.10", strconv.Itoa(c.PodPort))
	}
	if c.DNSAddr == "" {
		c.DNSAddr = d.DNSAddr
	}
	if c.XDSAddr == "" {
		c.XDSAddr = d.XDSAddr
	}
	if c.Domain == "" {
		c.Domain = d.Domain
	}
	if c.DNSTTL == 0 {
		c.DNSTTL = d.DNSTTL
	}
	if c.DNSTTL < 0 {
		return fmt.Errorf("demo: DNS TTL %v is negative", c.DNSTTL)
	}
	if c.Grace == 0 {
		c.Grace = d.Grace
	}
	if c.FairShareInterval < 0 {
		return fmt.Errorf("demo: fair-share interval %v is negative", c.FairShareInterval)
	}
	if c.MaxConnectionAge < 0 || c.MaxConnectionAgeGrace < 0 || c.MaxStreamAge < 0 {
		return errors.New("demo: max connection age, its grace and max stream age must not be negative")
	}
	if c.MaxConnectionAge > 0 && c.MaxConnectionAgeGrace == 0 {
		c.MaxConnectionAgeGrace = c.Grace
	}
	if c.EndpointDelay < 0 || c.PreStop < 0 || c.RestartDelay < 0 || c.RolloutPause < 0 {
		return errors.New("demo: endpoint delay, preStop, restart delay and rollout pause must not be negative")
	}
	if c.PreStop == 0 {
		c.PreStop = c.EndpointDelay
	}
	if c.RestartDelay == 0 {
		c.RestartDelay = d.RestartDelay
	}
	if c.RolloutPause == 0 {
		c.RolloutPause = d.RolloutPause
	}
	if len(c.Zones) == 0 {
		c.Zones = d.Zones
	}
	addrs := []string{c.VIP, c.DNSAddr}
	if c.XDSAddr != "-" {
		addrs = append(addrs, c.XDSAddr)
	}
	for _, a := range addrs {
		if err := LoopbackHostPort(a); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	return nil
}

// LoopbackHostPort checks that hp is an "ip:port" on a loopback address: the demo listens on
// nothing else.
func LoopbackHostPort(hp string) error {
	ap, err := netip.ParseAddrPort(hp)
	if err != nil {
		return fmt.Errorf("address %q: want ip:port: %v", hp, err)
	}
	if !ap.Addr().IsLoopback() {
		return fmt.Errorf("address %q: the demo only uses loopback addresses", hp)
	}
	return nil
}

// Phase is a pod's lifecycle state.
type Phase string

// Pod phases.
const (
	PhaseReady       Phase = "ready"       // serving, in the endpoints
	PhaseTerminating Phase = "terminating" // deleted: still serving in-flight work, draining
	PhaseRestarting  Phase = "restarting"  // killed: its container comes back soon
)

// Pod is one simulated backend pod.
type Pod struct {
	Name       string
	ReplicaSet string // the pod-template hash
	IP         netip.Addr
	Port       int
	Zone       string
	Node       string
	Created    time.Time

	// Guarded by Cluster.mu.
	phase    Phase
	restarts int
	delay    time.Duration
	frz      *freeze.Switch
	srv      *backend.Server
	cancel   context.CancelFunc
	done     chan error // Serve's result
}

// PodStatus is a pod as the admin API and the dashboard show it.
type PodStatus struct {
	Name       string    `json:"name"`
	ReplicaSet string    `json:"replicaset"`
	Address    string    `json:"address"`
	Zone       string    `json:"zone"`
	Node       string    `json:"node"`
	Phase      Phase     `json:"phase"`
	Frozen     bool      `json:"frozen"`
	Delay      string    `json:"delay,omitempty"`
	Restarts   int       `json:"restarts"`
	Created    time.Time `json:"created"`
	// Conns is the client connections the pod holds now (with fair share, those it counts
	// toward its share); CallsServed the calls it answered since it last started.
	Conns       int    `json:"conns"`
	CallsServed uint64 `json:"calls_served"`
}

func (p *Pod) endpoint() endpoint.Endpoint {
	return endpoint.Endpoint{
		Address: p.IP.String(), Port: int32(p.Port), Pod: p.Name, Node: p.Node, Zone: p.Zone,
		Ready: p.phase == PhaseReady, Serving: p.phase != PhaseRestarting, Terminating: p.phase == PhaseTerminating,
	}
}

func (p *Pod) status() PodStatus {
	s := PodStatus{Name: p.Name, ReplicaSet: p.ReplicaSet, Address: netip.AddrPortFrom(p.IP, uint16(p.Port)).String(),
		Zone: p.Zone, Node: p.Node, Phase: p.phase, Frozen: p.frz.Frozen(), Restarts: p.restarts, Created: p.Created}
	if p.delay > 0 {
		s.Delay = p.delay.String()
	}
	if p.srv != nil {
		s.Conns, s.CallsServed = p.srv.Conns(), p.srv.Served()
	}
	return s
}

// Cluster is the running simulated cluster. Its methods may be called concurrently.
type Cluster struct {
	cfg Config
	log *slog.Logger

	dns     *clusterdns.Server
	dnsAddr string
	vip     *vip.Proxy
	vipAddr string
	eps     endpoint.Publisher // the Services' endpoints: both select the same pods
	queue   chan queued        // endpoint sets on their way to eps, EndpointDelay late
	xds     *xdsControlPlane   // nil when disabled
	v2eps   endpoint.Publisher // be-v2's endpoints (canary.go)

	ctx    context.Context // cancelled by Stop: ends background work
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	pods     []*Pod
	v2       []*Pod // be-v2's, fixed (canary.go)
	replicas int    // desired
	hash     string // the current ReplicaSet's pod-template hash
	usedIPs  map[netip.Addr]bool
	port     int
	rollout  *RolloutStatus
	stopped  bool
}

type queued struct {
	at  time.Time
	set endpoint.Set
}

// RolloutStatus reports a rolling restart.
type RolloutStatus struct {
	ReplicaSet string    `json:"replicaset"`
	Done       int       `json:"done"`
	Total      int       `json:"total"`
	Started    time.Time `json:"started"`
	Finished   bool      `json:"finished"`
}

// StartCluster starts the pods, the DNS server and the VIP. Stop it with Stop.
func Start(cfg Config, log *slog.Logger) (*Cluster, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{cfg: cfg, log: log, port: cfg.PodPort, hash: randomName(10), replicas: cfg.Replicas,
		usedIPs: map[netip.Addr]bool{}, queue: make(chan queued, 4096), ctx: ctx, cancel: cancel}
	c.dns = clusterdns.New(cfg.Domain, cfg.DNSTTL)
	c.vip = vip.New(log.With("component", "vip"))
	fail := func(err error) (*Cluster, error) {
		c.Stop(context.Background())
		return nil, err
	}
	for range cfg.Replicas {
		if _, err := c.addPod(); err != nil {
			return fail(err)
		}
	}
	// DNS and VIP follow the endpoint model, as CoreDNS and kube-proxy follow EndpointSlices.
	// The first set is applied here, before either listens, so that a client resolving as soon
	// as Start returns finds every ready pod (through the subscription below alone, the first
	// set arrived asynchronously, and a lookup could come first and find none).
	follow := func(s endpoint.Set) {
		ready := s.Ready()
		addrs := make([]netip.Addr, 0, len(ready))
		for _, e := range ready {
			addrs = append(addrs, netip.MustParseAddr(e.Address))
		}
		c.dns.Set(c.ServiceName(HeadlessService), addrs)
		c.vip.SetBackends(ready.HostPorts())
	}
	first := c.snapshot()
	follow(first)
	vipAP := netip.MustParseAddrPort(cfg.VIP)
	if vipAP.Port() == 0 {
		vipAP = netip.AddrPortFrom(vipAP.Addr(), uint16(c.port))
	}
	var err error
	if c.vipAddr, err = c.vip.Listen(vipAP.String()); err != nil {
		return fail(err)
	}
	c.dns.Set(c.ServiceName(ClusterIPService), []netip.Addr{vipAP.Addr()})
	if c.dnsAddr, err = c.dns.Listen(cfg.DNSAddr); err != nil {
		return fail(err)
	}
	c.eps.Publish(first) // the initial state is there at once
	if cfg.XDSAddr != "-" && cfg.CanaryWeight > 0 {
		if err := c.startV2(); err != nil {
			return fail(err)
		}
	}
	if cfg.XDSAddr != "-" {
		if c.xds, err = startXDS(c, cfg.XDSAddr); err != nil {
			return fail(err)
		}
	}
	wait, err := c.eps.Subscribe(ctx, follow) // its first delivery is that same set again
	if err != nil {
		return fail(err)
	}
	c.wg.Add(2)
	go c.deliver()
	go func() { defer c.wg.Done(); wait() }()
	return c, nil
}

// deliver publishes queued endpoint sets when their time comes, in order.
func (c *Cluster) deliver() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case q := <-c.queue:
			if d := time.Until(q.at); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-c.ctx.Done():
					t.Stop()
					return
				}
			}
			c.eps.Publish(q.set)
		}
	}
}

// changed sends the current pods to the endpoint model, EndpointDelay late.
func (c *Cluster) changed() {
	s := c.snapshot()
	select {
	case c.queue <- queued{at: time.Now().Add(c.cfg.EndpointDelay), set: s}:
	case <-c.ctx.Done():
	}
}

func (c *Cluster) snapshot() endpoint.Set {
	c.mu.Lock()
	defer c.mu.Unlock()
	eps := make([]endpoint.Endpoint, 0, len(c.pods))
	for _, p := range c.pods {
		eps = append(eps, p.endpoint())
	}
	return endpoint.NewSet(eps)
}

// ServiceName returns the cluster DNS name of a Service in the demo namespace.
func (c *Cluster) ServiceName(svc string) string {
	return svc + "." + Namespace + ".svc." + c.cfg.Domain
}

// DNSAddr is the address the cluster DNS listens on.
func (c *Cluster) DNSAddr() string { return c.dnsAddr }

// VIPAddr is the ClusterIP Service's address.
func (c *Cluster) VIPAddr() string { return c.vipAddr }

// Port is the pods' (and the Services') gRPC port.
func (c *Cluster) Port() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.port
}

// Logger is the logger the cluster was started with (modes log with it).
func (c *Cluster) Logger() *slog.Logger { return c.log }

// Config returns the cluster's configuration, defaults filled in.
func (c *Cluster) Config() Config { return c.cfg }

// DNS returns the cluster DNS server.
func (c *Cluster) DNS() *clusterdns.Server { return c.dns }

// VIP returns the ClusterIP proxy.
func (c *Cluster) VIP() *vip.Proxy { return c.vip }

// Target returns the gRPC target of a Service through the cluster DNS, as a client in the
// cluster would dial it, e.g. dns://127.0.0.1:8053/be-srv-lb.default.svc.cluster.local:50051.
func (c *Cluster) Target(svc string) string {
	return fmt.Sprintf("dns://%s/%s:%d", c.dnsAddr, c.ServiceName(svc), c.Port())
}

// Pods returns the current pods' endpoints (what the cluster holds now; the endpoint model
// follows EndpointDelay later).
func (c *Cluster) Pods() []endpoint.Endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]endpoint.Endpoint, 0, len(c.pods))
	for _, p := range c.pods {
		out = append(out, p.endpoint())
	}
	return out
}

// Status returns every pod's state.
func (c *Cluster) Status() []PodStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]PodStatus, 0, len(c.pods))
	for _, p := range c.pods {
		out = append(out, p.status())
	}
	return out
}

// Replicas returns the desired number of pods.
func (c *Cluster) Replicas() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replicas
}

// Endpoints returns the endpoint model's current set (what DNS, VIP and resolvers see).
func (c *Cluster) Endpoints() endpoint.Set {
	s, _ := c.eps.Current()
	return s
}

var _ endpoint.Source = (*Cluster)(nil)

// Subscribe implements endpoint.Source for the demo's Services: key.Service is be-srv,
// be-srv-lb or be-srv-tuned in namespace default (all select the same pods), key.Port the
// port number or "grpc"; any other key is an error. fn gets the current set first, then
// every change, until ctx is done or the cluster is stopped (Stop is the cluster's Close).
func (c *Cluster) Subscribe(ctx context.Context, key endpoint.Key, fn func(endpoint.Set)) (func(), error) {
	pub := &c.eps
	switch {
	case key.Namespace == Namespace && (key.Service == CanaryService || key.Service == V2Service) && c.HasCanary():
		if key.Service == V2Service {
			pub = &c.v2eps
		}
	case key.Namespace != Namespace || (key.Service != HeadlessService && key.Service != ClusterIPService && key.Service != TunedService):
		return nil, fmt.Errorf("demo: no Service %s/%s (have %s, %s and %s in %s)", key.Namespace, key.Service, ClusterIPService, HeadlessService, TunedService, Namespace)
	}
	if key.Port != PortName && key.Port != strconv.Itoa(c.Port()) {
		return nil, fmt.Errorf("demo: Service %s has no port %q (have %d, named %q)", key.Service, key.Port, c.Port(), PortName)
	}
	if c.ctx.Err() != nil {
		return nil, errors.New("demo: cluster stopped")
	}
	subCtx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(c.ctx, cancel)
	wait, err := pub.Subscribe(subCtx, fn)
	if err != nil {
		stopOnClose()
		cancel()
		return nil, err
	}
	return func() { wait(); stopOnClose(); cancel() }, nil
}

// allocIP takes the lowest free pod address. Called with c.mu held.
func (c *Cluster) allocIP() (netip.Addr, error) {
	ip := c.cfg.FirstPodIP
	for range podIPRange {
		if !c.usedIPs[ip] {
			c.usedIPs[ip] = true
			return ip, nil
		}
		ip = ip.Next()
	}
	return netip.Addr{}, fmt.Errorf("demo: no free pod address in %d from %s", podIPRange, c.cfg.FirstPodIP)
}

// addPod starts one new pod of the current ReplicaSet; the caller publishes.
func (c *Cluster) addPod() (*Pod, error) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil, errors.New("demo: cluster stopped")
	}
	ip, err := c.allocIP()
	n := len(c.pods)
	p := &Pod{
		Name: fmt.Sprintf("%s-%s-%s", Deployment, c.hash, randomName(5)), ReplicaSet: c.hash,
		IP: ip, Port: c.port, Zone: c.cfg.Zones[n%len(c.cfg.Zones)], Node: fmt.Sprintf("node-%d", n%len(c.cfg.Zones)+1),
		Created: time.Now(), phase: PhaseReady,
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := c.run(p); err != nil {
		c.mu.Lock()
		delete(c.usedIPs, ip)
		c.mu.Unlock()
		return nil, err
	}
	c.mu.Lock()
	c.pods = append(c.pods, p)
	c.mu.Unlock()
	c.log.Debug("pod started", "pod", p.Name, "ip", p.IP, "zone", p.Zone)
	return p, nil
}

// backendOptions are every pod's backend options.
func (c *Cluster) backendOptions() []backend.Option {
	opts := []backend.Option{backend.WithLogger(c.log)}
	if d := c.cfg.FairShareInterval; d > 0 {
		opts = append(opts, backend.WithFairShare(fairshare.WithPeers(fairshare.PeersFunc(c.fairSharePeers)),
			fairshare.WithInterval(d, 0.2), fairshare.WithPolicy(fairshare.Policy{MinAge: d})))
	}
	return opts
}

// fairSharePeers returns the ready pods' connection counts (the demo's stand-in for asking
// each pod's admin port).
func (c *Cluster) fairSharePeers(context.Context) ([]fairshare.Peer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []fairshare.Peer
	for _, p := range c.pods {
		if p.phase == PhaseReady && p.srv != nil && p.srv.FairShare() != nil {
			out = append(out, fairshare.Peer{Name: p.Name, Conns: p.srv.FairShare().Conns()})
		}
	}
	return out, nil
}

// PodConns returns the client connections each pod holds now, by pod name (a pod restarting
// holds none). With fair share (FairShareInterval) a pod counts those it keeps toward its
// share, not the shed ones still draining.
func (c *Cluster) PodConns() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.pods))
	for _, p := range c.pods {
		if p.srv != nil {
			out[p.Name] = p.srv.Conns()
		} else {
			out[p.Name] = 0
		}
	}
	return out
}

// run starts (or restarts) p's backend process.
func (c *Cluster) run(p *Pod) error {
	lis, err := net.Listen("tcp", netip.AddrPortFrom(p.IP, uint16(p.Port)).String())
	if err != nil {
		return fmt.Errorf("demo: pod on %s: %w", p.IP, err)
	}
	srv, err := backend.New(backend.Config{Pod: p.Name, Zone: p.Zone, Grace: c.cfg.Grace,
		TLSCert: c.cfg.TLSCert, TLSKey: c.cfg.TLSKey, TLSClientCA: c.cfg.TLSClientCA,
		MaxConnectionAge: c.cfg.MaxConnectionAge, MaxConnectionAgeGrace: c.cfg.MaxConnectionAgeGrace, MaxStreamAge: c.cfg.MaxStreamAge}, c.backendOptions()...)
	if err != nil {
		lis.Close()
		return err
	}
	c.mu.Lock()
	if p.Port == 0 {
		p.Port = lis.Addr().(*net.TCPAddr).Port
		if c.port == 0 {
			c.port = p.Port
		}
	}
	srv.SetDelay(p.delay)
	ctx, cancel := context.WithCancel(context.Background())
	p.srv, p.cancel, p.done, p.frz = srv, cancel, make(chan error, 1), freeze.New()
	done, frz := p.done, p.frz
	c.mu.Unlock()
	go func() { done <- srv.Serve(ctx, frz.Listener(lis)) }()
	return nil
}

// find returns the pod named name or, for "random", a ready pod for which want holds (nil:
// any ready pod). Called with c.mu held.
func (c *Cluster) find(name string, want func(*Pod) bool, what string) (*Pod, error) {
	if name == "random" {
		var ready []*Pod
		for _, p := range c.pods {
			if p.phase == PhaseReady && (want == nil || want(p)) {
				ready = append(ready, p)
			}
		}
		if len(ready) == 0 {
			return nil, fmt.Errorf("demo: no ready pod%s", what)
		}
		return ready[mrand.IntN(len(ready))], nil
	}
	for _, p := range c.pods {
		if p.Name == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("demo: no pod %q", name)
}

// Scale sets the Deployment's replicas: new pods start at once; surplus pods (the newest
// first, as a ReplicaSet picks them) are deleted gracefully.
func (c *Cluster) Scale(replicas int) error {
	if replicas < 0 || replicas > MaxReplicas {
		return fmt.Errorf("demo: replicas %d: want 0 to %d", replicas, MaxReplicas)
	}
	c.mu.Lock()
	c.replicas = replicas
	var live []*Pod
	for _, p := range c.pods {
		if p.phase != PhaseTerminating {
			live = append(live, p)
		}
	}
	c.mu.Unlock()
	c.log.Info("scale", "replicas", replicas, "from", len(live))
	for i := len(live); i < replicas; i++ {
		if _, err := c.addPod(); err != nil {
			c.changed()
			return err
		}
	}
	if extra := len(live) - replicas; extra > 0 {
		slices.SortStableFunc(live, func(a, b *Pod) int { return b.Created.Compare(a.Created) })
		for _, p := range live[:extra] {
			c.terminate(p)
		}
	}
	c.changed()
	return nil
}

// Delete deletes one pod gracefully; the ReplicaSet replaces it at once.
func (c *Cluster) Delete(name string) (string, error) {
	c.mu.Lock()
	p, err := c.find(name, nil, "")
	c.mu.Unlock()
	if err != nil {
		return "", err
	}
	if _, err := c.addPod(); err != nil {
		return "", err
	}
	c.terminate(p)
	c.changed()
	return p.Name, nil
}

// terminate marks p terminating and, after the preStop delay, drains it and removes it. The
// caller publishes the terminating state.
func (c *Cluster) terminate(p *Pod) {
	c.mu.Lock()
	if p.phase == PhaseTerminating {
		c.mu.Unlock()
		return
	}
	p.phase = PhaseTerminating
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if c.cfg.PreStop > 0 {
			t := time.NewTimer(c.cfg.PreStop)
			select {
			case <-t.C:
			case <-c.ctx.Done(): // Stop drains every pod itself
				t.Stop()
				return
			}
		}
		c.mu.Lock()
		cancel, done, frz := p.cancel, p.done, p.frz
		c.mu.Unlock()
		frz.Set(false) // a SIGTERM wakes even a frozen process
		cancel()
		<-done
		c.mu.Lock()
		c.pods = slices.DeleteFunc(c.pods, func(q *Pod) bool { return q == p })
		delete(c.usedIPs, p.IP)
		c.mu.Unlock()
		c.log.Debug("pod gone", "pod", p.Name)
		c.changed()
	}()
}

// Kill kills a pod's process hard: every connection is reset and in-flight calls fail. The
// endpoint turns not ready, and the container restarts after RestartDelay on the same
// address. It returns the pod's name.
func (c *Cluster) Kill(name string) (string, error) {
	c.mu.Lock()
	p, err := c.find(name, nil, "")
	if err == nil && p.phase != PhaseReady {
		err = fmt.Errorf("demo: pod %s is %s", p.Name, p.phase)
	}
	if err != nil {
		c.mu.Unlock()
		return "", err
	}
	p.phase = PhaseRestarting
	p.restarts++
	srv, frz, cancel, done := p.srv, p.frz, p.cancel, p.done
	c.mu.Unlock()
	frz.Close()
	srv.Stop()
	cancel()
	<-done
	c.changed()
	c.log.Info("pod killed", "pod", p.Name)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTimer(c.cfg.RestartDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.ctx.Done():
			return
		}
		if err := c.run(p); err != nil {
			c.log.Error("pod restart failed", "pod", p.Name, "err", err)
			return
		}
		c.mu.Lock()
		p.phase = PhaseReady
		c.mu.Unlock()
		c.changed()
	}()
	return p.Name, nil
}

// Freeze stops (frozen=true) or resumes a pod's process, like SIGSTOP/SIGCONT: it keeps
// accepting TCP connections but answers nothing, and stays in the endpoints (nothing tells
// Kubernetes). It returns the pod's name.
func (c *Cluster) Freeze(name string, frozen bool) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	what := " to freeze (all are frozen)"
	if !frozen {
		what = " that is frozen"
	}
	p, err := c.find(name, func(p *Pod) bool { return p.frz.Frozen() != frozen }, what)
	if err != nil {
		return "", err
	}
	p.frz.Set(frozen)
	c.log.Info("pod frozen", "pod", p.Name, "frozen", frozen)
	return p.Name, nil
}

// Slow makes every call to a pod take at least d longer (0 restores it).
func (c *Cluster) Slow(name string, d time.Duration) (string, error) {
	if d < 0 || d > time.Minute {
		return "", fmt.Errorf("demo: delay %v: want 0 to 1m", d)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var want func(*Pod) bool
	what := ""
	if d == 0 { // restoring: pick a pod that is slowed
		want, what = func(p *Pod) bool { return p.delay > 0 }, " that is slowed"
	}
	p, err := c.find(name, want, what)
	if err != nil {
		return "", err
	}
	p.delay = d
	p.srv.SetDelay(d)
	return p.Name, nil
}

// Rollout starts a rolling restart, like a Deployment with maxSurge 1 and maxUnavailable 0:
// a pod of a new ReplicaSet starts, its endpoint goes out, then one old pod is deleted
// gracefully; repeat. It returns at once; RolloutState reports progress.
func (c *Cluster) Rollout() (RolloutStatus, error) {
	c.mu.Lock()
	if c.rollout != nil && !c.rollout.Finished {
		st := *c.rollout
		c.mu.Unlock()
		return st, errors.New("demo: a rollout is in progress")
	}
	var old []*Pod
	for _, p := range c.pods {
		if p.phase != PhaseTerminating {
			old = append(old, p)
		}
	}
	c.hash = randomName(10)
	st := &RolloutStatus{ReplicaSet: c.hash, Total: len(old), Started: time.Now()}
	c.rollout = st
	snapshot := *st
	c.mu.Unlock()
	c.log.Info("rollout", "replicaset", snapshot.ReplicaSet, "pods", len(old))
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for _, p := range old {
			if _, err := c.addPod(); err != nil {
				c.log.Error("rollout: new pod", "err", err)
				return
			}
			c.changed()
			// Wait until the new pod's endpoint is out, plus minReadySeconds.
			t := time.NewTimer(c.cfg.EndpointDelay + c.cfg.RolloutPause)
			select {
			case <-t.C:
			case <-c.ctx.Done():
				t.Stop()
				return
			}
			c.terminate(p)
			c.changed()
			c.mu.Lock()
			st.Done++
			c.mu.Unlock()
		}
		c.mu.Lock()
		st.Finished = true
		c.mu.Unlock()
	}()
	return snapshot, nil
}

// RolloutState reports the last rollout, if any.
func (c *Cluster) RolloutState() (RolloutStatus, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rollout == nil {
		return RolloutStatus{}, false
	}
	return *c.rollout, true
}

// Stop drains every pod and stops DNS and VIP, bounded by ctx.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	c.mu.Unlock()
	c.cancel()
	// Background work (terminations, restarts, rollouts) ends first, so the pod list is final.
	bg := make(chan struct{})
	go func() { c.wg.Wait(); close(bg) }()
	var errs []error
	select {
	case <-bg:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("demo: background work: %w", ctx.Err()))
	}
	c.mu.Lock()
	pods := append(slices.Clone(c.pods), c.v2...)
	c.mu.Unlock()
	for _, p := range pods {
		c.mu.Lock()
		cancel, frz := p.cancel, p.frz
		c.mu.Unlock()
		if frz != nil {
			frz.Close()
		}
		if cancel != nil {
			cancel()
		}
	}
	for _, p := range pods {
		c.mu.Lock()
		done, srv, phase := p.done, p.srv, p.phase
		c.mu.Unlock()
		if done == nil || phase == PhaseRestarting {
			continue
		}
		select {
		case err := <-done:
			errs = append(errs, err)
		case <-ctx.Done():
			srv.Stop()
			errs = append(errs, fmt.Errorf("demo: pod %s: %w", p.Name, ctx.Err()))
		}
	}
	if c.xds != nil {
		errs = append(errs, c.xds.stop(ctx))
	}
	errs = append(errs, c.vip.Close(ctx))
	if c.dnsAddr != "" {
		errs = append(errs, c.dns.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

const nameChars = "bcdfghjklmnpqrstvwxz2456789" // the alphabet Kubernetes uses for generated names

func randomName(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = nameChars[int(b[i])%len(nameChars)]
	}
	return string(b)
}

// Validate reports the first invalid field (after filling in the defaults on a copy).
func (c Config) Validate() error { return c.defaults() }
