package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
)

// testTimeout bounds each test; a cold start on a loaded 2-core machine plus
// the controller round trips fit comfortably.
const testTimeout = 3 * time.Minute

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func clientset(t *testing.T, cfg *rest.Config) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	return cs
}

func createNamespace(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// TestVersionMatchesBuildModule keeps KubernetesVersion, the Makefile and
// hack/kube/go.mod in step: the cache folder name is the version.
func TestVersionMatchesBuildModule(t *testing.T) {
	for file, want := range map[string]string{
		"../../hack/kube/go.mod": "k8s.io/kubernetes " + KubernetesVersion,
		"../../Makefile":         "KUBE_VERSION := " + KubernetesVersion,
	} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		if !strings.Contains(string(data), want) {
			t.Errorf("%s does not contain %q", file, want)
		}
	}
}

func TestStart(t *testing.T) {
	ctx := testContext(t)
	var pids []int
	t.Run("cluster", func(t *testing.T) {
		c := Start(t)
		pids = append(pids, c.etcd.cmd.Process.Pid, c.apiserver.cmd.Process.Pid)

		cs := clientset(t, c.RESTConfig())
		v, err := cs.Discovery().ServerVersion()
		if err != nil {
			t.Fatalf("server version: %v", err)
		}
		if v.GitVersion != KubernetesVersion {
			t.Errorf("server version %q, want %q", v.GitVersion, KubernetesVersion)
		}

		// The kubeconfig file works through clientcmd, as kubectl reads it.
		kcfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig())
		if err != nil {
			t.Fatalf("load kubeconfig: %v", err)
		}
		if _, err := clientset(t, kcfg).CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
			t.Fatalf("get namespace default through kubeconfig: %v", err)
		}

		// And through kubectl, when installed.
		if kubectl, err := exec.LookPath("kubectl"); err == nil {
			out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig="+c.Kubeconfig(), "get", "namespace", "default", "-o", "name").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "namespace/default") {
				t.Errorf("kubectl get namespace default: %v\n%s", err, out)
			}
		}

		for _, name := range []string{"etcd.log", "kube-apiserver.log"} {
			if _, err := os.Stat(filepath.Join(c.Dir(), name)); err != nil {
				t.Errorf("log file: %v", err)
			}
		}
	})
	// Cleanup has run: every child must have been reaped.
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after cleanup (kill 0: %v)", pid, err)
		}
	}
}

func TestEndpointSliceThroughInformer(t *testing.T) {
	ctx := testContext(t)
	c := Start(t)
	cs := clientset(t, c.RESTConfig())
	const ns = "informer"
	createNamespace(ctx, t, cs, ns)

	svc, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Ports:     []corev1.ServicePort{{Name: "grpc", Port: 50051, TargetPort: intstr.FromInt32(50051)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}

	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	informer := factory.Discovery().V1().EndpointSlices()
	seen := make(chan *discoveryv1.EndpointSlice, 10)
	if _, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { seen <- obj.(*discoveryv1.EndpointSlice) },
		UpdateFunc: func(_, obj any) { seen <- obj.(*discoveryv1.EndpointSlice) },
	}); err != nil {
		t.Fatalf("add handler: %v", err)
	}
	stop := make(chan struct{})
	defer func() { close(stop); factory.Shutdown() }()
	factory.Start(stop)
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("cache of %v did not sync", typ)
		}
	}

	port := int32(50051)
	name := "grpc"
	ready := true
	_, err = cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:   "echo-manual",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "spread-test"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"192.0.2.10"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
			{Addresses: []string{"192.0.2.11"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
		},
		Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create endpointslice: %v", err)
	}

	select {
	case slice := <-seen:
		var addrs []string
		for _, ep := range slice.Endpoints {
			addrs = append(addrs, ep.Addresses...)
		}
		if got, want := strings.Join(addrs, ","), "192.0.2.10,192.0.2.11"; got != want {
			t.Errorf("informer saw addresses %s, want %s", got, want)
		}
	case <-ctx.Done():
		t.Fatalf("informer did not see the endpointslice: %v", ctx.Err())
	}
}

func TestAPIServerRestart(t *testing.T) {
	ctx := testContext(t)
	c := Start(t)
	cs := clientset(t, c.RESTConfig())
	const ns = "restart"
	createNamespace(ctx, t, cs, ns)

	// A watch opened before the restart must resume after it.
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	lister := factory.Core().V1().ConfigMaps().Lister()
	stop := make(chan struct{})
	defer func() { close(stop); factory.Shutdown() }()
	factory.Start(stop)
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("cache of %v did not sync", typ)
		}
	}

	stopStart := time.Now()
	if err := c.StopAPIServer(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	t.Logf("kube-apiserver stopped in %s", time.Since(stopStart).Round(time.Millisecond))
	if _, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); err == nil {
		t.Fatal("list succeeded while kube-apiserver was stopped")
	}
	start := time.Now()
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Logf("kube-apiserver restarted in %s", time.Since(start).Round(time.Millisecond))

	// Same client: the first request may still meet the dead connection.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-restart"}, Data: map[string]string{"k": "v"}}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		if err != nil {
			t.Logf("create after restart: %v", err)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("write after restart: %v", err)
	}
	got, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, cm.Name, metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Fatalf("read back: %v %v", got, err)
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		_, err := lister.ConfigMaps(ns).Get(cm.Name)
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("informer started before the restart did not see the write: %v", err)
	}
	t.Logf("informer saw the write %s after the restart", time.Since(start).Round(time.Millisecond))
}

func TestRBAC(t *testing.T) {
	ctx := testContext(t)
	c := Start(t)
	admin := clientset(t, c.RESTConfig())
	const ns = "rbac"
	createNamespace(ctx, t, admin, ns)

	user := "system:serviceaccount:" + ns + ":reader"
	cs := clientset(t, c.UserConfig(user, "system:serviceaccounts"))

	_, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("list endpointslices without a binding: got %v, want Forbidden", err)
	}
	if !strings.Contains(err.Error(), user) {
		t.Errorf("Forbidden error does not name the user %q: %v", user, err)
	}

	// A binding grants it: RBAC, not the harness, decides.
	_, err = admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "endpointslice-reader"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{discoveryv1.GroupName},
			Resources: []string{"endpointslices"},
			Verbs:     []string{"get", "list", "watch"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create role: %v", err)
	}
	_, err = admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "endpointslice-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "endpointslice-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create rolebinding: %v", err)
	}
	// The authorizer reads bindings from an informer: allowed shortly after.
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{})
		if apierrors.IsForbidden(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("list endpointslices with a binding: %v", err)
	}
	if _, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list pods (not granted): got %v, want Forbidden", err)
	}
}

func TestControllerManagerEndpointSlices(t *testing.T) {
	ctx := testContext(t)
	c := Start(t)
	c.StartControllerManager(t)
	cs := clientset(t, c.RESTConfig())
	const ns = "kcm"
	createNamespace(ctx, t, cs, ns)

	for i, zone := range []string{"zone-a", "zone-b"} {
		if _, err := c.CreateNode(ctx, fmt.Sprintf("node-%d", i), zone); err != nil {
			t.Fatal(err)
		}
	}

	labels := map[string]string{"app": "echo"}
	replicas := int32(3)
	_, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment("echo", labels, replicas), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	_, err = cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "grpc", Port: 50051, TargetPort: intstr.FromInt32(50051)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}

	waitReadyEndpoints(ctx, t, c, cs, ns, "app=echo", "echo", 3)

	// The deployment controller writes the object too: retry on conflict.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		scale, err := cs.AppsV1().Deployments(ns).GetScale(ctx, "echo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		scale.Spec.Replicas = 5
		_, err = cs.AppsV1().Deployments(ns).UpdateScale(ctx, "echo", scale, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("scale to 5: %v", err)
	}
	waitReadyEndpoints(ctx, t, c, cs, ns, "app=echo", "echo", 5)
}

// waitReadyEndpoints marks the selected pods ready until want of them are,
// then waits until the Service's EndpointSlices hold want ready endpoints,
// each in 192.0.2.0/24 and with a zone.
func waitReadyEndpoints(ctx context.Context, t *testing.T, c *Cluster, cs kubernetes.Interface, ns, selector, service string, want int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := c.MarkPodsReady(ctx, ns, selector, nil)
		if err != nil {
			return false, err
		}
		return len(pods) == want, nil
	})
	if err != nil {
		t.Fatalf("wait for %d ready pods: %v", want, err)
	}

	var last string
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		slices, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + service,
		})
		if err != nil {
			return false, err
		}
		var ready []string
		for _, s := range slices.Items {
			for _, ep := range s.Endpoints {
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					zone := ""
					if ep.Zone != nil {
						zone = *ep.Zone
					}
					ready = append(ready, ep.Addresses[0]+"@"+zone)
				}
			}
		}
		last = strings.Join(ready, " ")
		return len(ready) == want, nil
	})
	if err != nil {
		t.Fatalf("wait for %d ready endpoints (last seen: %s): %v", want, last, err)
	}
	for _, ep := range strings.Fields(last) {
		if !strings.HasPrefix(ep, "192.0.2.") || strings.HasSuffix(ep, "@") {
			t.Errorf("endpoint %s: want a 192.0.2.0/24 address and a zone", ep)
		}
	}
	t.Logf("%d ready endpoints: %s", want, last)
}

// TestAPIServerRestartWhileCallsFlow restarts the API server from a helper
// goroutine while the test goroutine keeps calling it, and checks that calls
// succeed again afterwards through the same client.
func TestAPIServerRestartWhileCallsFlow(t *testing.T) {
	ctx := testContext(t)
	c := Start(t)
	cs := clientset(t, c.RESTConfig())

	restarted := make(chan error, 1)
	go func() {
		if err := c.StopAPIServer(ctx); err != nil {
			restarted <- fmt.Errorf("stop: %w", err)
			return
		}
		restarted <- c.StartAPIServer(ctx)
	}()

	// Calls are paced so that refused connections do not spin the CPU.
	pace := time.NewTicker(20 * time.Millisecond)
	defer pace.Stop()
	var ok, failed int
	var done bool
	for !done || ok == 0 {
		select {
		case err := <-restarted:
			if err != nil {
				t.Fatalf("restart: %v", err)
			}
			done, ok = true, 0 // count only calls after the restart
		case <-ctx.Done():
			t.Fatalf("no successful call after the restart (%d failed): %v", failed, ctx.Err())
		case <-pace.C:
		}
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := cs.CoreV1().Namespaces().Get(callCtx, "default", metav1.GetOptions{})
		cancel()
		if err != nil {
			failed++
			continue
		}
		ok++
	}
	t.Logf("%d calls failed during the restart, then calls succeeded again", failed)
}
