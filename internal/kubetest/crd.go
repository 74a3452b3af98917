package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// GatewayAPIModule is the Gateway API module whose CRDs GatewayAPICRD reads: the version
// in the project's go.mod.
const GatewayAPIModule = "sigs.k8s.io/gateway-api"

// GatewayAPICRD returns the path of one of the official standard-channel CRD files shipped
// in the Gateway API module the project requires (from the module cache), e.g.
// GatewayAPICRD(t, "grpcroutes"). It fails the test if the module is not downloaded.
func GatewayAPICRD(t testing.TB, resource string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", GatewayAPIModule).Output()
	if err != nil {
		t.Fatalf("kubetest: locate %s (go list -m): %v", GatewayAPIModule, err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard", "gateway.networking.k8s.io_"+resource+".yaml")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return p
}

// InstallCRDs creates the CustomResourceDefinitions in files (YAML, several documents
// allowed) and waits until the API server serves each of them (Established).
func (c *Cluster) InstallCRDs(t testing.TB, files ...string) {
	t.Helper()
	dc, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("kubetest: read %s: %v", f, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			u := &unstructured.Unstructured{}
			if err := utilyaml.Unmarshal(doc, &u.Object); err != nil {
				t.Fatalf("kubetest: decode %s: %v", f, err)
			}
			if u.GetKind() != "CustomResourceDefinition" {
				continue // e.g. a ValidatingAdmissionPolicy shipped alongside
			}
			if _, err := dc.Resource(crdGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("kubetest: create CRD %s: %v", u.GetName(), err)
			}
			names = append(names, u.GetName())
		}
	}
	for _, n := range names {
		for {
			u, err := dc.Resource(crdGVR).Get(ctx, n, metav1.GetOptions{})
			if err == nil && established(u) {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("kubetest: CRD %s not established: %v", n, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

func established(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}
