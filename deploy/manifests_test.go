// Package deploy holds the kustomize manifests (base, components, overlays) and their tests:
// static checks of the rendered objects (security defaults, ports, probes, drain timing) and
// integration tests that apply every overlay to a real control plane (internal/kubetest).
package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/spread-grpc/spread/internal/kubetest"
)

// overlays are the documented entry points: kubectl apply -k deploy/overlays/<name>.
var overlays = []string{"sample", "kube", "xds"}

// kubectl returns the kubectl binary, skipping the test when there is none (failing when
// SPREAD_REQUIRE_KUBE=1, as in CI).
func kubectl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("kubectl")
	if err != nil {
		if os.Getenv(kubetest.EnvRequire) == "1" {
			t.Fatalf("kubectl not found and %s=1", kubetest.EnvRequire)
		}
		t.Skip("kubectl not installed: it renders the kustomizations")
	}
	return p
}

func runKubectl(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectl(t), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=/dev/null")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

// rendered is one overlay's objects by kind and name.
type rendered struct {
	objs        []runtime.Object
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	roles       []*rbacv1.Role
	clusterRole []*rbacv1.ClusterRole
	accounts    map[string]*corev1.ServiceAccount
}

func render(t *testing.T, dir string) rendered {
	t.Helper()
	out, err := runKubectl(t, "kustomize", dir)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, dir, out)
}

// decodeFile reads a plain manifest file (not a kustomization).
func decodeFile(t *testing.T, path string) rendered {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, path, b)
}

func decode(t *testing.T, dir string, out []byte) rendered {
	t.Helper()
	r := rendered{deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{}, accounts: map[string]*corev1.ServiceAccount{}}
	for _, obj := range kubetest.DecodeObjects(t, out) {
		r.objs = append(r.objs, obj)
		switch o := obj.(type) {
		case *appsv1.Deployment:
			r.deployments[o.Name] = o
		case *corev1.Service:
			r.services[o.Name] = o
		case *rbacv1.Role:
			r.roles = append(r.roles, o)
		case *rbacv1.ClusterRole:
			r.clusterRole = append(r.clusterRole, o)
		case *corev1.ServiceAccount:
			r.accounts[o.Name] = o
		case *corev1.Secret:
			t.Errorf("%s: a Secret (%s) is in the manifests: create Secrets out of band (spread certs)", dir, o.Name)
		}
	}
	return r
}

// flagValue returns the value of --name=value in args ("" if absent).
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

func portOf(t *testing.T, addr string) int32 {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	n, err := strconv.Atoi(addr[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("address %q has no port", addr)
	}
	return int32(n)
}

func TestOverlaysRender(t *testing.T) {
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			r := render(t, filepath.Join("overlays", o))
			be, fe := r.deployments["be-deployment"], r.deployments["fe-deployment"]
			if be == nil || fe == nil {
				t.Fatalf("missing be-deployment or fe-deployment: %v", keys(r.deployments))
			}
			if *be.Spec.Replicas != 5 {
				t.Errorf("be-deployment replicas %d, want 5 (the sample's)", *be.Spec.Replicas)
			}
			if s := r.services["be-srv"]; s == nil || s.Spec.Type != corev1.ServiceTypeClusterIP || s.Spec.ClusterIP == corev1.ClusterIPNone {
				t.Errorf("be-srv: want a ClusterIP Service, got %+v", s)
			}
			if s := r.services["be-srv-lb"]; s == nil || s.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("be-srv-lb: want a headless Service")
			}
			if s := r.services["fe-srv"]; s == nil || s.Spec.Type != corev1.ServiceTypeLoadBalancer || s.Spec.Ports[0].Port != 8081 {
				t.Errorf("fe-srv: want a LoadBalancer on 8081")
			}
			modes := map[string]string{}
			for _, m := range argValues(fe.Spec.Template.Spec.Containers[0].Args, "mode") {
				name, target, _ := strings.Cut(m, "=")
				modes[name] = target
			}
			want := map[string][]string{"sample": {"clusterip", "headless"}, "kube": {"clusterip", "headless", "kube"}, "xds": {"clusterip", "headless", "xds"}}[o]
			if got := keys(modes); !slices.Equal(got, want) {
				t.Errorf("frontend modes %v, want %v", got, want)
			}
		})
	}
}

// TestAdminPortsNotExposed resolves every Service port to the container port it reaches and
// refuses admin (metrics, debug) and health ports, in every overlay and in the plain
// deploy/xds/xds.yaml.
func TestAdminPortsNotExposed(t *testing.T) {
	sources := []string{"xds/xds.yaml"}
	for _, o := range overlays {
		sources = append(sources, "overlays/"+o)
	}
	for _, o := range sources {
		t.Run(o, func(t *testing.T) {
			var r rendered
			if strings.HasSuffix(o, ".yaml") {
				r = decodeFile(t, o)
			} else {
				r = render(t, o)
			}
			if len(r.services) == 0 {
				t.Fatal("no Service")
			}
			for _, svc := range r.services {
				sel := labels.SelectorFromSet(svc.Spec.Selector)
				matched := false
				for _, d := range r.deployments {
					if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
						continue
					}
					matched = true
					private := privatePorts(t, d)
					for _, sp := range svc.Spec.Ports {
						cp := resolveTargetPort(d, sp.TargetPort)
						if cp == nil {
							t.Errorf("service %s port %s: target %s matches no container port of %s", svc.Name, sp.Name, sp.TargetPort.String(), d.Name)
							continue
						}
						if private[cp.ContainerPort] || cp.Name == "admin" || strings.Contains(cp.Name, "health") {
							t.Errorf("service %s exposes %s's port %s (%d): admin and health ports must stay off Services", svc.Name, d.Name, cp.Name, cp.ContainerPort)
						}
					}
				}
				if !matched {
					t.Errorf("service %s selects no Deployment", svc.Name)
				}
			}
		})
	}
}

// privatePorts are the ports given to admin and health flags in d's containers.
func privatePorts(t *testing.T, d *appsv1.Deployment) map[int32]bool {
	m := map[int32]bool{}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, f := range []string{"admin-addr", "health-addr"} {
			if v := flagValue(c.Args, f); v != "" && v != "-" {
				m[portOf(t, v)] = true
			}
		}
	}
	return m
}

func resolveTargetPort(d *appsv1.Deployment, tp intstr.IntOrString) *corev1.ContainerPort {
	for _, c := range d.Spec.Template.Spec.Containers {
		for i, p := range c.Ports {
			if tp.Type == intstr.String && p.Name == tp.StrVal || tp.Type == intstr.Int && p.ContainerPort == tp.IntVal {
				return &c.Ports[i]
			}
		}
	}
	return nil
}

func TestSecurityDefaults(t *testing.T) {
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			r := render(t, filepath.Join("overlays", o))
			for _, d := range r.deployments {
				ps := d.Spec.Template.Spec
				sc := ps.SecurityContext
				if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
					t.Errorf("%s: pod must run as non-root (runAsNonRoot, non-zero runAsUser)", d.Name)
				}
				if sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("%s: want seccompProfile RuntimeDefault", d.Name)
				}
				for _, c := range append(slices.Clone(ps.InitContainers), ps.Containers...) {
					cs := c.SecurityContext
					if cs == nil || cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem {
						t.Errorf("%s/%s: want readOnlyRootFilesystem", d.Name, c.Name)
					}
					if cs == nil || cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation {
						t.Errorf("%s/%s: want allowPrivilegeEscalation false", d.Name, c.Name)
					}
					if cs == nil || cs.Capabilities == nil || !slices.Contains(cs.Capabilities.Drop, "ALL") || len(cs.Capabilities.Add) > 0 {
						t.Errorf("%s/%s: want capabilities drop ALL, none added", d.Name, c.Name)
					}
					if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
						t.Errorf("%s/%s: want cpu and memory requests", d.Name, c.Name)
					}
					if strings.Contains(c.Image, ":") && !strings.HasPrefix(c.Image, "ghcr.io/spread-grpc/spread:") {
						t.Errorf("%s/%s: image %q: want the project image", d.Name, c.Name, c.Image)
					}
				}
			}
		})
	}
}

// TestBackendProbesAndDrain checks the backend's probes are native gRPC on the health port
// and the termination grace covers preStop plus the drain's --grace.
func TestBackendProbesAndDrain(t *testing.T) {
	r := render(t, filepath.Join("overlays", "sample"))
	d := r.deployments["be-deployment"]
	ps := d.Spec.Template.Spec
	c := ps.Containers[0]
	health := portOf(t, flagValue(c.Args, "health-addr"))
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.GRPC == nil {
			t.Errorf("%s probe: want a native grpc probe", name)
			continue
		}
		if p.GRPC.Port != health {
			t.Errorf("%s probe on port %d, want the plaintext health port %d (kubelet cannot do mTLS)", name, p.GRPC.Port, health)
		}
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("backend: want a preStop sleep (endpoint removal propagates before the drain)")
	}
	grace, err := time.ParseDuration(flagValue(c.Args, "grace"))
	if err != nil {
		t.Fatalf("backend --grace: %v", err)
	}
	need := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second + grace
	if have := time.Duration(*ps.TerminationGracePeriodSeconds) * time.Second; have < need+time.Second {
		t.Errorf("terminationGracePeriodSeconds %v does not cover preStop + --grace = %v (+1s to exit)", have, need)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for name, path := range map[string]string{"POD_NAME": "metadata.name", "POD_IP": "status.podIP", "POD_ZONE": "metadata.labels['topology.kubernetes.io/zone']"} {
		e := env[name]
		if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != path {
			t.Errorf("env %s: want the downward API field %s", name, path)
		}
	}
}

// TestRBAC checks the permissions each overlay grants: none in sample, exactly list+watch
// on EndpointSlices for the kube mode (the real-server check is in the integration test).
func TestRBAC(t *testing.T) {
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			r := render(t, filepath.Join("overlays", o))
			if len(r.clusterRole) > 0 {
				t.Errorf("ClusterRoles %v: every permission should be namespaced", r.clusterRole)
			}
			fe := r.accounts["spread-frontend"]
			token := fe.AutomountServiceAccountToken == nil || *fe.AutomountServiceAccountToken
			if wantToken := o == "kube"; token != wantToken {
				t.Errorf("frontend service account token mounted: %v, want %v", token, wantToken)
			}
			if be := r.accounts["spread-backend"]; be.AutomountServiceAccountToken == nil || *be.AutomountServiceAccountToken {
				t.Error("the backend's service account must not mount a token")
			}
		})
	}
}

func argValues(args []string, name string) []string {
	var vs []string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			vs = append(vs, v)
		}
	}
	return vs
}

func keys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestXDSReplicas: the control plane runs as replicas that survive a voluntary disruption
// (PDB), prefer different zones and nodes, and are ready only after their first full sync —
// in the xds overlay and in the plain deploy/xds/xds.yaml.
func TestXDSReplicas(t *testing.T) {
	plain, err := os.ReadFile(filepath.Join("xds", "xds.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, objs := range map[string][]runtime.Object{
		"overlays/xds": render(t, filepath.Join("overlays", "xds")).objs,
		"xds/xds.yaml": kubetest.DecodeObjects(t, plain),
	} {
		t.Run(name, func(t *testing.T) {
			var d *appsv1.Deployment
			var pdbs []*policyv1.PodDisruptionBudget
			for _, o := range objs {
				switch o := o.(type) {
				case *appsv1.Deployment:
					if o.Name == "spread-xds" {
						d = o
					}
				case *policyv1.PodDisruptionBudget:
					pdbs = append(pdbs, o)
				}
			}
			if d == nil {
				t.Fatal("no spread-xds Deployment")
			}
			if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
				t.Errorf("replicas %v, want ≥ 2", d.Spec.Replicas)
			}
			podLabels := labels.Set(d.Spec.Template.Labels)
			covered := false
			for _, p := range pdbs {
				sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
				if err != nil || !sel.Matches(podLabels) {
					continue
				}
				covered = true
				if mu := p.Spec.MaxUnavailable; mu == nil || mu.Type != intstr.Int || mu.IntVal != 1 {
					t.Errorf("PDB %s: maxUnavailable %v, want 1", p.Name, mu)
				}
				if p.Spec.MinAvailable != nil {
					t.Errorf("PDB %s: minAvailable set (blocks drains of a 1-replica scale-down)", p.Name)
				}
			}
			if !covered {
				t.Error("no PodDisruptionBudget selects the spread-xds pods")
			}
			keys := map[string]bool{}
			for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
				sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
				if err != nil || !sel.Matches(podLabels) {
					t.Errorf("topology spread on %s does not select the pods", c.TopologyKey)
					continue
				}
				keys[c.TopologyKey] = true
			}
			if !keys["topology.kubernetes.io/zone"] || !keys["kubernetes.io/hostname"] {
				t.Errorf("topology spread keys %v, want zone and hostname", keys)
			}
			ctr := d.Spec.Template.Spec.Containers[0]
			rp := ctr.ReadinessProbe
			if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz" {
				t.Fatalf("readiness probe %+v, want GET /readyz (first full sync)", rp)
			}
			if rp.HTTPGet.Port.String() != "admin" || portOf(t, flagValue(ctr.Args, "admin-addr")) != containerPort(ctr, "admin") {
				t.Errorf("readiness probe on port %s, admin server on %s", rp.HTTPGet.Port.String(), flagValue(ctr.Args, "admin-addr"))
			}
		})
	}
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return -1
}
