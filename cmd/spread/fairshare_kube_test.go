package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/fairshare"
	"github.com/spread-grpc/spread/internal/kubetest"
	"github.com/spread-grpc/spread/internal/vip"

	"k8s.io/client-go/tools/clientcmd"
)

const fairShareSA = "system:serviceaccount:default:spread-backend"

var fairShareSAGroups = []string{"system:serviceaccounts", "system:serviceaccounts:default"}

// TestFairShareServiceKube: two `spread backend --fair-share-service be-srv.default:grpc`
// processes, running as the spread-backend ServiceAccount with only the RBAC of
// deploy/rbac/fairshare-role.yaml, learn their peers from the Service's EndpointSlices on a
// real API server. Ten ClusterIP clients all sit on pod-a; when pod-b joins the Service (its
// endpoint added to the slice, the VIP sending to it) pod-a sheds toward it until both hold
// their share. The real authorizer grants that identity nothing but list+watch on
// EndpointSlices in its namespace.
//
// EndpointSlices refuse loopback addresses: the slice holds 192.0.2.11 and .12 and the
// backends' peer client maps them to 127.0.61.1 and .2 (no packet goes to 192.0.2.x).
func TestFairShareServiceKube(t *testing.T) {
	kc := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := kubernetes.NewForConfig(kc.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("../../deploy/rbac/fairshare-role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range kubetest.DecodeObjects(t, b) {
		switch o := obj.(type) {
		case *rbacv1.Role:
			_, err = admin.RbacV1().Roles("default").Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = admin.RbacV1().RoleBindings("default").Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("fairshare-role.yaml: unexpected kind %T", obj)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "spread-backend"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The ServiceAccount's own identity, in a kubeconfig for --fair-share-kubeconfig.
	rc := kc.UserConfig(fairShareSA, fairShareSAGroups...)
	kcfg := clientcmdapi.NewConfig()
	kcfg.Clusters["kube"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData}
	kcfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{ClientCertificateData: rc.CertData, ClientKeyData: rc.KeyData}
	kcfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "kube", AuthInfo: "sa"}
	kcfg.CurrentContext = "sa"
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kcfg, kubeconfig); err != nil {
		t.Fatal(err)
	}

	// The Service's slice: pod-a only, for now.
	slice := func(ips ...string) *discoveryv1.EndpointSlice {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "be-srv-abc", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "be-srv"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(int32(50051))}},
		}
		for _, ip := range ips {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}})
		}
		return s
	}
	if _, err := admin.DiscoveryV1().EndpointSlices("default").Create(ctx, slice("192.0.2.11"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The peer client maps the slice's addresses to the backends' loopback ones.
	local := map[string]string{"192.0.2.11": "127.0.61.1", "192.0.2.12": "127.0.61.2"}
	var d net.Dialer
	fairSharePeerClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ip, ok := local[host]
			if !ok {
				return nil, fmt.Errorf("test dialer: %s is not a test pod", host)
			}
			return d.DialContext(ctx, network, net.JoinHostPort(ip, port))
		}}}
	t.Cleanup(func() { fairSharePeerClient = nil })

	_, adminPort, _ := net.SplitHostPort(freePort(t, "127.0.61.1"))
	_, grpcPort, _ := net.SplitHostPort(freePort(t, "127.0.61.1"))
	var wg sync.WaitGroup
	bctx, stopBackends := context.WithCancel(ctx)
	outs := map[string]*syncBuffer{}
	codes := make(chan int, 2)
	for _, p := range []struct{ name, ip string }{{"pod-a", "127.0.61.1"}, {"pod-b", "127.0.61.2"}} {
		out := &syncBuffer{}
		outs[p.name] = out
		wg.Go(func() {
			codes <- run(bctx, []string{"backend", "--addr=" + net.JoinHostPort(p.ip, grpcPort), "--admin-addr=" + net.JoinHostPort(p.ip, adminPort),
				"--health-addr=-", "--pod=" + p.name, "--grace=2s",
				"--fair-share-service=be-srv.default:grpc", "--fair-share-kubeconfig=" + kubeconfig,
				"--fair-share-interval=200ms", "--fair-share-min-age=0s"},
				&env{stdout: out, stderr: out, getenv: func(string) string { return "" }})
		})
	}
	defer func() {
		stopBackends()
		wg.Wait()
		close(codes)
		for c := range codes {
			if c != 0 {
				t.Errorf("a backend exited %d:\npod-a: %s\npod-b: %s", c, outs["pod-a"], outs["pod-b"])
			}
		}
	}()
	count := func(ip string) (fairshare.Peer, error) {
		resp, err := http.Get("http://" + net.JoinHostPort(ip, adminPort) + "/fairshare")
		if err != nil {
			return fairshare.Peer{}, err
		}
		defer resp.Body.Close()
		var p fairshare.Peer
		return p, json.NewDecoder(resp.Body).Decode(&p)
	}
	until := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				a, _ := count("127.0.61.1")
				b, _ := count("127.0.61.2")
				t.Fatalf("not within %v: %s (pod-a %+v, pod-b %+v)\npod-a log: %s\npod-b log: %s", d, what, a, b, outs["pod-a"], outs["pod-b"])
			}
			time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
		}
	}
	until("both backends serving their counts", 30*time.Second, func() bool {
		_, ea := count("127.0.61.1")
		_, eb := count("127.0.61.2")
		return ea == nil && eb == nil
	})

	// Ten ClusterIP clients through a VIP that knows only pod-a.
	proxy := vip.New(nil)
	vipAddr, err := proxy.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		proxy.Close(cctx)
	}()
	proxy.SetBackends([]string{net.JoinHostPort("127.0.61.1", grpcPort)})
	const clients = 10
	lctx, stopLoad := context.WithCancel(ctx)
	var lwg sync.WaitGroup
	var mu sync.Mutex
	var failed int
	var lastErr error
	defer func() { stopLoad(); lwg.Wait() }()
	for range clients {
		cc, err := grpc.NewClient("passthrough:///"+vipAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		lwg.Go(func() {
			defer cc.Close()
			c := echo.NewEchoServerClient(cc)
			for lctx.Err() == nil {
				cctx, ccancel := context.WithTimeout(lctx, 5*time.Second)
				_, err := c.SayHello(cctx, &echo.EchoRequest{Name: "fairshare-kube"})
				ccancel()
				if err != nil && lctx.Err() == nil {
					mu.Lock()
					failed, lastErr = failed+1, err
					mu.Unlock()
				}
				select {
				case <-lctx.Done():
				case <-time.After(20 * time.Millisecond): // the clients' pace
				}
			}
		})
	}
	until("ten connections on pod-a", 30*time.Second, func() bool { a, err := count("127.0.61.1"); return err == nil && a.Conns == clients })
	// pod-a alone in the slice is at its share: nothing is shed while pod-b is not in it.
	a, _ := count("127.0.61.1")
	if a.Name != "pod-a" {
		t.Fatalf("pod-a's count names %q", a.Name)
	}

	// pod-b joins the Service: the slice gains its endpoint, the VIP its address. Only the
	// EndpointSlice watch tells pod-a it has a peer to shed toward.
	if _, err := admin.DiscoveryV1().EndpointSlices("default").Update(ctx, slice("192.0.2.11", "192.0.2.12"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	proxy.SetBackends([]string{net.JoinHostPort("127.0.61.1", grpcPort), net.JoinHostPort("127.0.61.2", grpcPort)})
	until("pod-b holding its share (4 to 6 of 10)", 60*time.Second, func() bool {
		a, ea := count("127.0.61.1")
		b, eb := count("127.0.61.2")
		return ea == nil && eb == nil && a.Conns+b.Conns == clients && b.Conns >= 4 && a.Conns >= 4
	})
	stopLoad()
	lwg.Wait()
	if failed != 0 {
		t.Errorf("%d calls failed (last: %v)", failed, lastErr)
	}

	// Least privilege, asked of the real authorizer.
	for _, a := range []struct {
		verb, group, resource, ns string
		allowed                   bool
	}{
		{"list", "discovery.k8s.io", "endpointslices", "default", true},
		{"watch", "discovery.k8s.io", "endpointslices", "default", true},
		{"get", "discovery.k8s.io", "endpointslices", "default", false},
		{"create", "discovery.k8s.io", "endpointslices", "default", false},
		{"update", "discovery.k8s.io", "endpointslices", "default", false},
		{"delete", "discovery.k8s.io", "endpointslices", "default", false},
		{"list", "discovery.k8s.io", "endpointslices", "kube-system", false},
		{"list", "discovery.k8s.io", "endpointslices", "", false},
		{"list", "", "endpoints", "default", false},
		{"list", "", "pods", "default", false},
		{"list", "", "services", "default", false},
		{"get", "", "secrets", "default", false},
		{"list", "", "configmaps", "default", false},
	} {
		res, sub, _ := strings.Cut(a.resource, "/")
		r, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: fairShareSA, Groups: append(fairShareSAGroups, "system:authenticated"),
			ResourceAttributes: &authzv1.ResourceAttributes{Namespace: a.ns, Verb: a.verb, Group: a.group, Resource: res, Subresource: sub},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status.Allowed != a.allowed {
			t.Errorf("spread-backend %s %s.%s in %q: allowed=%v, want %v", a.verb, a.resource, a.group, a.ns, r.Status.Allowed, a.allowed)
		}
	}
}

func ptr[T any](v T) *T { return &v }
