package backend

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// drainingHealth is grpc-go's health server, plus one thing a drain needs: once the server
// drains, each Watch stream ends right after it has delivered NOT_SERVING. Otherwise a
// watcher that keeps its stream open (any client but grpc-go, which drops it on GOAWAY) would
// hold GracefulStop until the grace period runs out.
type drainingHealth struct {
	*health.Server
	drainOnce sync.Once
	drained   chan struct{}
}

func newDrainingHealth() *drainingHealth {
	return &drainingHealth{Server: health.NewServer(), drained: make(chan struct{})}
}

// drain sets every service NOT_SERVING (ignoring later updates) and ends the Watch streams.
func (h *drainingHealth) drain() {
	h.drainOnce.Do(func() {
		h.Server.Shutdown()
		close(h.drained)
	})
}

func (h *drainingHealth) Watch(req *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	w := &watchStream{ServerStreamingServer: stream, ctx: ctx, cancel: cancel, drained: h.drained}
	go func() {
		select {
		case <-h.drained:
			w.endIfNotServing()
		case <-ctx.Done():
		}
	}()
	err := h.Server.Watch(req, w)
	if w.ended() {
		return status.Error(codes.Unavailable, "server is draining")
	}
	return err
}

// watchStream relays Watch updates and cancels the Watch once NOT_SERVING has been sent
// during a drain.
type watchStream struct {
	grpc.ServerStreamingServer[healthpb.HealthCheckResponse]
	ctx     context.Context
	cancel  context.CancelFunc
	drained chan struct{}

	mu   sync.Mutex
	last healthpb.HealthCheckResponse_ServingStatus
	done bool
}

func (w *watchStream) Context() context.Context { return w.ctx }

func (w *watchStream) Send(r *healthpb.HealthCheckResponse) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.ServerStreamingServer.Send(r); err != nil {
		return err
	}
	w.last = r.GetStatus()
	select {
	case <-w.drained:
		w.endLocked()
	default:
	}
	return nil
}

func (w *watchStream) endIfNotServing() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.endLocked()
}

func (w *watchStream) endLocked() {
	if w.last == healthpb.HealthCheckResponse_NOT_SERVING || w.last == healthpb.HealthCheckResponse_SERVICE_UNKNOWN {
		w.done = true
		w.cancel()
	}
}

func (w *watchStream) ended() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}
