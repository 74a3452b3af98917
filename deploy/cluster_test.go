package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/resolver"
	grpcxds "google.golang.org/grpc/xds"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/spread-grpc/spread/internal/backend"
	"github.com/spread-grpc/spread/internal/certgen"
	"github.com/spread-grpc/spread/internal/connect"
	"github.com/spread-grpc/spread/internal/frontend"
	"github.com/spread-grpc/spread/internal/kubetest"
	"github.com/spread-grpc/spread/internal/tlsfiles"
	"github.com/spread-grpc/spread/internal/xds"
	"github.com/spread-grpc/spread/internal/xdscmd"
	kuberesolver "github.com/spread-grpc/spread/resolver/kubernetes"
)

// cluster is a real control plane (etcd, kube-apiserver, kube-controller-manager with the
// deployment, replicaset and endpointslice controllers) with three zoned nodes.
type cluster struct {
	*kubetest.Cluster
	admin k8s.Interface
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	kubectl(t)
	c := kubetest.Start(t)
	c.StartControllerManager(t)
	ctx := testCtx(t, time.Minute)
	for i, zone := range []string{"zone-a", "zone-b", "zone-c"} {
		if _, err := c.CreateNode(ctx, fmt.Sprintf("node-%d", i), zone); err != nil {
			t.Fatal(err)
		}
	}
	return &cluster{Cluster: c, admin: k8s.NewForConfigOrDie(c.RESTConfig())}
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func (c *cluster) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runKubectl(t, append([]string{"--kubeconfig=" + c.Kubeconfig()}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// deploy applies overlay into namespace ns the documented way: the namespace, the Secrets
// from the commands `spread certs` prints, then kubectl apply -k. The overlay is wrapped in
// a kustomization that only changes its namespace, so overlays can share one cluster. It
// returns the certificate folder.
func (c *cluster) deploy(t *testing.T, overlay, ns string) string {
	t.Helper()
	c.kubectl(t, "create", "namespace", ns)
	dir := t.TempDir()
	ca, err := certgen.NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b := certgen.Bundle{Dir: filepath.Join(dir, "certs"), Namespace: ns, ClusterDomain: "cluster.local", ValidFor: time.Hour}
	if err := ca.Write(b); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range certgen.KubectlCommands(b) {
		c.kubectl(t, strings.Fields(strings.TrimPrefix(cmd, "kubectl "))...)
	}
	abs, err := filepath.Abs(filepath.Join("overlays", overlay))
	if err != nil {
		t.Fatal(err)
	}
	wrap := filepath.Join(dir, "wrap")
	os.MkdirAll(wrap, 0o755)
	rel, err := filepath.Rel(wrap, abs) // kustomize refuses absolute paths
	if err != nil {
		t.Fatal(err)
	}
	k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: %s\nresources:\n  - %s\n", ns, rel)
	if err := os.WriteFile(filepath.Join(wrap, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	c.kubectl(t, "apply", "-k", wrap)
	return b.Dir
}

// readyPods plays the kubelet until want pods matching selector are Running and Ready, and
// returns them (pods being deleted excluded).
func (c *cluster) readyPods(t *testing.T, ns, selector string, want int) []corev1.Pod {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	for {
		pods, err := c.MarkPodsReady(ctx, ns, selector, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(pods) == want {
			return pods
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s in %s: %d pods ready, want %d", selector, ns, len(pods), want)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitSlices waits until the controller-made EndpointSlices of svc hold exactly the ready
// addresses want.
func (c *cluster) waitSlices(t *testing.T, ns, svc string, want []string) {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	slices.Sort(want)
	var got []string
	for {
		list, err := c.admin.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, s := range list.Items {
			if s.Labels[discoveryv1.LabelManagedBy] != "endpointslice-controller.k8s.io" {
				t.Fatalf("slice %s managed by %q, want the endpointslice controller", s.Name, s.Labels[discoveryv1.LabelManagedBy])
			}
			for _, ep := range s.Endpoints {
				if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
					got = append(got, ep.Addresses...)
				}
			}
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("slices of %s/%s: ready %v, want %v", ns, svc, got, want)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func podIPs(pods []corev1.Pod) []string {
	ips := make([]string, len(pods))
	for i, p := range pods {
		ips[i] = p.Status.PodIP
	}
	return ips
}

// can asks the real authorizer whether a service account may do verb on resource.
func (c *cluster) can(t *testing.T, sa, saNS, verb, group, resource, ns string) bool {
	t.Helper()
	res, sub, _ := strings.Cut(resource, "/") // "grpcroutes/status"
	r, err := c.admin.AuthorizationV1().SubjectAccessReviews().Create(testCtx(t, 10*time.Second), &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{
			User:               "system:serviceaccount:" + saNS + ":" + sa,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + saNS, "system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: group, Resource: res, Subresource: sub},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}

type access struct {
	verb, group, resource, ns string // ns "" means the overlay's namespace; "*" all namespaces
	allowed                   bool
}

func (c *cluster) checkAccess(t *testing.T, sa, ns string, table []access) {
	t.Helper()
	for _, a := range table {
		target := a.ns
		switch target {
		case "":
			target = ns
		case "*":
			target = ""
		}
		if got := c.can(t, sa, ns, a.verb, a.group, a.resource, target); got != a.allowed {
			t.Errorf("%s/%s %s %s.%s in %q: allowed=%v, want %v", ns, sa, a.verb, a.resource, a.group, target, got, a.allowed)
		}
	}
}

// TestOverlaysOnRealCluster applies every overlay to a real control plane: server-side dry
// runs, then real applies; the real endpointslice controller makes the slices of be-srv and
// be-srv-lb from the Deployment's pods; the RBAC is exactly enough; and the kube mode, run
// with the frontend ServiceAccount's own identity and the manifests' flags, spreads calls
// over every pod and follows kubectl scale to 8 and back to 5.
func TestOverlaysOnRealCluster(t *testing.T) {
	c := startCluster(t)

	t.Run("dry-run=server", func(t *testing.T) {
		// kubectl apply --dry-run=server cannot create the namespace its objects go in.
		c.kubectl(t, "create", "namespace", "spread")
		for _, o := range overlays {
			out := c.kubectl(t, "apply", "--dry-run=server", "-k", filepath.Join("overlays", o))
			if !strings.Contains(out, "deployment.apps/be-deployment created (server dry run)") {
				t.Errorf("%s: unexpected dry-run output:\n%s", o, out)
			}
		}
		if n, _ := c.admin.AppsV1().Deployments("spread").List(testCtx(t, 10*time.Second), metav1.ListOptions{}); len(n.Items) != 0 {
			t.Errorf("a dry run created %d Deployments", len(n.Items))
		}
	})

	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			ns := "spread-" + o
			certs := c.deploy(t, o, ns)
			be := c.readyPods(t, ns, "app=be", 5)
			c.readyPods(t, ns, "app=fe", 1)
			if o == "xds" {
				c.readyPods(t, ns, "app=spread-xds", 2)
			}
			c.waitSlices(t, ns, "be-srv", podIPs(be))
			c.waitSlices(t, ns, "be-srv-lb", podIPs(be))

			// The zone the downward API hands the backend (POD_ZONE): copied from the node
			// onto the pod at binding (PodTopologyLabelsAdmission, on by default since 1.35).
			pod, err := c.admin.CoreV1().Pods(ns).Get(testCtx(t, 10*time.Second), be[0].Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if z := pod.Labels[kubetest.ZoneLabel]; !strings.HasPrefix(z, "zone-") {
				t.Errorf("pod %s has no %s label (%q): POD_ZONE would be empty", pod.Name, kubetest.ZoneLabel, z)
			}

			esl := access{verb: "list", group: "discovery.k8s.io", resource: "endpointslices"}
			esw := access{verb: "watch", group: "discovery.k8s.io", resource: "endpointslices"}
			none := []access{esl, esw,
				{verb: "get", resource: "secrets"}, {verb: "list", resource: "pods"}, {verb: "list", resource: "services"}}
			c.checkAccess(t, "spread-backend", ns, none)
			switch o {
			case "kube":
				esl.allowed, esw.allowed = true, true
				c.checkAccess(t, "spread-frontend", ns, []access{esl, esw,
					{verb: "get", group: "discovery.k8s.io", resource: "endpointslices"},
					{verb: "create", group: "discovery.k8s.io", resource: "endpointslices"},
					{verb: "list", group: "discovery.k8s.io", resource: "endpointslices", ns: "default"},
					{verb: "list", group: "discovery.k8s.io", resource: "endpointslices", ns: "*"},
					{verb: "list", resource: "endpoints"}, {verb: "list", resource: "services"},
					{verb: "list", resource: "pods"}, {verb: "get", resource: "secrets"}, {verb: "list", resource: "nodes", ns: "*"},
				})
				// The same, the way an operator checks it.
				if out := c.kubectl(t, "auth", "can-i", "watch", "endpointslices.discovery.k8s.io", "-n", ns,
					"--as=system:serviceaccount:"+ns+":spread-frontend"); strings.TrimSpace(out) != "yes" {
					t.Errorf("kubectl auth can-i watch endpointslices: %q", out)
				}
				testMode(t, c, ns, certs, "kube")
			case "xds":
				c.checkAccess(t, "spread-frontend", ns, none)
				c.checkAccess(t, "spread-xds", ns, []access{
					{verb: "list", group: "discovery.k8s.io", resource: "endpointslices", allowed: true},
					{verb: "watch", group: "discovery.k8s.io", resource: "endpointslices", allowed: true},
					{verb: "list", resource: "services", allowed: true}, {verb: "watch", resource: "services", allowed: true},
					{verb: "get", resource: "services"}, {verb: "get", resource: "secrets"}, {verb: "list", resource: "pods"},
					{verb: "list", resource: "services", ns: "default"}, {verb: "list", resource: "services", ns: "*"},
					{verb: "create", resource: "events", allowed: true}, {verb: "patch", resource: "events", allowed: true},
					{verb: "list", resource: "events"}, {verb: "delete", resource: "events"}, {verb: "update", resource: "services"},
					{verb: "create", resource: "events", ns: "default"},
					{verb: "list", group: "gateway.networking.k8s.io", resource: "grpcroutes", allowed: true},
					{verb: "watch", group: "gateway.networking.k8s.io", resource: "grpcroutes", allowed: true},
					{verb: "update", group: "gateway.networking.k8s.io", resource: "grpcroutes/status", allowed: true},
					{verb: "update", group: "gateway.networking.k8s.io", resource: "grpcroutes"},
					{verb: "create", group: "gateway.networking.k8s.io", resource: "grpcroutes"},
					{verb: "list", group: "gateway.networking.k8s.io", resource: "grpcroutes", ns: "default"},
				})
				testMode(t, c, ns, certs, "xds")
			default:
				c.checkAccess(t, "spread-frontend", ns, none)
			}
		})
	}
}

// fakePods runs one real backend per pod on loopback, with the overlay's backend
// certificate and mTLS, and maps each pod's 192.0.2.x:50051 to it. Nothing ever dials a
// TEST-NET address.
type fakePods struct {
	t     *testing.T
	certs string
	mu    sync.Mutex
	addrs map[string]string // pod ip:port -> loopback address
	stops map[string]func() // pod name -> stop
}

func newFakePods(t *testing.T, certs string) *fakePods {
	p := &fakePods{t: t, certs: certs, addrs: map[string]string{}, stops: map[string]func(){}}
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, stop := range p.stops {
			stop()
		}
	})
	return p
}

func (p *fakePods) sync(pods []corev1.Pod) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pod := range pods {
		if _, ok := p.stops[pod.Name]; ok {
			continue
		}
		f := func(n string) string { return filepath.Join(p.certs, n) }
		srv, err := backend.New(backend.Config{Pod: pod.Name, PodIP: pod.Status.PodIP, Zone: pod.Labels[kubetest.ZoneLabel],
			TLSCert: f("backend.crt"), TLSKey: f("backend.key"), TLSClientCA: f("ca.crt"), Grace: time.Second})
		if err != nil {
			p.t.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			p.t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, lis) }()
		p.addrs[net.JoinHostPort(pod.Status.PodIP, "50051")] = lis.Addr().String()
		p.stops[pod.Name] = func() { cancel(); <-done }
	}
}

func (p *fakePods) dial(ctx context.Context, addr string) (net.Conn, error) {
	p.mu.Lock()
	local, ok := p.addrs[addr]
	p.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no local backend for pod address %s (TEST-NET addresses are never dialled)", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", local)
}

// testMode runs the frontend's kube or xds mode as the manifests configure it (target, TLS
// server name and certificates from the applied Deployment and Secrets) against the
// controller-made slices: kube with the frontend ServiceAccount's identity, xds through
// spread xds (run in-process with the spread-xds ServiceAccount's identity, serving ADS
// over mTLS) and a real grpc-go xDS client. Calls must spread evenly over every pod and
// follow kubectl scale to 8 and back to 5.
func testMode(t *testing.T, c *cluster, ns, certs, name string) {
	ctx := testCtx(t, 3*time.Minute)
	fe, err := c.admin.AppsV1().Deployments(ns).Get(ctx, "fe-deployment", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	args := fe.Spec.Template.Spec.Containers[0].Args
	var target string
	for _, m := range argValues(args, "mode") {
		if v, ok := strings.CutPrefix(m, name+"="); ok {
			target = strings.ReplaceAll(v, "$(POD_NAMESPACE)", ns)
		}
	}
	if target == "" {
		t.Fatalf("fe-deployment has no %s mode: %v", name, args)
	}
	f := func(n string) string { return filepath.Join(certs, n) }
	store, err := tlsfiles.New(tlsfiles.Files{Cert: f("frontend.crt"), Key: f("frontend.key"), CA: f("ca.crt")})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := store.ClientConfig(flagValue(args, "tls-server-name"))
	if err != nil {
		t.Fatal(err)
	}
	identity := func(sa string) *rest.Config {
		return c.UserConfig("system:serviceaccount:"+ns+":"+sa, "system:serviceaccounts", "system:serviceaccounts:"+ns, "system:authenticated")
	}
	quiet := slog.New(slog.DiscardHandler)
	var rb resolver.Builder
	policy := connect.RoundRobin
	switch name {
	case "kube":
		kb, err := kuberesolver.NewBuilder(kuberesolver.WithRESTConfig(identity("spread-frontend")), kuberesolver.WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		defer kb.Close()
		rb = kb
	case "xds":
		rb = startXDS(t, ctx, c, ns, certs, identity("spread-xds"))
		policy = "" // the control plane's Cluster says round_robin
	}
	pods := newFakePods(t, certs)
	pods.sync(c.readyPods(t, ns, "app=be", 5))
	fr, err := frontend.New(frontend.Config{Name: "fe-test", Creds: credentials.NewTLS(tc), Modes: []connect.Mode{{
		Name: name, Target: target, Policy: policy,
		Resolvers: []resolver.Builder{rb}, DialOptions: []grpc.DialOption{grpc.WithContextDialer(pods.dial)},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Close()
	web := httptest.NewServer(fr.Handler())
	defer web.Close()

	spreadOver := func(want []corev1.Pod) {
		t.Helper()
		names := make([]string, len(want))
		for i, p := range want {
			names[i] = p.Name
		}
		slices.Sort(names)
		n := 10 * len(want)
		var last map[string]int
		for {
			r := call(t, ctx, web.URL+fmt.Sprintf("/call/%s?n=%d", name, n))
			last = r.Counts
			if got := keys(r.Counts); slices.Equal(got, names) && r.Failed == 0 {
				even := true
				for _, k := range r.Counts {
					even = even && k == 10
				}
				if even {
					return
				}
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s mode never spread %d calls evenly over %v; last counts %v", name, n, names, last)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	spreadOver(c.readyPods(t, ns, "app=be", 5))

	c.kubectl(t, "-n", ns, "scale", "deployment/be-deployment", "--replicas=8")
	eight := c.readyPods(t, ns, "app=be", 8)
	pods.sync(eight)
	c.waitSlices(t, ns, "be-srv", podIPs(eight))
	spreadOver(eight)

	c.kubectl(t, "-n", ns, "scale", "deployment/be-deployment", "--replicas=5")
	five := c.readyPods(t, ns, "app=be", 5)
	spreadOver(five) // terminating pods get no new calls, before they are gone
	if _, err := c.FinishTerminatingPods(ctx, ns, "app=be"); err != nil {
		t.Fatal(err)
	}
	c.waitSlices(t, ns, "be-srv", podIPs(five))
	spreadOver(five)
}

func call(t *testing.T, ctx context.Context, url string) frontend.Result {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	var r frontend.Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return r
}

// startXDS runs spread xds in-process as the applied spread-xds Deployment configures it
// (its namespace flag; mTLS with the xds certificate and the CA), watching through the
// given identity, and returns an xds:/// resolver bootstrapped with the frontend's
// certificate, as the init container's bootstrap file does.
func startXDS(t *testing.T, ctx context.Context, c *cluster, ns, certs string, identity *rest.Config) resolver.Builder {
	t.Helper()
	d, err := c.admin.AppsV1().Deployments(ns).Get(ctx, "spread-xds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	args := d.Spec.Template.Spec.Containers[0].Args
	if got := flagValue(args, "namespace"); got != "$(POD_NAMESPACE)" {
		t.Fatalf("spread-xds --namespace=%q: want its own namespace (the Role is namespaced)", got)
	}
	f := func(n string) string { return filepath.Join(certs, n) }
	cfg := xdscmd.DefaultConfig()
	cfg.Listen, cfg.AdminListen, cfg.ShutdownGrace = "127.0.0.1:0", "127.0.0.1:0", 5*time.Second
	cfg.Namespace = ns
	cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA = f("xds.crt"), f("xds.key"), f("ca.crt")
	cfg.Logger = slog.New(slog.DiscardHandler)
	eps, svcs, closeSources, err := xdscmd.KubeSourcesForConfig(identity, cfg, cfg.Logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Endpoints, cfg.Services = eps, svcs
	started := make(chan net.Addr, 1)
	cfg.Started = func(ads, _ net.Addr) { started <- ads }
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- xdscmd.Run(runCtx, cfg) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("spread xds: %v", err)
		}
		closeSources()
	})
	var ads net.Addr
	select {
	case ads = <-started:
	case err := <-done:
		t.Fatalf("spread xds: %v", err)
	case <-ctx.Done():
		t.Fatal("spread xds did not start")
	}
	boot, err := xds.Bootstrap(xds.BootstrapConfig{ServerURI: ads.String(), NodeID: ns + "/fe-test", // no zone: no zone preference, so every pod takes calls
		CAFile: f("ca.crt"), CertFile: f("frontend.crt"), KeyFile: f("frontend.key")})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(boot)
	if err != nil {
		t.Fatal(err)
	}
	return rb
}
