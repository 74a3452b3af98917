package xdscmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/listwatch"
)

// logRecorder is a slog.Handler that keeps every record (all levels).
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// matching returns the records at level whose message starts with prefix, each as its
// message and attributes.
func (l *logRecorder) matching(level slog.Level, prefix string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if r.Level != level || !strings.HasPrefix(r.Message, prefix) {
			continue
		}
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%q", a.Key, a.Value.String()); return true })
		out = append(out, b.String())
	}
	return out
}

// closedPortKubeconfig writes a kubeconfig naming an API server on a loopback port nothing
// listens on: every connection is refused.
func closedPortKubeconfig(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://%s"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, addr)
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestUnreachableAPIServerIsLogged runs the control plane against an API server that
// refuses connections. client-go's reflector retries for ever and, in watch-list mode,
// says nothing (the issue: nothing after "control plane listening", /readyz 503 for ever).
// The failing list/watch must be logged at Warn, saying what failed and why, at most once
// per listwatch.DefaultEvery while every failure is logged at Debug; /readyz stays 503;
// and Run still stops within its grace period (client-go's watch-list backoff ignores the
// context).
func TestUnreachableAPIServerIsLogged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rec := &logRecorder{}
	cfg := DefaultConfig()
	cfg.Listen, cfg.AdminListen, cfg.ShutdownGrace = "127.0.0.1:0", "127.0.0.1:0", 10*time.Second
	cfg.Kubeconfig = closedPortKubeconfig(t)
	cfg.GRPCRoutes = false // its CRD discovery fails Run at once (TestUnreachableAPIServerWithGRPCRoutes)
	cfg.Logger = slog.New(rec)
	started := make(chan net.Addr, 1)
	cfg.Started = func(_, admin net.Addr) { started <- admin }
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, cfg) }()
	var admin net.Addr
	select {
	case admin = <-started:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-ctx.Done():
		t.Fatal("Run never listened")
	}

	// The first failure is logged at Warn at once; wait for it, then for at least 4
	// failures in all (2 reflector rounds: the second comes at most 1.6 s after the first).
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s; log:\n%s", what, strings.Join(rec.matching(slog.LevelDebug, "kube:"), "\n"))
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	var firstWarn time.Time
	waitFor("a Warn about the services list/watch", func() bool {
		if len(rec.matching(slog.LevelWarn, "kube: cannot")) == 0 {
			return false
		}
		firstWarn = time.Now()
		return true
	})
	failures := func() int {
		return len(rec.matching(slog.LevelDebug, "kube: list services failed")) + len(rec.matching(slog.LevelDebug, "kube: watch services failed"))
	}
	waitFor("4 failed calls", func() bool { return failures() >= 4 })
	warns := rec.matching(slog.LevelWarn, "kube: cannot")
	elapsed := time.Since(firstWarn)
	nFail := failures()
	t.Logf("%d failed calls, %d Warn lines in %v; first: %s", nFail, len(warns), elapsed, warns[0])

	w := warns[0]
	for _, want := range []string{"services", "connection refused", "127.0.0.1", "hint="} {
		if !strings.Contains(w, want) {
			t.Errorf("Warn line %q does not say %q", w, want)
		}
	}
	if allowed := 1 + int(elapsed/listwatch.DefaultEvery); len(warns) > allowed || len(warns) >= nFail {
		t.Errorf("%d Warn lines for %d failures in %v: want at most %d (one per %v)", len(warns), nFail, elapsed, allowed, listwatch.DefaultEvery)
	}
	if code, body := get(t, "http://"+admin.String()+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d %q while the API server is unreachable, want 503", code, body)
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(cfg.ShutdownGrace):
		t.Fatal("Run did not return within the grace period")
	}
	if l := rec.matching(slog.LevelWarn, "controlplane: sources did not stop"); len(l) > 0 {
		t.Errorf("shutdown: %v", l)
	}
}

// TestUnreachableAPIServerWithGRPCRoutes: with GRPCRoutes on (the default), the CRD
// discovery is the first call, and an unreachable API server is an error from Run that
// says so, not a silent wait.
func TestUnreachableAPIServerWithGRPCRoutes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := DefaultConfig()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Kubeconfig = closedPortKubeconfig(t)
	cfg.Logger = slog.New(slog.DiscardHandler)
	err := Run(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Run = %v, want an error saying the connection was refused", err)
	}
}

// failingSource fails its first fails Subscribes with err, then succeeds.
type failingSource struct {
	endpoint.Source
	err   error
	fails int
	calls int
}

func (f *failingSource) Subscribe(context.Context, endpoint.Key, func(endpoint.Set)) (func(), error) {
	f.calls++
	if f.calls <= f.fails {
		return nil, f.err
	}
	return func() {}, nil
}

// TestRetrySubscribe: the control plane's endpoint source retries a Subscribe refused for
// an unreachable API server (endpointslice fails it at once, for the resolver's sake), with
// a growing delay, and gives up at once on an error no retry cures.
func TestRetrySubscribe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key := endpoint.Key{Namespace: "ns", Service: "be", Port: "grpc"}
	var delays []time.Duration
	after := func(d time.Duration) <-chan time.Time {
		delays = append(delays, d)
		c := make(chan time.Time, 1)
		c <- time.Time{}
		return c
	}
	refused := &failingSource{err: fmt.Errorf("list endpointslices of ns/be: dial tcp 127.0.0.1:1: connect: %w", syscall.ECONNREFUSED), fails: 6}
	if _, err := (retrySubscribe{Source: refused, after: after}).Subscribe(ctx, key, nil); err != nil || refused.calls != 7 {
		t.Fatalf("after 6 refusals: %v in %d calls, want success on the 7th", err, refused.calls)
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second}; !slices.Equal(delays, want) {
		t.Errorf("delays %v, want %v", delays, want)
	}
	forbidden := &failingSource{err: apierrors.NewForbidden(schema.GroupResource{Resource: "endpointslices"}, "", errors.New("no")), fails: 100}
	if _, err := (retrySubscribe{Source: forbidden, after: after}).Subscribe(ctx, key, nil); !apierrors.IsForbidden(err) || forbidden.calls != 1 {
		t.Errorf("Forbidden: %v after %d calls, want it at once", err, forbidden.calls)
	}
	done, stop := context.WithCancel(ctx)
	stop()
	never := func(time.Duration) <-chan time.Time { return nil }
	if _, err := (retrySubscribe{Source: &failingSource{err: refused.err, fails: 100}, after: never}).Subscribe(done, key, nil); err == nil {
		t.Error("a cancelled Subscribe succeeded")
	}
}
