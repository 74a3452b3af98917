package backend

import (
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spread-grpc/spread/echo"
)

// TestStreamBounds: a stream that would echo more than MaxStreamBytes, and a resume_after
// beyond the count (2^64-1 wrapped seq to 0), are refused before anything is sent.
func TestStreamBounds(t *testing.T) {
	s := start(t, Config{Pod: "p1"})
	c := echo.NewEchoServerClient(s.conn)
	big := strings.Repeat("x", 1<<20)
	for _, tc := range []struct {
		req  *echo.EchoRequest
		want string
	}{
		{&echo.EchoRequest{Name: big, Count: 300}, "over the maximum"},
		{&echo.EchoRequest{Name: "x", Count: 5, ResumeAfter: math.MaxUint64}, "beyond count"},
		{&echo.EchoRequest{Name: "x", Count: 5, ResumeAfter: 6}, "beyond count"},
	} {
		st, err := c.SayHelloStream(testCtx(t), tc.req)
		if err != nil {
			t.Fatal(err)
		}
		msgs := 0
		for {
			_, err = st.Recv()
			if err != nil {
				break
			}
			msgs++
		}
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) || msgs != 0 {
			t.Errorf("name %d bytes, count %d, resume_after %d: %d messages, %v; want none and InvalidArgument %q",
				len(tc.req.Name), tc.req.Count, tc.req.ResumeAfter, msgs, err, tc.want)
		}
	}
	// Within the bound, and resuming after the last message: served.
	st, err := c.SayHelloStream(testCtx(t), &echo.EchoRequest{Name: big, Count: 16})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; ; n++ {
		if _, err = st.Recv(); err != nil {
			break
		}
	}
	if err != io.EOF || n != 16 {
		t.Errorf("1 MiB name × 16: %d messages, %v", n, err)
	}
	st, _ = c.SayHelloStream(testCtx(t), &echo.EchoRequest{Name: "x", Count: 5, ResumeAfter: 5})
	if _, err := st.Recv(); err != io.EOF {
		t.Errorf("resume_after = count: %v, want a clean end", err)
	}
}

// TestRefusedCallsAreCounted: a request over the server's message size limit is refused
// (ResourceExhausted) before any interceptor runs, and still counted in
// spread_backend_calls_total.
func TestRefusedCallsAreCounted(t *testing.T) {
	s := start(t, Config{Pod: "p1"})
	c := echo.NewEchoServerClient(s.conn)
	_, err := c.SayHello(testCtx(t), &echo.EchoRequest{Name: strings.Repeat("x", 5<<20)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("5 MiB request: %v, want ResourceExhausted", err)
	}
	counter := s.srv.metrics.calls.WithLabelValues("/echo.EchoServer/SayHello", "ResourceExhausted")
	deadline := time.Now().Add(10 * time.Second) // counted when the call ends, just after its status is sent
	for testutil.ToFloat64(counter) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("spread_backend_calls_total{code=ResourceExhausted} = %v, want 1", testutil.ToFloat64(counter))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A normal call is counted once, not twice (interceptor and stats handler).
	if _, err := c.SayHello(testCtx(t), &echo.EchoRequest{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // must not happen: a second count would come from the stats handler just after the reply
	if got := testutil.ToFloat64(s.srv.metrics.calls.WithLabelValues("/echo.EchoServer/SayHello", "OK")); got != 1 {
		t.Errorf("OK calls counted %v times, want 1", got)
	}
}
