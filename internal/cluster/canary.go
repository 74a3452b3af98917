package cluster

import (
	"fmt"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/grpcroute"
)

// The canary: a second Deployment, be-v2, behind its own Service, and a ready-made Gateway
// API GRPCRoute (docs/grpcroute.md) attached to CanaryService that sends CanaryWeight % of
// its calls to be-v2 and the rest to be-srv. The route goes through the same translation as
// `spread xds` applies to GRPCRoutes in a cluster (grpcroute.NewStatic). CanaryService
// selects the same pods as be-srv; it is the Service the xds-canary mode (package modes) dials, so the other
// modes keep comparing balancing over the same pods.
const (
	CanaryService = "be-srv-canary"
	V2Deployment  = "be-v2"
	V2Service     = "be-v2"
	// CanaryRoute is the GRPCRoute's name.
	CanaryRoute = "be-canary"
	// V2Replicas is be-v2's size.
	V2Replicas = 2
)

// canaryRouteYAML is the demo's route, as `kubectl apply` would take it (deploy/examples/canary
// has the same for a real cluster).
const canaryRouteYAML = `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata:
  name: %s
  namespace: %s
spec:
  parentRefs:
    - {group: "", kind: Service, name: %s}
  rules:
    - backendRefs:
        - {name: %s, port: %d, weight: %d}
        - {name: %s, port: %d, weight: %d}
`

// CanaryRoutes returns the demo's canary route for pods on port, weight % to be-v2.
func CanaryRoutes(port, weight int) ([]*gatewayv1.GRPCRoute, error) {
	if weight < 0 || weight > 100 {
		return nil, fmt.Errorf("demo: canary weight %d: want 0 to 100", weight)
	}
	return grpcroute.ParseRoutes(fmt.Appendf(nil, canaryRouteYAML, CanaryRoute, Namespace, CanaryService,
		ClusterIPService, port, 100-weight, V2Service, port, weight), Namespace)
}

// HasCanary reports whether the cluster runs be-v2 and the canary route.
func (c *Cluster) HasCanary() bool { return len(c.v2) > 0 }

// startV2 starts be-v2's pods on the addresses just past be's pod range (be's pods keep
// FirstPodIP+i) and publishes their endpoints.
func (c *Cluster) startV2() error {
	hash := randomName(10)
	ip := c.cfg.FirstPodIP
	for range podIPRange {
		ip = ip.Next()
	}
	for i := range V2Replicas {
		if !ip.IsLoopback() {
			return fmt.Errorf("demo: be-v2 pod address %s is not loopback: lower --first-pod-ip or turn the canary off", ip)
		}
		c.mu.Lock()
		c.usedIPs[ip] = true
		p := &Pod{Name: fmt.Sprintf("%s-%s-%s", V2Deployment, hash, randomName(5)), ReplicaSet: hash, IP: ip, Port: c.port,
			Zone: c.cfg.Zones[i%len(c.cfg.Zones)], Node: fmt.Sprintf("node-%d", i%len(c.cfg.Zones)+1), Created: time.Now(), phase: PhaseReady}
		c.mu.Unlock()
		if err := c.run(p); err != nil {
			return err
		}
		c.mu.Lock()
		c.v2 = append(c.v2, p)
		c.mu.Unlock()
		ip = ip.Next()
	}
	c.mu.Lock()
	eps := make([]endpoint.Endpoint, 0, len(c.v2))
	for _, p := range c.v2 {
		eps = append(eps, p.endpoint())
	}
	c.mu.Unlock()
	c.v2eps.Publish(endpoint.NewSet(eps))
	return nil
}

// V2Pods returns be-v2's pods (none without the canary).
func (c *Cluster) V2Pods() []PodStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]PodStatus, 0, len(c.v2))
	for _, p := range c.v2 {
		out = append(out, p.status())
	}
	return out
}
