package echo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxResumeFailures bounds how many times in a row ReadStream re-opens a stream that broke
// (UNAVAILABLE) without receiving anything; stream-age ends do not count (they are planned).
const MaxResumeFailures = 3

// StreamStats reports one resumable stream.
type StreamStats struct {
	// Received counts the replies received; Opens the streams opened (1 + resumes).
	Received int
	Opens    int
	// AgeEnds counts stream-age ends (planned re-balancing); Breaks other resumed failures.
	AgeEnds int
	Breaks  int
}

// ReadStream reads one logical SayHelloStream of req.Count replies, re-opening it through the
// client's balancer whenever the backend ends it for its age (IsStreamAgeEnd), and after
// a broken connection (UNAVAILABLE, at most MaxResumeFailures times in a row without progress),
// each time with resume_after set to the last seq seen, so no reply is lost or repeated.
// fn gets every reply. It returns when the stream completes, fails for good, or ctx ends.
func ReadStream(ctx context.Context, client EchoServerClient, req *EchoRequest, fn func(*EchoReply)) (StreamStats, error) {
	var st StreamStats
	last := req.GetResumeAfter()
	failures := 0
	for {
		r := &EchoRequest{Name: req.GetName(), Count: req.GetCount(), IntervalMs: req.GetIntervalMs(), ResumeAfter: last}
		st.Opens++
		stream, err := client.SayHelloStream(ctx, r)
		progressed := false
		for err == nil {
			var reply *EchoReply
			reply, err = stream.Recv()
			if err != nil {
				break
			}
			progressed = true
			last = reply.GetSeq()
			st.Received++
			fn(reply)
		}
		switch {
		case errors.Is(err, io.EOF):
			return st, nil
		case IsStreamAgeEnd(err):
			st.AgeEnds++
			failures = 0
			continue
		case status.Code(err) == codes.Unavailable && ctx.Err() == nil:
			if progressed {
				failures = 0
			}
			failures++
			if failures > MaxResumeFailures {
				return st, fmt.Errorf("stream broke %d times in a row after seq %d: %w", failures, last, err)
			}
			st.Breaks++
			t := time.NewTimer(time.Duration(failures) * 50 * time.Millisecond) // brief backoff
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return st, status.FromContextError(ctx.Err()).Err()
			}
			continue
		}
		return st, err
	}
}
