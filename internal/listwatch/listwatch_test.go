package listwatch

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

type lines struct {
	mu  sync.Mutex
	got []string // level + " " + message + attrs
}

func (l *lines) Enabled(context.Context, slog.Level) bool { return true }
func (l *lines) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%s", a.Key, a.Value); return true })
	l.mu.Lock()
	l.got = append(l.got, b.String())
	l.mu.Unlock()
	return nil
}
func (l *lines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *lines) WithGroup(string) slog.Handler      { return l }

func (l *lines) level(prefix string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.got {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

// TestRateLimit: with a fake clock, failures within the interval give one Warn line; the
// first failure after it gives the next, counting the failures it stands for; a success
// after a Warn is logged once, and the next failure warns at once.
func TestRateLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &lines{}
	r := NewReporter(slog.New(l), "services", WithEvery(30*time.Second), WithClock(func() time.Time { return now }))
	ctx := context.Background()
	refused := fmt.Errorf("dial tcp 127.0.0.1:1: connect: %w", syscall.ECONNREFUSED)
	for range 10 { // 10 failures over 9 s
		r.Failed(ctx, "list", refused)
		now = now.Add(time.Second)
	}
	if w := l.level("WARN"); len(w) != 1 || !strings.Contains(w[0], "connection refused") || !strings.Contains(w[0], "failures=1") {
		t.Fatalf("after 10 failures in 9 s: Warn lines %q, want one naming the error", w)
	}
	if d := l.level("DEBUG"); len(d) != 10 {
		t.Errorf("%d Debug lines, want one per failure (10)", len(d))
	}
	now = now.Add(21 * time.Second) // 31 s after the first Warn
	r.Failed(ctx, "list", refused)
	w := l.level("WARN")
	if len(w) != 2 || !strings.Contains(w[1], "failures=10") || !strings.Contains(w[1], "failing_for=31s") {
		t.Fatalf("after the interval: Warn lines %q, want a second one for the 10 failures since the first", w)
	}
	r.Succeeded("list")
	if i := l.level("INFO"); len(i) != 1 || !strings.Contains(i[0], "works again") || !strings.Contains(i[0], "failures=11") {
		t.Errorf("recovery: Info lines %q", i)
	}
	r.Succeeded("list") // nothing to recover from
	if i := l.level("INFO"); len(i) != 1 {
		t.Errorf("a second success logged again: %q", i)
	}
	r.Failed(ctx, "watch", refused)
	if w := l.level("WARN"); len(w) != 3 {
		t.Errorf("the first failure after a recovery did not warn at once: %q", w)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	now = now.Add(time.Minute)
	r.Failed(cancelled, "watch", context.Canceled)
	if w := l.level("WARN"); len(w) != 3 {
		t.Errorf("a call cancelled by the informer's stop was logged: %q", w)
	}
}

// TestWatchError: an error Wrap already reported is not counted again; a normal close is
// Debug only; any other error is a failure.
func TestWatchError(t *testing.T) {
	l := &lines{}
	r := NewReporter(slog.New(l), "endpointslices", WithEvery(time.Hour))
	ctx := context.Background()
	refused := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	lw := r.Wrap(&cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) { return nil, refused },
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
			return nil, refused
		},
	}, "service", "ns/be")
	_, err := lw.ListWithContext(ctx, metav1.ListOptions{})
	r.WatchError(ctx, fmt.Errorf("failed to list: %w", err)) // as the reflector passes it on
	if d := l.level("DEBUG kube: list"); len(d) != 1 || !strings.Contains(d[0], "service=ns/be") {
		t.Errorf("list failure: Debug lines %q, want one naming the service", d)
	}
	if d := l.level("DEBUG kube: watch endpointslices failed"); len(d) != 0 {
		t.Errorf("the reflector's copy of a reported error counted again: %q", d)
	}
	r.WatchError(ctx, apierrors.NewResourceExpired("too old"))
	if d := l.level("DEBUG kube: watch of endpointslices closed"); len(d) != 1 {
		t.Errorf("expired watch: %q", l.got)
	}
	r.WatchError(ctx, errors.New("unable to decode an event from the watch stream"))
	if d := l.level("DEBUG kube: watch endpointslices failed"); len(d) != 1 {
		t.Errorf("a broken stream is a failure: %q", l.got)
	}

	// A refused watch-list request comes back as an error the reflector does not retry
	// in place (it falls back to a list); a plain watch keeps its error.
	_, err = lw.WatchWithContext(ctx, metav1.ListOptions{SendInitialEvents: ptr.To(true)})
	if err == nil || utilnet.IsConnectionRefused(err) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("watch-list: %v (refused as client-go sees it: %v), want the text without the errno", err, utilnet.IsConnectionRefused(err))
	}
	if _, err = lw.WatchWithContext(ctx, metav1.ListOptions{}); !utilnet.IsConnectionRefused(err) {
		t.Errorf("plain watch: %v, want the refused error itself", err)
	}
}

func TestPermanent(t *testing.T) {
	gr := schema.GroupResource{Resource: "services"}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{apierrors.NewForbidden(gr, "", errors.New("no")), true},
		{apierrors.NewUnauthorized("no"), true},
		{apierrors.NewNotFound(gr, ""), true},
		{fmt.Errorf("get: %w", x509.UnknownAuthorityError{}), true},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), false},
		{apierrors.NewTooManyRequests("slow down", 1), false},
		{apierrors.NewInternalError(errors.New("etcd")), false},
		{apierrors.NewServiceUnavailable("starting"), false},
		{context.DeadlineExceeded, false},
		{nil, false},
	} {
		if got := Permanent(tc.err); got != tc.want {
			t.Errorf("Permanent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
