package backend

import (
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/spread-grpc/spread/echo"
)

// A stream past MaxStreamAge ends with the stream-age status and trailer; re-opened with
// resume_after it continues with the next message, so the whole stream arrives once.
func TestMaxStreamAge(t *testing.T) {
	s := start(t, Config{Pod: "p", MaxStreamAge: 100 * time.Millisecond})
	client := echo.NewEchoServerClient(s.conn)
	ctx := testCtx(t)
	var last uint64
	ends := 0
	for last < 40 {
		var trailer metadata.MD
		st, err := client.SayHelloStream(ctx, &echo.EchoRequest{Count: 40, IntervalMs: 10, ResumeAfter: last}, grpc.Trailer(&trailer))
		if err != nil {
			t.Fatal(err)
		}
		for {
			r, err := st.Recv()
			if err != nil {
				if echo.IsStreamAgeEnd(err) {
					ends++
					if len(trailer.Get(echo.StreamAgeTrailer)) != 1 {
						t.Errorf("stream-age end without the %s trailer: %v", echo.StreamAgeTrailer, trailer)
					}
				} else if last != 40 {
					t.Fatalf("stream ended after seq %d: %v", last, err)
				}
				break
			}
			if r.GetSeq() != last+1 {
				t.Fatalf("seq %d after %d: a message lost or repeated", r.GetSeq(), last)
			}
			last = r.GetSeq()
		}
		if ends > 100 {
			t.Fatal("no progress")
		}
	}
	if ends == 0 {
		t.Error("a 400 ms stream with a 100 ms age never ended for its age")
	}
	if err := (Config{Pod: "p", MaxStreamAge: -time.Second}).Validate(); err == nil {
		t.Error("negative MaxStreamAge accepted")
	}
}
