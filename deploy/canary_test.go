package deploy

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/grpcroute"
	"github.com/spread-grpc/spread/internal/kubetest"
	"github.com/spread-grpc/spread/internal/tlsfiles"
)

// TestCanaryOverlayOnRealCluster applies deploy/overlays/canary to a real control plane with
// the official GRPCRoute CRD: the controllers make be-srv's and be-v2's slices from the two
// Deployments' pods; spread xds, run as the overlay's spread-xds ServiceAccount (its
// namespaced Role), accepts the route be-canary (status written with that identity); and a
// grpc-go xDS client of be-srv, with the frontend's certificate over mTLS, sends be-v2 its
// 10 % (± 3: binomial over 4,000 calls, σ 0.47 %, so 6 σ) and the rest round-robin over
// be's 5 pods.
func TestCanaryOverlayOnRealCluster(t *testing.T) {
	c := startCluster(t)
	c.InstallCRDs(t, kubetest.GatewayAPICRD(t, "grpcroutes"))
	const ns = "spread-canary"
	certs := c.deploy(t, "canary", ns)
	ctx := testCtx(t, 3*time.Minute)
	be := c.readyPods(t, ns, "app=be", 5)
	v2 := c.readyPods(t, ns, "app=be-v2", 1)
	c.waitSlices(t, ns, "be-srv", podIPs(be))
	c.waitSlices(t, ns, "be-v2", podIPs(v2))

	identity := c.UserConfig("system:serviceaccount:"+ns+":spread-xds", "system:serviceaccounts", "system:serviceaccounts:"+ns, "system:authenticated")
	rb := startXDS(t, ctx, c, ns, certs, identity)

	gc, err := gatewayclient.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		rt, err := gc.GatewayV1().GRPCRoutes(ns).Get(ctx, "be-canary", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var acc, res *metav1.Condition
		for _, p := range rt.Status.Parents {
			if p.ControllerName == grpcroute.ControllerName {
				acc = meta.FindStatusCondition(p.Conditions, string(gatewayv1.RouteConditionAccepted))
				res = meta.FindStatusCondition(p.Conditions, string(gatewayv1.RouteConditionResolvedRefs))
			}
		}
		if acc != nil && res != nil && acc.Status == metav1.ConditionTrue && res.Status == metav1.ConditionTrue && acc.ObservedGeneration == rt.Generation {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("be-canary status: %+v", rt.Status.Parents)
		}
		time.Sleep(100 * time.Millisecond)
	}

	pods := newFakePods(t, certs)
	pods.sync(append(be, v2...))
	fe, err := c.admin.AppsV1().Deployments(ns).Get(ctx, "fe-deployment", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	args := fe.Spec.Template.Spec.Containers[0].Args
	f := func(n string) string { return filepath.Join(certs, n) }
	store, err := tlsfiles.New(tlsfiles.Files{Cert: f("frontend.crt"), Key: f("frontend.key"), CA: f("ca.crt")})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := store.ClientConfig(flagValue(args, "tls-server-name"))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///be-srv."+ns+":grpc", grpc.WithResolvers(rb), grpc.WithContextDialer(pods.dial), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := echo.NewEchoServerClient(cc)
	count := func(n int) (map[string]int, error) {
		got := map[string]int{}
		for range n {
			r, err := client.SayHello(ctx, &echo.EchoRequest{Name: "canary"})
			if err != nil {
				return got, err
			}
			got[r.GetPod()]++
		}
		return got, nil
	}
	// Every pod answers once all subchannels are up.
	for seen := map[string]int{}; len(seen) < 6; {
		got, err := count(100)
		if err != nil {
			t.Fatal(err)
		}
		for p, k := range got {
			seen[p] += k
		}
		if time.Now().After(deadline.Add(time.Minute)) {
			t.Fatalf("not every pod answered: %v", seen)
		}
	}
	const n = 4000
	got, err := count(n)
	if err != nil {
		t.Fatal(err)
	}
	onV2, lo, hi := 0, math.MaxInt, 0
	for p, k := range got {
		if strings.HasPrefix(p, "be-v2-") {
			onV2 += k
			continue
		}
		lo, hi = min(lo, k), max(hi, k)
	}
	t.Logf("be-srv with the canary route, %d calls: be-v2 %d (%v)", n, onV2, got)
	if math.Abs(float64(onV2)/n-0.10) > 0.03 {
		t.Errorf("be-v2 got %d of %d calls, want 10 %% ± 3", onV2, n)
	}
	if len(got) != 6 || hi-lo > 5 {
		t.Errorf("be's share not round-robin over its 5 pods: %v", got)
	}
}
