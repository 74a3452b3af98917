package xdsinterop

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"google.golang.org/grpc"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/echotest"
	"github.com/spread-grpc/spread/internal/kubetest"
	"github.com/spread-grpc/spread/internal/xds"
	"github.com/spread-grpc/spread/internal/xdscmd"
)

// The Services of the matrix, all over the same pods, each with its own EndpointSlice.
var services = []struct {
	name string
	ann  map[string]string
}{
	{"be", map[string]string{xds.AnnotationLBPolicy: "round_robin"}},
	{"be-rh", map[string]string{xds.AnnotationLBPolicy: "ring_hash", xds.AnnotationHashHeader: "x-user"}},
	{"be-lr", map[string]string{xds.AnnotationLBPolicy: "least_request"}},
	{"be-wrr", map[string]string{xds.AnnotationLBPolicy: "weighted_round_robin"}},
}

// podZones are the zones of pods be-1..be-7: five at first (a, a, b, b, c), two to add.
var podZones = []string{"", "zone-a", "zone-a", "zone-b", "zone-b", "zone-c", "zone-c", "zone-a"}

type pod struct {
	i                  int
	ready, terminating bool
}

// env is a real API server with the Services above, `spread xds` (xdscmd.Run) fed by its
// Services and EndpointSlices, and seven echo backends on loopback.
type env struct {
	t        testing.TB
	ctx      context.Context
	cs       kubernetes.Interface
	rc       *rest.Config                 // the admin's
	backends map[string]*echotest.Backend // by pod name
	admin    string                       // http://host:port
	ads      string

	mu     sync.Mutex
	slices map[string]*discoveryv1.EndpointSlice
}

// mappedEndpoints serves the EndpointSlices' documentation addresses (192.0.2.i:50051) as
// the loopback backends standing for those pods, so that clients in other languages, which
// take no test dialer, reach them. An address without a backend is dropped: no client is
// ever sent a 192.0.2.x address.
type mappedEndpoints struct {
	inner xds.EndpointSource
	to    map[string]string // 192.0.2.i:50051 → 127.0.0.1:port
}

func (m mappedEndpoints) Subscribe(ctx context.Context, k endpoint.Key, fn func(endpoint.Set)) (func(), error) {
	return m.inner.Subscribe(ctx, k, func(s endpoint.Set) {
		out := make([]endpoint.Endpoint, 0, len(s))
		for _, e := range s {
			to, ok := m.to[e.HostPort()]
			if !ok {
				continue
			}
			host, port, _ := net.SplitHostPort(to)
			p, _ := strconv.Atoi(port)
			e.Address, e.Port = host, int32(p)
			out = append(out, e)
		}
		fn(endpoint.NewSet(out))
	})
}

func podName(i int) string { return fmt.Sprintf("be-%d", i) }

func startEnv(t testing.TB) *env {
	kc := kubetest.Start(t)
	// GRPCRoutes are looked for once, at start (TestNodeGRPCRoute uses them).
	kc.InstallCRDs(t, kubetest.GatewayAPICRD(t, "grpcroutes"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	cs, err := kubernetes.NewForConfig(kc.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, cs: cs, rc: kc.RESTConfig(), backends: map[string]*echotest.Backend{}, slices: map[string]*discoveryv1.EndpointSlice{}}
	to := map[string]string{}
	for i := 1; i < len(podZones); i++ {
		b := echotest.Start(t, podName(i), podZones[i])
		e.backends[b.Name] = b
		to[fmt.Sprintf("192.0.2.%d:50051", i)] = b.Addr
	}
	for _, s := range services {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: "default", Annotations: s.ann},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 50051}}, Selector: map[string]string{"app": "be"}},
		}
		if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		sl := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: s.name + "-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: s.name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](50051), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		e.slices[s.name] = sl
		if err := e.setPods(s.name, readyPods(1, 2, 3, 4, 5)...); err != nil {
			t.Fatal(err)
		}
	}

	cfg := xdscmd.DefaultConfig()
	cfg.Listen, cfg.AdminListen, cfg.ShutdownGrace = "127.0.0.1:0", "127.0.0.1:0", 5*time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	eps, svcs, closeKube, err := xdscmd.KubeSourcesForConfig(kc.RESTConfig(), cfg, cfg.Logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeKube)
	cfg.Endpoints, cfg.Services = mappedEndpoints{inner: eps, to: to}, svcs
	addrs := make(chan [2]net.Addr, 1)
	cfg.Started = func(ads, admin net.Addr) { addrs <- [2]net.Addr{ads, admin} }
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- xdscmd.Run(runCtx, cfg) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("xdscmd.Run: %v", err)
		}
	})
	select {
	case a := <-addrs:
		e.ads, e.admin = a[0].String(), "http://"+a[1].String()
	case err := <-done:
		t.Fatalf("xdscmd.Run: %v", err)
	}
	return e
}

func readyPods(is ...int) []pod {
	out := make([]pod, len(is))
	for j, i := range is {
		out[j] = pod{i: i, ready: true}
	}
	return out
}

// setPods writes Service svc's EndpointSlice with pods.
func (e *env) setPods(svc string, pods ...pod) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	sl := e.slices[svc]
	sl.Endpoints = nil
	for _, p := range pods {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("192.0.2.%d", p.i)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(p.ready), Serving: ptr.To(true), Terminating: ptr.To(p.terminating)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: podName(p.i), Namespace: "default"},
			Zone:       ptr.To(podZones[p.i]),
		})
	}
	var err error
	var out *discoveryv1.EndpointSlice
	if sl.ResourceVersion == "" {
		out, err = e.cs.DiscoveryV1().EndpointSlices("default").Create(e.ctx, sl, metav1.CreateOptions{})
	} else {
		out, err = e.cs.DiscoveryV1().EndpointSlices("default").Update(e.ctx, sl, metav1.UpdateOptions{})
	}
	if err != nil {
		return err
	}
	e.slices[svc] = out
	return nil
}

func (e *env) bootstrap(nodeID, zone string) []byte {
	b, err := xds.Bootstrap(xds.BootstrapConfig{ServerURI: e.ads, NodeID: nodeID, Zone: zone})
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// dump reads /debug/xds.
func (e *env) dump() (xds.Dump, error) {
	var d xds.Dump
	resp, err := http.Get(e.admin + "/debug/xds")
	if err != nil {
		return d, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&d)
	return d, err
}

// clientNacks sums the NACKs of every ADS stream whose node id starts with prefix.
func clientNacks(d xds.Dump, prefix string) (int, []string) {
	n := 0
	var errs []string
	for _, c := range d.Clients {
		if !strings.HasPrefix(c.NodeID, prefix) {
			continue
		}
		for t, ts := range c.Types {
			n += ts.Nacks
			if ts.Error != "" {
				errs = append(errs, t+": "+ts.Error)
			}
		}
	}
	return n, errs
}

// kind is one client implementation of the matrix.
type kind struct {
	name string
	// start returns a client with the given bootstrap; idle > 0 sets its channels' idle timeout.
	start func(t testing.TB, name string, boot []byte, idle time.Duration) client
	// port is the port form the client dials.
	port string
	// randomLocality: the client picks a locality at random by weight, then round-robins
	// inside it (pre-A52 C-core's weighted_target), so its balance is statistical.
	randomLocality bool
	// noRingHash says why the client is left out of the ring_hash checks, if it is.
	noRingHash string
}

func kinds(t testing.TB) []kind {
	goKind := kind{name: "grpc-go", port: "grpc", start: func(t testing.TB, _ string, boot []byte, idle time.Duration) client {
		var opts []grpc.DialOption
		if idle > 0 {
			opts = append(opts, grpc.WithIdleTimeout(idle))
		}
		return newGoClient(t, boot, opts...)
	}}
	nodeKind := kind{name: "grpc-js-xds", port: "50051", start: func(t testing.TB, name string, boot []byte, idle time.Duration) client {
		node, modules := nodeModules(t)
		env := []string{"NODE_PATH=" + modules}
		if idle > 0 {
			env = append(env, fmt.Sprintf("IDLE_TIMEOUT_MS=%d", idle.Milliseconds()))
		}
		return startProc(t, name, boot, env, node, filepath.Join(repoRoot(t), "examples", "node", "client.js"), "--lines", "xds:///be.default:50051")
	}}
	ccoreKind := kind{name: "c-core", port: "50051", randomLocality: true,
		noRingHash: "Debian's python3-grpcio 1.51 dies with SIGSEGV on its first ring_hash pick, whatever the EDS weights (tried unit/n and 1)",
		start: func(t testing.TB, name string, boot []byte, idle time.Duration) client {
			py := python(t)
			env := []string{"GRPC_VERBOSITY=" + os.Getenv("SPREAD_INTEROP_CCORE_VERBOSITY")}
			if idle > 0 {
				env = append(env, fmt.Sprintf("IDLE_TIMEOUT_MS=%d", idle.Milliseconds()))
			}
			return startProc(t, name, boot, env, py, filepath.Join(repoRoot(t), "internal", "xdsinterop", "testdata", "ccore_client.py"), "xds:///be.default:50051")
		}}
	all := []kind{goKind, nodeKind, ccoreKind}
	// SPREAD_INTEROP_KINDS=grpc-go,c-core runs only those (for a quick look at one client).
	if only := os.Getenv("SPREAD_INTEROP_KINDS"); only != "" {
		all = slices.DeleteFunc(all, func(k kind) bool { return !slices.Contains(strings.Split(only, ","), k.name) })
	}
	return all
}

func target(svc, port string) string { return "xds:///" + svc + ".default:" + port }

// evenWithin reports whether counts has exactly the pods want, each want±tol... of n.
func balanced(counts map[string]int, pods []string, each, tol int) bool {
	if len(counts) != len(pods) {
		return false
	}
	for _, p := range pods {
		if c := counts[p]; c < each-tol || c > each+tol {
			return false
		}
	}
	return true
}

func maxMin(counts map[string]int) float64 {
	if len(counts) == 0 {
		return 0
	}
	vs := slices.Collect(maps.Values(counts))
	return float64(slices.Max(vs)) / float64(max(slices.Min(vs), 1))
}

// TestInteropMatrix: grpc-go, grpc-js-xds and C-core (pre-A52) against `spread xds` fed by
// real EndpointSlices, 5 pods in zones a, a, b, b, c.
//
//   - round_robin: 1000 calls → every pod 200 ± 10, with a client zone without pods and
//     without a zone (each client kind's bootstrap from xds.Bootstrap, unmodified);
//   - ring_hash: one key → one pod; 1000 distinct keys → every pod within ±30 % of 200;
//   - least_request and weighted_round_robin Services: every call served, 0 NACKs;
//   - a pod added → it gets calls (within a generous deadline: this asserts the mechanism,
//     the latency is measured by BenchmarkInteropDiscovery); a pod turned terminating → no
//     new calls once the client has ACKed the assignment;
//   - a channel that went idle and re-subscribes with the versions it has keeps working;
//   - no client NACKs anything, and /debug/xds lists every client.
func TestInteropMatrix(t *testing.T) {
	ks := kinds(t)
	e := startEnv(t)
	ctx := e.ctx
	first5 := []string{"be-1", "be-2", "be-3", "be-4", "be-5"}

	type running struct {
		kind
		zoned, idle client // zoned: bootstrap zone "zone-x" (no pods); idle: no zone, 1 s idle timeout
	}
	var rs []running
	for _, k := range ks {
		rs = append(rs, running{kind: k,
			zoned: k.start(t, k.name+"-zoned", e.bootstrap(k.name+"-zoned", "zone-x"), 0),
			idle:  k.start(t, k.name+"-idle", e.bootstrap(k.name+"-idle", ""), time.Second)})
	}
	do := func(t *testing.T, c client, r request) reply {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		rep, err := c.do(rctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	// warm: every Service's channel reaches all five pods before anything is counted.
	warm := func(t *testing.T, r running, c client, svc string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			rep := do(t, c, request{Target: target(svc, r.port), N: 50})
			if len(rep.Counts) == 5 && rep.failed() == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s %s: not all pods reached: %v %v", r.name, svc, rep.Counts, rep.Errors)
			}
		}
	}

	t.Run("round_robin", func(t *testing.T) {
		for _, r := range rs {
			for _, cl := range []struct {
				name string
				c    client
			}{{"zone without pods", r.zoned}, {"no zone", r.idle}} {
				warm(t, r, cl.c, "be")
				// Round robin is exact: 200±10 of 1000. A client picking localities at random
				// by weight is even in expectation: 5000 calls, 1000±15 % each (a pod's count
				// has σ ≈ 28, so the bound is 5σ; with every locality at weight 1 the zone-c
				// pod would get ~1667).
				n, each, tol := 1000, 200, 10
				if r.randomLocality {
					n, each, tol = 5000, 1000, 150
				}
				rep := do(t, cl.c, request{Target: target("be", r.port), N: n})
				t.Logf("%s, %s: %d calls: %v, max/min %.2f, errors %v", r.name, cl.name, n, rep.Counts, maxMin(rep.Counts), rep.Errors)
				if rep.failed() != 0 || !balanced(rep.Counts, first5, each, tol) {
					t.Errorf("%s, %s: %d calls %v errors %v; want %d±%d on each of 5 pods", r.name, cl.name, n, rep.Counts, rep.Errors, each, tol)
				}
			}
		}
		// grpc-go also dials the named port (others cannot: see docs/xds.md).
		rep := do(t, rs[0].zoned, request{Target: target("be", "grpc"), N: 1000})
		if rep.failed() != 0 || !balanced(rep.Counts, first5, 200, 10) {
			t.Errorf("grpc-go by name: %v %v", rep.Counts, rep.Errors)
		}
	})

	t.Run("ring_hash", func(t *testing.T) {
		for _, r := range rs {
			if r.noRingHash != "" && os.Getenv("SPREAD_INTEROP_FORCE_RING_HASH") != "1" {
				t.Logf("%s: not checked: %s", r.name, r.noRingHash)
				continue
			}
			tg := target("be-rh", r.port)
			// Distinct keys first: this also connects every pod (ring_hash connects lazily).
			deadline := time.Now().Add(60 * time.Second)
			var rep reply
			for {
				rep = do(t, r.zoned, request{Target: tg, N: 1000, Header: "x-user", Key: "user-", Distinct: true})
				if len(rep.Counts) == 5 && rep.failed() == 0 || time.Now().After(deadline) {
					break
				}
			}
			t.Logf("%s: 1000 distinct keys: %v, max/min %.2f", r.name, rep.Counts, maxMin(rep.Counts))
			if rep.failed() != 0 || !balanced(rep.Counts, first5, 200, 60) {
				t.Errorf("%s: 1000 distinct keys %v errors %v; want every pod within 200±30%%", r.name, rep.Counts, rep.Errors)
			}
			for _, key := range []string{"alice", "bob", "carol"} {
				rep := do(t, r.zoned, request{Target: tg, N: 100, Header: "x-user", Key: key})
				if rep.failed() != 0 || len(rep.Counts) != 1 {
					t.Errorf("%s: key %q: %v errors %v; want one pod", r.name, key, rep.Counts, rep.Errors)
				}
			}
		}
	})

	t.Run("least_request and weighted_round_robin fall back", func(t *testing.T) {
		for _, r := range rs {
			for _, svc := range []string{"be-lr", "be-wrr"} {
				warm(t, r, r.zoned, svc)
				rep := do(t, r.zoned, request{Target: target(svc, r.port), N: 200})
				if rep.failed() != 0 || len(rep.Counts) != 5 {
					t.Errorf("%s %s: %v errors %v; want every call served by the 5 pods", r.name, svc, rep.Counts, rep.Errors)
				}
			}
		}
	})

	t.Run("pod added and removed", func(t *testing.T) {
		if err := e.setPods("be", readyPods(1, 2, 3, 4, 5, 6)...); err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			deadline := time.Now().Add(30 * time.Second)
			for {
				rep := do(t, r.zoned, request{Target: target("be", r.port), N: 6, UntilPod: "be-6"})
				if rep.Counts["be-6"] > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: the added pod be-6 got no call within 30 s: %v %v", r.name, rep.Counts, rep.Errors)
				}
			}
		}
		d, err := e.dump()
		if err != nil {
			t.Fatal(err)
		}
		before := map[int64]string{}
		for _, c := range d.Clients {
			before[c.Stream] = c.Types["endpoint"].Acked
		}
		// be-1 terminates: ready false, serving, terminating (what the endpointslice
		// controller writes for a deleted pod).
		if err := e.setPods("be", pod{i: 1, terminating: true}, pod{i: 2, ready: true}, pod{i: 3, ready: true},
			pod{i: 4, ready: true}, pod{i: 5, ready: true}, pod{i: 6, ready: true}); err != nil {
			t.Fatal(err)
		}
		// Wait until every zoned client has ACKed a newer assignment of "be".
		deadline := time.Now().Add(30 * time.Second)
		for {
			d, err := e.dump()
			if err != nil {
				t.Fatal(err)
			}
			waiting := 0
			for _, c := range d.Clients {
				if strings.HasSuffix(c.NodeID, "-zoned") && slices.Contains(c.Types["endpoint"].Resources, "be.default:grpc") {
					if ts := c.Types["endpoint"]; ts.Acked == before[c.Stream] || ts.Acked != ts.Sent {
						waiting++
					}
				}
			}
			if waiting == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d clients did not ACK the assignment without be-1 within 30 s", waiting)
			}
			time.Sleep(20 * time.Millisecond) // polling the admin endpoint; the condition is the ACK
		}
		for _, r := range rs {
			// The picker update may trail the ACK by a moment: the first batch without be-1
			// shows it is out, the next 300 calls that it stays out.
			deadline := time.Now().Add(30 * time.Second)
			for {
				rep := do(t, r.zoned, request{Target: target("be", r.port), N: 10})
				if rep.Counts["be-1"] == 0 && rep.failed() == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: terminating be-1 still gets calls: %v", r.name, rep.Counts)
				}
			}
			rep := do(t, r.zoned, request{Target: target("be", r.port), N: 300})
			if rep.Counts["be-1"] != 0 || rep.failed() != 0 || len(rep.Counts) != 5 {
				t.Errorf("%s: after be-1 terminated: %v errors %v; want be-2..6 only", r.name, rep.Counts, rep.Errors)
			}
		}
	})

	t.Run("idle channel re-subscribes", func(t *testing.T) {
		for _, r := range rs {
			tg := target("be", r.port)
			deadline := time.Now().Add(60 * time.Second)
			for {
				rep := do(t, r.idle, request{Target: tg, State: true})
				if rep.State == "IDLE" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: channel never went idle (state %s)", r.name, rep.State)
				}
				time.Sleep(100 * time.Millisecond) // polling the channel state; the condition is IDLE
			}
			// Every call succeeds at once (each has a 5 s deadline: a control plane that left
			// the re-subscription unanswered fails them), never on the terminated be-1; the
			// later pods join as their connections become ready again.
			rep := do(t, r.idle, request{Target: tg, N: 60})
			if rep.failed() != 0 || rep.Counts["be-1"] != 0 {
				t.Errorf("%s: calls after idle: %v errors %v; want be-2..6, no errors", r.name, rep.Counts, rep.Errors)
			}
			deadline = time.Now().Add(30 * time.Second)
			for rep.Counts["be-6"] == 0 && time.Now().Before(deadline) {
				rep = do(t, r.idle, request{Target: tg, N: 10, UntilPod: "be-6"})
			}
			if rep.Counts["be-6"] == 0 || rep.failed() != 0 {
				t.Errorf("%s: after idle be-6 never called: %v %v", r.name, rep.Counts, rep.Errors)
			}
		}
	})

	t.Run("no NACKs", func(t *testing.T) {
		d, err := e.dump()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			n, errs := clientNacks(d, r.name+"-")
			streams := 0
			for _, c := range d.Clients {
				if strings.HasPrefix(c.NodeID, r.name+"-") {
					streams++
					t.Logf("%s: stream %d %s (%s)", r.name, c.Stream, c.NodeID, c.UserAgent)
				}
			}
			t.Logf("%s: %d ADS streams, %d NACKs", r.name, streams, n)
			if streams == 0 {
				t.Errorf("%s: no ADS stream in /debug/xds", r.name)
			}
			if n != 0 {
				t.Errorf("%s: %d NACKs: %v", r.name, n, errs)
			}
		}
		if len(d.Nacks) != 0 {
			t.Errorf("standing NACKs: %+v", d.Nacks)
		}
	})
}
