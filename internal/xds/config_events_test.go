package xds_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spread-grpc/spread/internal/xds"
)

// TestConfigErrorHandlerOncePerError: the handler hears of a rejected configuration once per
// distinct error (not on unrelated edits while it persists), and again after a fix and a
// new break.
func TestConfigErrorHandlerOncePerError(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	var mu sync.Mutex
	var got []string
	var src fakeEndpoints
	src.publish(beKey)
	var svcs fakeServices
	svc := func(ann map[string]string) xds.Service {
		return xds.Service{Key: beKey, Annotations: ann, UID: "uid-1"}
	}
	svcs.set(svc(map[string]string{xds.AnnotationLBPolicy: "round_robbin"}))
	cp := startControlPlane(t, "127.0.0.1:0", &src, &svcs, xds.WithConfigErrorHandler(func(s xds.Service, err error) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, s.UID+" "+s.Key.String()+": "+err.Error())
	}))
	<-cp.srv.Ready()
	reports := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }
	configError := func() string {
		d, err := cp.srv.Dump()
		if err != nil || len(d.Services) != 1 {
			t.Fatalf("dump: %v %+v", err, d.Services)
		}
		return d.Services[0].ConfigError
	}
	if r := reports(); len(r) != 1 || !strings.Contains(r[0], "uid-1 "+beKey.String()) || !strings.Contains(r[0], "round_robbin") {
		t.Fatalf("reports %q, want one naming the Service and the bad value", r)
	}
	// Same error, another annotation changed: not reported again. Waited for (each rejected
	// configuration is counted), as the next set would otherwise replace it unseen.
	errorsCounted := func() float64 {
		return cp.metric("spread_xds_config_errors_total", map[string]string{"service": beKey.String(), "reason": xds.ReasonUnknownPolicy})
	}
	if n := errorsCounted(); n != 1 {
		t.Fatalf("%v config errors counted, want 1", n)
	}
	svcs.set(svc(map[string]string{xds.AnnotationLBPolicy: "round_robbin", xds.AnnotationXDS: "true"}))
	eventually(t, ctx, "the edit with the same error taken", func() (bool, string) { n := errorsCounted(); return n == 2, fmt.Sprint(n) })
	if r := reports(); len(r) != 1 {
		t.Fatalf("reports %q after an edit that kept the same error, want the first one only", r)
	}
	// A different error is.
	svcs.set(svc(map[string]string{xds.AnnotationLBPolicy: "least_requests"}))
	eventually(t, ctx, "second error taken", func() (bool, string) { e := configError(); return strings.Contains(e, "least_requests"), e })
	// Fixed, then the first error again: reported again.
	svcs.set(svc(map[string]string{xds.AnnotationLBPolicy: "round_robin"}))
	eventually(t, ctx, "fix taken", func() (bool, string) { e := configError(); return e == "", e })
	svcs.set(svc(map[string]string{xds.AnnotationLBPolicy: "round_robbin"}))
	eventually(t, ctx, "third report", func() (bool, string) { r := reports(); return len(r) >= 3, strings.Join(r, "; ") })
	r := reports()
	if len(r) != 3 || !strings.Contains(r[1], "least_requests") || !strings.Contains(r[2], "round_robbin") {
		t.Fatalf("reports %q, want round_robbin, least_requests, round_robbin", r)
	}
}
