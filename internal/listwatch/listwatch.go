// Package listwatch makes the failures of client-go informers' list and watch calls seen.
//
// A reflector retries a failing list or watch for ever, and in watch-list mode (client-go's
// default) a refused connection is logged only at klog verbosity 2 and never reaches the
// informer's watch error handler: a control plane whose API server is unreachable looks
// like one that hangs. A Reporter wraps the cache.ListWatch an informer is built from,
// logs every failure at Debug and, at most once per interval, a Warn line that says what
// failed, why, and how many failures it stands for; the first success after a Warn is
// logged at Info.
package listwatch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// DefaultEvery is the interval between two Warn lines of one Reporter.
const DefaultEvery = 30 * time.Second

// Reporter logs the list and watch failures of one kind of resource. Its methods may be
// called concurrently.
type Reporter struct {
	log   *slog.Logger
	what  string
	every time.Duration
	now   func() time.Time

	mu        sync.Mutex
	lastWarn  time.Time // zero: no Warn since the last success
	since     time.Time // first failure since the last success
	failures  int       // since the last success
	sinceWarn int       // failures since the last Warn
	lastErr   error     // of the last failed call
}

// Option configures a Reporter.
type Option func(*Reporter)

// WithEvery sets the least interval between two Warn lines (default DefaultEvery).
func WithEvery(d time.Duration) Option {
	return func(r *Reporter) {
		if d > 0 {
			r.every = d
		}
	}
}

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(r *Reporter) { r.now = now } }

// NewReporter returns a Reporter of the list and watch calls for what ("services",
// "endpointslices", ...), logging to log.
func NewReporter(log *slog.Logger, what string, opts ...Option) *Reporter {
	if log == nil {
		log = slog.Default()
	}
	r := &Reporter{log: log, what: what, every: DefaultEvery, now: time.Now}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Failed records a failed call (op is "list" or "watch"); attrs are added to the log lines
// (for example the Service whose slices were listed).
func (r *Reporter) Failed(ctx context.Context, op string, err error, attrs ...any) {
	if err == nil || ctx.Err() != nil {
		return // stopping: a cancelled call is no failure
	}
	now := r.now()
	r.mu.Lock()
	if r.failures == 0 {
		r.since = now
	}
	r.failures++
	r.sinceWarn++
	r.lastErr = err
	warn := r.lastWarn.IsZero() || now.Sub(r.lastWarn) >= r.every
	failures, since := r.sinceWarn, now.Sub(r.since)
	if warn {
		r.lastWarn = now
		r.sinceWarn = 0
	}
	r.mu.Unlock()
	args := append([]any{"op", op, "err", err}, attrs...)
	r.log.Debug("kube: "+op+" "+r.what+" failed", args...)
	if !warn {
		return
	}
	hint := "check that the API server is reachable from here (--kubeconfig, or the in-cluster service account and KUBERNETES_SERVICE_HOST); retrying with backoff"
	if Permanent(err) {
		hint = "the API server refused the request: check the RBAC rules (list and watch on " + r.what + ") and the credentials"
	}
	args = append(args, "failures", failures, "failing_for", since.Round(time.Millisecond).String(), "hint", hint)
	r.log.Warn("kube: cannot "+op+" "+r.what, args...)
}

// WatchError is for an informer's watch error handler (it replaces
// cache.DefaultWatchErrorHandler, which logs every error through klog): it records the
// errors that are not a failed call Wrap has seen already, such as a watch stream that broke;
// a watch closed normally or expired (the reflector lists again) is logged at Debug.
func (r *Reporter) WatchError(ctx context.Context, err error, attrs ...any) {
	r.mu.Lock()
	seen := r.lastErr != nil && errors.Is(err, r.lastErr)
	r.mu.Unlock()
	switch {
	case seen:
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), apierrors.IsResourceExpired(err), apierrors.IsGone(err):
		r.log.Debug("kube: watch of "+r.what+" closed", append([]any{"err", err}, attrs...)...)
	default:
		r.Failed(ctx, "watch", err, attrs...)
	}
}

// Succeeded records a successful call; after a Warn it logs the recovery once.
func (r *Reporter) Succeeded(op string) {
	r.mu.Lock()
	logged, failures, since := !r.lastWarn.IsZero(), r.failures, r.now().Sub(r.since)
	r.lastWarn, r.failures, r.sinceWarn = time.Time{}, 0, 0
	r.mu.Unlock()
	if logged {
		r.log.Info("kube: "+op+" "+r.what+" works again", "failures", failures, "failed_for", since.Round(time.Millisecond).String())
	}
}

// Wrap returns lw with its list and watch calls reported to r; attrs are added to the log
// lines. lw must set ListWithContextFunc and WatchFuncWithContext.
//
// A refused connection on a watch-list request (SendInitialEvents) is returned as an error
// client-go does not treat as retriable there: the reflector then falls back to a list at
// once, and backs off in its main loop, which ends with the informer's context. Otherwise
// it sleeps through its backoff (up to a minute) ignoring the context, which holds up
// shutdown while the API server is down.
func (r *Reporter) Wrap(lw *cache.ListWatch, attrs ...any) *cache.ListWatch {
	list, watchFn := lw.ListWithContextFunc, lw.WatchFuncWithContext
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			obj, err := list(ctx, o)
			if err != nil {
				r.Failed(ctx, "list", err, attrs...)
			} else {
				r.Succeeded("list")
			}
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := watchFn(ctx, o)
			if err != nil {
				r.Failed(ctx, "watch", err, attrs...)
				if o.SendInitialEvents != nil && *o.SendInitialEvents && utilnet.IsConnectionRefused(err) {
					return nil, opaqueError{err.Error()}
				}
			}
			// A watch that opens is no proof the list works (watch-list mode aside): only
			// a list, or a watch-list stream, clears the failures.
			if err == nil && o.SendInitialEvents != nil && *o.SendInitialEvents {
				r.Succeeded("watch")
			}
			return w, err
		},
	}
}

// opaqueError keeps the text of an error and hides its chain.
type opaqueError struct{ msg string }

func (e opaqueError) Error() string { return e.msg }

// Permanent reports whether a retry will not cure err: the API server answered that the
// client is not authenticated (401) or not allowed (403), that the resource does not exist
// (404), or that the request is wrong (400, 405, 406, 415); or the server's certificate is
// not trusted. Anything else (a refused or reset connection, a timeout, 429, 5xx) may pass.
func Permanent(err error) bool {
	switch {
	case err == nil:
		return false
	case apierrors.IsUnauthorized(err), apierrors.IsForbidden(err), apierrors.IsNotFound(err),
		apierrors.IsBadRequest(err), apierrors.IsMethodNotSupported(err),
		apierrors.IsNotAcceptable(err), apierrors.IsUnsupportedMediaType(err):
		return true
	}
	var (
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
		verify    *tls.CertificateVerificationError
	)
	return errors.As(err, &unknownCA) || errors.As(err, &invalid) || errors.As(err, &hostname) || errors.As(err, &verify)
}
