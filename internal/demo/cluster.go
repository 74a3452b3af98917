// Package demo is a whole simulated Kubernetes cluster in one process, on loopback: backend
// "pods" of a Deployment on 127.0.1.x, an authoritative cluster DNS (ClusterIP and headless
// Service names), and a kube-proxy-like L4 VIP. Its endpoint state is an endpoint.Publisher per
// Service, the same model the Kubernetes source produces, so every consumer (DNS, VIP, xDS,
// resolvers) works against it unchanged.
package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/backend"
	"github.com/spread-grpc/spread/internal/clusterdns"
	"github.com/spread-grpc/spread/internal/vip"
)

// Names of the simulated objects, as in the sample's manifests.
const (
	Namespace        = "default"
	Deployment       = "be-deployment"
	ClusterIPService = "be-srv"
	HeadlessService  = "be-srv-lb"
	PortName         = "grpc"
)

// ClusterConfig describes the simulated cluster.
type ClusterConfig struct {
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
}

// MaxReplicas bounds the Deployment's size.
const MaxReplicas = 200

func (c *ClusterConfig) defaults() error {
	if c.Replicas == 0 {
		c.Replicas = 5
	}
	if c.Replicas < 0 || c.Replicas > MaxReplicas {
		return fmt.Errorf("demo: replicas %d: want 1 to %d", c.Replicas, MaxReplicas)
	}
	if !c.FirstPodIP.IsValid() {
		c.FirstPodIP = netip.MustParseAddr("127.0.1.1")
	}
	if !c.FirstPodIP.Is4() || !c.FirstPodIP.IsLoopback() {
		return fmt.Errorf("demo: first pod IP %s: want an IPv4 loopback address (127.0.0.0/8)", c.FirstPodIP)
	}
	last := c.FirstPodIP
	for range MaxReplicas + c.Replicas {
		last = last.Next()
	}
	if !last.IsLoopback() {
		return fmt.Errorf("demo: first pod IP %s leaves no room for %d pods inside 127.0.0.0/8", c.FirstPodIP, MaxReplicas)
	}
	if c.PodPort < 0 || c.PodPort > 65535 {
		return fmt.Errorf("demo: pod port %d: want 0 to 65535", c.PodPort)
	}
	if c.PodPort == 0 && c.VIP == "" {
		c.PodPort = 50051
	}
	if c.VIP == "" {
		c.VIP = net.JoinHostPort("127.96.0.10", strconv.Itoa(c.PodPort))
	}
	if c.DNSAddr == "" {
		c.DNSAddr = "127.0.0.1:8053"
	}
	if c.Domain == "" {
		c.Domain = "cluster.local"
	}
	if c.DNSTTL == 0 {
		c.DNSTTL = 5 * time.Second
	}
	if c.DNSTTL < 0 {
		return fmt.Errorf("demo: DNS TTL %v is negative", c.DNSTTL)
	}
	if c.Grace == 0 {
		c.Grace = 5 * time.Second
	}
	if len(c.Zones) == 0 {
		c.Zones = []string{"zone-a", "zone-b", "zone-c"}
	}
	for _, a := range []string{c.VIP, c.DNSAddr} {
		if err := loopbackHostPort(a); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	return nil
}

func loopbackHostPort(hp string) error {
	ap, err := netip.ParseAddrPort(hp)
	if err != nil {
		return fmt.Errorf("address %q: want ip:port: %v", hp, err)
	}
	if !ap.Addr().IsLoopback() {
		return fmt.Errorf("address %q: the demo only uses loopback addresses", hp)
	}
	return nil
}

// Pod is one simulated backend pod.
type Pod struct {
	Name string
	IP   netip.Addr
	Port int
	Zone string
	Node string

	srv    *backend.Server
	cancel context.CancelFunc
	done   chan error
	state  podState
}

type podState int

const (
	podReady podState = iota
	podTerminating
)

// Endpoint returns the pod's entry in the Service's endpoint set.
func (p *Pod) Endpoint() endpoint.Endpoint {
	return endpoint.Endpoint{
		Address: p.IP.String(), Port: int32(p.Port), Pod: p.Name, Node: p.Node, Zone: p.Zone,
		Ready: p.state == podReady, Serving: true, Terminating: p.state == podTerminating,
	}
}

// Cluster is the running simulated cluster. Its methods may be called concurrently.
type Cluster struct {
	cfg ClusterConfig
	log *slog.Logger
	reg prometheus.Registerer

	dns     *clusterdns.Server
	dnsAddr string
	vip     *vip.Proxy
	vipAddr string
	eps     endpoint.Publisher // the Service's endpoints: both Services select the same pods

	mu      sync.Mutex
	pods    []*Pod
	hash    string // the current ReplicaSet's pod-template hash
	nextIP  netip.Addr
	port    int
	stopped bool

	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// StartCluster starts the pods, the DNS server and the VIP. Stop it with Stop.
func StartCluster(cfg ClusterConfig, log *slog.Logger) (*Cluster, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cluster{cfg: cfg, log: log, nextIP: cfg.FirstPodIP, port: cfg.PodPort, hash: randomName(10), cancel: cancel}
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
	c.publish()
	// DNS and VIP follow the endpoint model, like CoreDNS and kube-proxy follow EndpointSlices.
	c.wg.Add(1)
	wait := c.eps.Subscribe(ctx, func(s endpoint.Set) {
		ready := s.Ready()
		addrs := make([]netip.Addr, 0, len(ready))
		for _, e := range ready {
			addrs = append(addrs, netip.MustParseAddr(e.Address))
		}
		c.dns.Set(c.ServiceName(HeadlessService), addrs)
		c.vip.SetBackends(ready.HostPorts())
	})
	go func() { defer c.wg.Done(); wait() }()
	return c, nil
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
func (c *Cluster) Port() int { return c.port }

// DNS returns the cluster DNS server.
func (c *Cluster) DNS() *clusterdns.Server { return c.dns }

// VIP returns the ClusterIP proxy.
func (c *Cluster) VIP() *vip.Proxy { return c.vip }

// Target returns the gRPC target of a Service through the cluster DNS, as a client in the
// cluster would dial it, e.g. dns://127.0.0.1:8053/be-srv-lb.default.svc.cluster.local:50051.
func (c *Cluster) Target(svc string) string {
	return fmt.Sprintf("dns://%s/%s:%d", c.dnsAddr, c.ServiceName(svc), c.port)
}

// Pods returns a snapshot of the current pods' endpoints.
func (c *Cluster) Pods() []endpoint.Endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]endpoint.Endpoint, 0, len(c.pods))
	for _, p := range c.pods {
		out = append(out, p.Endpoint())
	}
	return out
}

// Subscribe implements the endpoint source interface of Spread's consumers for the demo's
// Services: key.Service is be-srv or be-srv-lb in namespace default, key.Port the port number
// or "grpc". fn gets the current set first, then every change, until ctx is done.
func (c *Cluster) Subscribe(ctx context.Context, key endpoint.Key, fn func(endpoint.Set)) (func(), error) {
	if key.Namespace != Namespace || (key.Service != HeadlessService && key.Service != ClusterIPService) {
		return nil, fmt.Errorf("demo: no Service %s/%s (have %s and %s in %s)", key.Namespace, key.Service, ClusterIPService, HeadlessService, Namespace)
	}
	if key.Port != PortName && key.Port != strconv.Itoa(c.port) {
		return nil, fmt.Errorf("demo: Service %s has no port %q (have %d, named %q)", key.Service, key.Port, c.port, PortName)
	}
	return c.eps.Subscribe(ctx, fn), nil
}

// publish pushes the current pods as the Service's endpoint set.
func (c *Cluster) publish() {
	c.eps.Publish(endpoint.NewSet(c.Pods()))
}

// addPod starts one new pod of the current ReplicaSet. It does not publish.
func (c *Cluster) addPod() (*Pod, error) {
	c.mu.Lock()
	ip := c.nextIP
	c.nextIP = c.nextIP.Next()
	n := len(c.pods)
	port := c.port
	c.mu.Unlock()

	lis, err := net.Listen("tcp", netip.AddrPortFrom(ip, uint16(port)).String())
	if err != nil {
		return nil, fmt.Errorf("demo: pod on %s: %w", ip, err)
	}
	if port == 0 {
		port = lis.Addr().(*net.TCPAddr).Port
		c.mu.Lock()
		c.port = port
		c.mu.Unlock()
	}
	p := &Pod{
		Name: fmt.Sprintf("%s-%s-%s", Deployment, c.hash, randomName(5)),
		IP:   ip, Port: port,
		Zone: c.cfg.Zones[n%len(c.cfg.Zones)],
		Node: fmt.Sprintf("node-%d", n%len(c.cfg.Zones)+1),
		done: make(chan error, 1),
	}
	p.srv, err = backend.New(backend.Config{Pod: p.Name, Zone: p.Zone, Grace: c.cfg.Grace},
		backend.WithLogger(c.log))
	if err != nil {
		lis.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() { p.done <- p.srv.Serve(ctx, lis) }()
	c.mu.Lock()
	c.pods = append(c.pods, p)
	c.mu.Unlock()
	c.log.Debug("pod started", "pod", p.Name, "addr", lis.Addr().String(), "zone", p.Zone)
	return p, nil
}

// Stop drains every pod and stops DNS and VIP, bounded by ctx.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	pods := slices.Clone(c.pods)
	c.mu.Unlock()

	c.cancel()
	var errs []error
	for _, p := range pods {
		p.cancel()
	}
	for _, p := range pods {
		select {
		case err := <-p.done:
			errs = append(errs, err)
		case <-ctx.Done():
			p.srv.Stop()
			errs = append(errs, fmt.Errorf("demo: pod %s: %w", p.Name, ctx.Err()))
		}
	}
	errs = append(errs, c.vip.Close(ctx))
	errs = append(errs, c.dns.Shutdown(ctx))
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
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
func (c ClusterConfig) Validate() error { return c.defaults() }
