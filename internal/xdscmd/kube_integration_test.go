package xdscmd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/echotest"
	"github.com/spread-grpc/spread/internal/kubetest"
	"github.com/spread-grpc/spread/internal/xds"
)

// TestKubernetesToXDSClient: Service + EndpointSlices on a real API server → `spread xds`
// (Run, with --kubeconfig) → a grpc-go xds:/// client. Slices carry 192.0.2.x addresses;
// the client's dialer maps each to a loopback backend and never dials 192.0.2.x itself.
type kubeEnv struct {
	ctx   context.Context
	cs    kubernetes.Interface
	slice *discoveryv1.EndpointSlice
	ep    func(i int, ready, terminating bool) discoveryv1.Endpoint
	dial  func(target string) echo.EchoServerClient
	count func(c echo.EchoServerClient, n int) (map[string]int, error)
	until func(what string, cond func() bool)
	admin net.Addr
	// kubeconfig reaches the API server; dialer maps 192.0.2.x to the backends.
	kubeconfig string
	dialer     func(ctx context.Context, addr string) (net.Conn, error)
}

// dialVia is a client of xds:///be.default:grpc through the control plane at serverURI.
func (e *kubeEnv) dialVia(t testing.TB, serverURI, nodeID string) echo.EchoServerClient {
	t.Helper()
	boot, err := xds.Bootstrap(xds.BootstrapConfig{ServerURI: serverURI, NodeID: nodeID, Zone: "zone-a"})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(boot)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///be.default:grpc", grpc.WithResolvers(rb), grpc.WithContextDialer(e.dialer), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return echo.NewEchoServerClient(cc)
}

// startKubeEnv: a real API server with Service be (port grpc 50051) and a slice of pods
// 1-3, `spread xds` running against it, and a client factory whose dialer maps
// 192.0.2.1-<pods>:50051 to loopback backends be-1..be-<pods>.
func startKubeEnv(t testing.TB, pods int) *kubeEnv {

	kc := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	cs, err := kubernetes.NewForConfig(kc.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}

	// Four backend "pods" on loopback, known to the cluster as 192.0.2.1-4:50051.
	route := map[string]string{}
	for i := 1; i <= pods; i++ {
		b := echotest.Start(t, fmt.Sprintf("be-%d", i), "zone-a")
		route[fmt.Sprintf("192.0.2.%d:50051", i)] = b.Addr
	}
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		to, ok := route[addr]
		if !ok {
			return nil, fmt.Errorf("test dialer: no backend for %s", addr)
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", to)
	}

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "be", Namespace: "default", Annotations: map[string]string{xds.AnnotationLBPolicy: "round_robin"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "grpc", Port: 50051}}, Selector: map[string]string{"app": "be"}},
	}
	if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ep := func(i int, ready, terminating bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("192.0.2.%d", i)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(true), Terminating: ptr.To(terminating)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: fmt.Sprintf("be-%d", i), Namespace: "default"},
			Zone:       ptr.To("zone-a"),
		}
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "be-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "be"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To[int32](50051), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:   []discoveryv1.Endpoint{ep(1, true, false), ep(2, true, false), ep(3, true, false)},
	}
	if slice, err = cs.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	cfg := DefaultConfig()
	cfg.Listen, cfg.AdminListen, cfg.Kubeconfig, cfg.ShutdownGrace = "127.0.0.1:0", "127.0.0.1:0", kc.Kubeconfig(), 5*time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	addrs := make(chan [2]net.Addr, 1)
	cfg.Started = func(ads, admin net.Addr) { addrs <- [2]net.Addr{ads, admin} }
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, cfg) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	var a [2]net.Addr
	select {
	case a = <-addrs:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}

	boot, err := xds.Bootstrap(xds.BootstrapConfig{ServerURI: a[0].String(), NodeID: "kube-test", Zone: "zone-a"})
	if err != nil {
		t.Fatal(err)
	}
	dial := func(target string) echo.EchoServerClient {
		rb, err := grpcxds.NewXDSResolverWithConfigForTesting(boot)
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient(target, grpc.WithResolvers(rb), grpc.WithContextDialer(dialer), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return echo.NewEchoServerClient(cc)
	}
	count := func(c echo.EchoServerClient, n int) (map[string]int, error) {
		got := map[string]int{}
		for range n {
			r, err := c.SayHello(ctx, &echo.EchoRequest{})
			if err != nil {
				return got, err
			}
			got[r.GetPod()]++
		}
		return got, nil
	}
	until := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case <-ctx.Done():
				t.Fatalf("%s: not reached", what)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return &kubeEnv{ctx: ctx, cs: cs, slice: slice, ep: ep, dial: dial, count: count, until: until, admin: a[1], kubeconfig: kc.Kubeconfig(), dialer: dialer}
}

func TestKubernetesToXDSClient(t *testing.T) {
	e := startKubeEnv(t, 4)
	ctx, cs, slice, ep, dial, count, until := e.ctx, e.cs, e.slice, e.ep, e.dial, e.count, e.until
	a := [2]net.Addr{nil, e.admin}

	byName := dial("xds:///be.default:grpc")
	byNumber := dial("xds:///be.default:50051") // the port number is an alias
	until("3 pods by name", func() bool { got, err := count(byName, 9); return err == nil && len(got) == 3 })
	got, err := count(byName, 300)
	if err != nil {
		t.Fatal(err)
	}
	if got["be-1"] != 100 || got["be-2"] != 100 || got["be-3"] != 100 {
		t.Fatalf("300 calls: %v, want 100 each", got)
	}
	until("3 pods by number", func() bool { got, err := count(byNumber, 9); return err == nil && len(got) == 3 })

	// A fourth pod appears, pod 1 starts terminating.
	slice.Endpoints = []discoveryv1.Endpoint{ep(1, false, true), ep(2, true, false), ep(3, true, false), ep(4, true, false)}
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	until("pods 2-4 only", func() bool {
		got, err := count(byName, 30)
		return err == nil && len(got) == 3 && got["be-1"] == 0 && got["be-4"] > 0
	})

	// A bad annotation: counted, the last good config kept, calls unaffected.
	svc, err := cs.CoreV1().Services("default").Get(ctx, "be", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Annotations[xds.AnnotationLBPolicy] = "fastest"
	if _, err := cs.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	metrics := func() string {
		resp, err := http.Get("http://" + a[1].String() + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	until("config error metric", func() bool {
		return strings.Contains(metrics(), `spread_xds_config_errors_total{reason="unknown_lb_policy",service="be.default:grpc"} 1`)
	})
	if got, err := count(byName, 30); err != nil || len(got) != 3 {
		t.Fatalf("after a bad annotation: %v, %v", got, err)
	}
}
