// Package kubetest runs a real Kubernetes control plane on loopback for tests:
// etcd, kube-apiserver and, on request, kube-controller-manager, built from Go
// modules by hack/kube/build.sh (run `make kube-assets`).
//
// A test calls [Start] and gets a [Cluster] that is torn down by t.Cleanup:
//
//	c := kubetest.Start(t)
//	cs := kubernetes.NewForConfigOrDie(c.RESTConfig())
//
// There is no kubelet and no scheduler. [Cluster.CreateNode] and
// [Cluster.MarkPodsReady] play their part: they create Ready nodes with a zone
// label, bind pending pods to them and report the pods Running and Ready with
// documentation addresses (192.0.2.0/24), which the endpointslice controller
// then publishes. Those addresses are labels, never destinations: tests map
// them to real loopback listeners in their own dialers.
//
// Binaries are looked up in $SPREAD_KUBE_ASSETS, else in
// <repo root>/.cache/kube/<KubernetesVersion>. When they are missing the test
// is skipped, or fails if SPREAD_REQUIRE_KUBE=1 (as `make test` and CI set).
//
// Each Cluster is independent (own ports, own etcd data in t.TempDir), so
// tests may run in parallel, at ~300 MB of RAM and ~3 s of startup each.
package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubernetesVersion is the control-plane version the harness expects; it must
// match k8s.io/kubernetes in hack/kube/go.mod (a test checks this).
const KubernetesVersion = "v1.37.2"

// Environment variables read by the harness.
const (
	// EnvAssets names a folder holding etcd, kube-apiserver and
	// kube-controller-manager.
	EnvAssets = "SPREAD_KUBE_ASSETS"
	// EnvRequire set to 1 turns a missing binary into a test failure.
	EnvRequire = "SPREAD_REQUIRE_KUBE"
)

// Names of the admin identity (static token, group system:masters).
const (
	AdminUser  = "kubetest-admin"
	adminGroup = "system:masters"
)

// ServiceCIDR is the Service ClusterIP range: loopback, so a ClusterIP is never
// routed off the machine.
const ServiceCIDR = "127.96.0.0/24"

// Option configures [Start].
type Option func(*config)

type config struct {
	assets        string
	startTimeout  time.Duration
	apiServerArgs []string
}

// WithAssets uses binaries from dir instead of $SPREAD_KUBE_ASSETS or the
// repository cache.
func WithAssets(dir string) Option { return func(c *config) { c.assets = dir } }

// WithStartTimeout bounds how long Start (and StartAPIServer) wait for etcd
// and kube-apiserver to report ready. The default is 60 s: ~3 s is typical on
// an idle machine, but a loaded 2-core CI runner can take far longer.
func WithStartTimeout(d time.Duration) Option { return func(c *config) { c.startTimeout = d } }

// WithAPIServerArgs appends flags to kube-apiserver's command line (later
// flags win), e.g. "--feature-gates=...".
func WithAPIServerArgs(args ...string) Option {
	return func(c *config) { c.apiServerArgs = append(c.apiServerArgs, args...) }
}

// Cluster is a running control plane. Its methods may be called concurrently.
type Cluster struct {
	t      testing.TB
	cfg    config
	dir    string
	assets string

	ca         *authority
	adminToken string
	host       string // https://127.0.0.1:port
	kubeconfig string
	etcdURL    string
	apiArgs    []string
	readyz     *http.Client

	etcd *process

	mu        sync.Mutex
	apiserver *process // nil while stopped
	kcm       *process // nil unless started
	nextIP    int      // last host number handed out in 192.0.2.0/24
	nodes     []string // created by CreateNode, in order
}

// Start starts etcd and kube-apiserver and waits until /readyz is OK. It
// skips the test when the binaries are missing (fails if SPREAD_REQUIRE_KUBE=1)
// and registers a cleanup that stops every process it started.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	cfg := config{startTimeout: 60 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	assets, err := findAssets(cfg.assets)
	if err != nil {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("%v; run `make kube-assets` to build them (%s=1 makes this a failure)", err, EnvRequire)
		}
		t.Skipf("%v; run `make kube-assets` to build them", err)
	}

	c := &Cluster{t: t, cfg: cfg, dir: t.TempDir(), assets: assets}
	// Registered after TempDir, so it runs before the folder is removed.
	t.Cleanup(c.teardown)

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.startTimeout)
	defer cancel()
	if err := c.start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("kubetest: control plane %s ready at %s in %s (files in %s)",
		KubernetesVersion, c.host, time.Since(start).Round(time.Millisecond), c.dir)
	return c
}

func (c *Cluster) start(ctx context.Context) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdPort, peerPort, apiPort := ports[0], ports[1], ports[2]
	c.etcdURL = "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	c.host = "https://127.0.0.1:" + strconv.Itoa(apiPort)

	if err := c.writePKI(); err != nil {
		return err
	}
	if err := c.startEtcd(ctx, peerPort); err != nil {
		return err
	}
	c.apiArgs = c.apiServerArgs(apiPort)
	if err := c.writeKubeconfig(); err != nil {
		return err
	}
	return c.StartAPIServer(ctx)
}

// writePKI generates the CA, the serving certificate, the service-account key
// and the static token file.
func (c *Cluster) writePKI() error {
	ca, err := newAuthority()
	if err != nil {
		return err
	}
	c.ca = ca
	servingCert, servingKey, err := ca.issue("kube-apiserver", nil,
		[]net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost", "kubernetes.default.svc"}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	saKey, err := newServiceAccountKey()
	if err != nil {
		return err
	}
	c.adminToken = randomToken()
	// Format: token,user,uid,"group1,group2".
	tokens := fmt.Sprintf("%s,%s,%s,%q\n", c.adminToken, AdminUser, AdminUser, adminGroup)

	files := map[string][]byte{
		"ca.crt":      ca.certPEM,
		"serving.crt": servingCert,
		"serving.key": servingKey,
		"sa.key":      saKey,
		"tokens.csv":  []byte(tokens),
	}
	for name, data := range files {
		if err := os.WriteFile(c.path(name), data, 0o600); err != nil {
			return fmt.Errorf("kubetest: write %s: %w", name, err)
		}
	}

	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	c.readyz = &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	return nil
}

func (c *Cluster) startEtcd(ctx context.Context, peerPort int) error {
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	args := []string{
		"--name=kubetest",
		"--data-dir=" + c.path("etcd-data"),
		"--listen-client-urls=" + c.etcdURL,
		"--advertise-client-urls=" + c.etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=kubetest=" + peerURL,
		"--initial-cluster-state=new",
		// Test data need not survive a power cut; fsync dominates write latency.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}
	p, err := startProcess("etcd", filepath.Join(c.assets, "etcd"), c.path("etcd.log"), args)
	if err != nil {
		return err
	}
	c.etcd = p
	err = waitHTTP(ctx, p, func(ctx context.Context) (bool, error) {
		return c.probe(ctx, http.DefaultClient, c.etcdURL+"/health", "")
	})
	if err != nil {
		return fmt.Errorf("kubetest: wait for etcd at %s: %w", c.etcdURL, err)
	}
	return nil
}

func (c *Cluster) apiServerArgs(port int) []string {
	args := []string{
		"--etcd-servers=" + c.etcdURL,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		// 127.0.0.1 is "public" to the default endpoint reconciler, which then
		// refuses to start; nothing here needs the kubernetes Service endpoints.
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--cert-dir=" + c.path("apiserver-certs"),
		"--tls-cert-file=" + c.path("serving.crt"),
		"--tls-private-key-file=" + c.path("serving.key"),
		"--client-ca-file=" + c.path("ca.crt"),
		"--token-auth-file=" + c.path("tokens.csv"),
		"--service-account-issuer=" + c.host,
		"--service-account-key-file=" + c.path("sa.key"),
		"--service-account-signing-key-file=" + c.path("sa.key"),
		"--authorization-mode=RBAC",
		// No token controller runs, so pods would wait for a token forever.
		"--disable-admission-plugins=ServiceAccount",
		// On SIGTERM, answer new requests with 429 + Retry-After (client-go
		// retries them) until in-flight ones drain, then close connections
		// within 2 s. Without it, an open watch holds shutdown for the full
		// request timeout (60 s) and the stop ends in SIGKILL.
		"--shutdown-send-retry-after=true",
	}
	return append(args, c.cfg.apiServerArgs...)
}

// StartAPIServer starts kube-apiserver again after [Cluster.StopAPIServer], on
// the same address and with the same etcd, and waits for /readyz (bounded by
// ctx and the start timeout). Clients made from [Cluster.RESTConfig] reconnect
// on their own. Starting a running server is an error.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.apiserver != nil {
		return errors.New("kubetest: kube-apiserver is already running")
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.startTimeout)
	defer cancel()
	p, err := startProcess("kube-apiserver", filepath.Join(c.assets, "kube-apiserver"), c.path("kube-apiserver.log"), c.apiArgs)
	if err != nil {
		return err
	}
	err = waitHTTP(ctx, p, func(ctx context.Context) (bool, error) {
		return c.probe(ctx, c.readyz, c.host+"/readyz", c.adminToken)
	})
	if err != nil {
		stopErr := p.stop(context.Background(), stopGrace)
		return errors.Join(fmt.Errorf("kubetest: wait for kube-apiserver /readyz at %s: %w", c.host, err), stopErr)
	}
	c.apiserver = p
	return nil
}

// StopAPIServer stops kube-apiserver (SIGTERM, then SIGKILL after a grace
// period or when ctx ends) and leaves etcd running, so that
// [Cluster.StartAPIServer] brings the same cluster back. Stopping a stopped
// server is a no-op.
func (c *Cluster) StopAPIServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.apiserver
	if p == nil {
		return nil
	}
	c.apiserver = nil
	if err := p.stop(ctx, stopGrace); err != nil {
		return err
	}
	return nil
}

// StartControllerManager runs kube-controller-manager with the Deployment,
// ReplicaSet and EndpointSlice controllers (no leader election, no serving
// port) as the admin, until t's cleanup or the cluster's teardown.
func (c *Cluster) StartControllerManager(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kcm != nil {
		t.Fatal("kubetest: kube-controller-manager is already running")
	}
	args := []string{
		"--kubeconfig=" + c.kubeconfig,
		"--controllers=endpointslice-controller,endpointslice-mirroring-controller,deployment-controller,replicaset-controller",
		"--leader-elect=false",
		"--secure-port=0",
	}
	p, err := startProcess("kube-controller-manager", filepath.Join(c.assets, "kube-controller-manager"), c.path("kube-controller-manager.log"), args)
	if err != nil {
		t.Fatal(err)
	}
	c.kcm = p
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.kcm != p {
			return
		}
		c.kcm = nil
		c.stopAndReport(t, p)
	})
}

// RESTConfig returns a fresh admin (system:masters) client configuration.
func (c *Cluster) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            c.host,
		BearerToken:     c.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.ca.certPEM},
		// Tests create objects in bursts; the client-side default (5 qps)
		// would make them wait on the limiter rather than the server.
		QPS:   200,
		Burst: 400,
	}
}

// Kubeconfig returns the path of a kubeconfig file for the admin, usable by
// kubectl (`kubectl --kubeconfig=...`) and clientcmd.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// Host returns the API server URL, https://127.0.0.1:<port>.
func (c *Cluster) Host() string { return c.host }

// Dir returns the folder holding the cluster's keys, logs and etcd data.
func (c *Cluster) Dir() string { return c.dir }

// UserConfig returns a client configuration that authenticates as user name
// in the given groups, with a client certificate signed by the cluster's CA.
// Any identity can be made at test time, e.g.
// UserConfig("system:serviceaccount:ns:sa", "system:serviceaccounts"); RBAC
// governs what it may do (nothing until a binding grants it). The
// system:authenticated group is added by the server.
func (c *Cluster) UserConfig(name string, groups ...string) *rest.Config {
	certPEM, keyPEM, err := c.ca.issue(name, groups, nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		// Only crypto/rand failure can get here.
		c.t.Fatalf("kubetest: client certificate for %q: %v", name, err)
	}
	return &rest.Config{
		Host: c.host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.ca.certPEM,
			CertData: certPEM,
			KeyData:  keyPEM,
		},
		QPS:   200,
		Burst: 400,
	}
}

func (c *Cluster) writeKubeconfig() error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: c.host, CertificateAuthorityData: c.ca.certPEM}
	cfg.AuthInfos[AdminUser] = &clientcmdapi.AuthInfo{Token: c.adminToken}
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: AdminUser, Namespace: "default"}
	cfg.CurrentContext = "kubetest"
	c.kubeconfig = c.path("kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, c.kubeconfig); err != nil {
		return fmt.Errorf("kubetest: write kubeconfig: %w", err)
	}
	return nil
}

// teardown stops every process, newest first, and prints the end of each log
// when the test failed.
func (c *Cluster) teardown() {
	c.mu.Lock()
	procs := []*process{c.kcm, c.apiserver, c.etcd}
	c.kcm, c.apiserver = nil, nil
	c.mu.Unlock()
	for _, p := range procs {
		if p != nil {
			c.stopAndReport(c.t, p)
		}
	}
	if c.t.Failed() {
		for _, name := range []string{"etcd.log", "kube-apiserver.log", "kube-controller-manager.log"} {
			if _, err := os.Stat(c.path(name)); err == nil {
				c.t.Logf("kubetest: --- end of %s ---\n%s", name, tail(c.path(name), 40))
			}
		}
	}
}

func (c *Cluster) stopAndReport(t testing.TB, p *process) {
	ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	if err := p.stop(ctx, stopGrace); err != nil {
		t.Errorf("kubetest: stop %s: %v", p.name, err)
	}
}

func (c *Cluster) path(name string) string { return filepath.Join(c.dir, name) }

// probe reports whether GET url answers 200.
func (c *Cluster) probe(ctx context.Context, client *http.Client, url, token string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, nil // not listening yet
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// waitHTTP polls ready until it reports true, the process exits (an error
// carrying the end of its log) or ctx ends.
func waitHTTP(ctx context.Context, p *process, ready func(context.Context) (bool, error)) error {
	return wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if done, err := p.exited(); done {
			return false, p.exitError(err)
		}
		return ready(ctx)
	})
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. The listeners are
// held until all ports are picked so the kernel hands out distinct ones; a
// port can still be taken by another process before the child binds it, in
// which case the child exits and Start reports its log.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("kubetest: pick a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// findAssets returns the folder holding the three binaries.
func findAssets(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv(EnvAssets)
	}
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, ".cache", "kube", KubernetesVersion)
	}
	var missing []string
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("kubetest: %s missing in %s", strings.Join(missing, ", "), dir)
	}
	return dir, nil
}

// repoRoot walks up from the working directory (a package folder under go
// test) to the nearest folder with a go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("kubetest: find repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kubetest: find repository root: no go.mod above the working directory; set " + EnvAssets)
		}
		dir = parent
	}
}
