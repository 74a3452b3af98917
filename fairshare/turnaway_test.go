package fairshare_test

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spread-grpc/spread/fairshare"
	"github.com/spread-grpc/spread/internal/backend"
)

// TestTurnedAwayConnectionServesFirstCall is the mechanism behind calls failing Unavailable
// while fair share moves clients: a client whose call a shed refused retries it once,
// transparently, on its next connection, sending it the moment that connection is up. If that
// connection is one a full pod turns away, and the turn-away GOAWAY goes out at once, the
// retried call races with it: an HTTP/2 stack that acks the GOAWAY's PING before it stops
// sending (nghttp2 under grpc-js does) sends the call after the final GOAWAY was decided, the
// call is refused a second time, and a call refused twice fails. A turned-away connection
// must therefore serve what the client sends first, and only then go away.
//
// The client here is raw HTTP/2, behaving like the slowest legal client: it reads what the
// server sends in the first 300 ms, acking PINGs, and sends its call only after that (or
// after a final GOAWAY, if one came). With the GOAWAY sent right after the handshake the call
// is refused (the final GOAWAY names stream 0); served first, it is answered (grpc-status 0)
// and the GOAWAY follows.
func TestTurnedAwayConnectionServesFirstCall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var srv *backend.Server
	// Pod a (this one) holds 4 connections, pod b none: a is above its share, b hungry, so a
	// turns newcomers away. MinAge of an hour: a sheds nothing.
	peers := fairshare.PeersFunc(func(context.Context) ([]fairshare.Peer, error) {
		return []fairshare.Peer{{Name: "a", Conns: srv.Conns()}, {Name: "b"}}, nil
	})
	var err error
	srv, err = backend.New(backend.Config{Pod: "a", Grace: 5 * time.Second}, backend.WithFairShare(fairshare.WithPeers(peers),
		fairshare.WithInterval(time.Hour, 0), fairshare.WithPolicy(fairshare.Policy{MinAge: time.Hour})))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, lis) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	for range 4 {
		cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		cc.Connect()
		for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
			if !cc.WaitForStateChange(ctx, s) {
				t.Fatal("a client never connected")
			}
		}
	}
	for srv.Conns() != 4 {
		if ctx.Err() != nil {
			t.Fatal("the server never counted 4 connections")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	d, err := srv.FairShare().Rebalance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Admit(4) || len(d.Shed) != 0 {
		t.Fatalf("decision %+v: want newcomers turned away and nothing shed", d)
	}

	res := slowClientCall(t, lis.Addr().String())
	if got := srv.FairShare().Stats().Refusals; got != 1 {
		t.Errorf("refusals %d, want the raw connection turned away", got)
	}
	if res.status != "0" {
		t.Errorf("the call sent after the first %v: grpc-status %q, final GOAWAY last stream %d (%d frames before the call: %v); want it served (0)",
			slowClientWait, res.status, res.lastStream, len(res.early), res.early)
	}
	if !res.goAway {
		t.Error("the turned-away connection never got a GOAWAY")
	}
}

const slowClientWait = 300 * time.Millisecond

type slowResult struct {
	early      []string // frames seen before sending the call
	status     string   // grpc-status of the call ("" if never answered)
	goAway     bool
	lastStream uint32 // of the final GOAWAY
}

// slowClientCall makes one SayHello call on a raw HTTP/2 connection, sent only after reading
// the server's frames for slowClientWait (PINGs acked at once, as HTTP/2 stacks do).
func slowClientCall(t *testing.T, addr string) slowResult {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var res slowResult
	final := false
	// handle answers one frame; it reports whether the connection is done.
	handle := func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck() //nolint:errcheck // a failed write shows as a missing answer
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data) //nolint:errcheck // as above
			}
		case *http2.GoAwayFrame:
			res.goAway = true
			if f.LastStreamID != math.MaxInt32 && f.LastStreamID != math.MaxUint32 {
				final, res.lastStream = true, f.LastStreamID
			}
		case *http2.MetaHeadersFrame:
			if v := f.PseudoValue("status"); v == "" || f.StreamEnded() {
				for _, h := range f.Fields {
					if h.Name == "grpc-status" {
						res.status = h.Value
					}
				}
			}
			if f.StreamEnded() {
				return true
			}
		case *http2.RSTStreamFrame:
			return true
		}
		return false
	}
	deadline := time.Now().Add(slowClientWait)
	for !final {
		conn.SetReadDeadline(deadline)
		f, err := fr.ReadFrame()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			break
		}
		if err != nil {
			res.early = append(res.early, "read: "+err.Error())
			return res
		}
		res.early = append(res.early, f.Header().Type.String())
		handle(f)
	}
	// The call: HEADERS, then the request message in one DATA frame that ends the stream.
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, h := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/echo.EchoServer/SayHello"},
		{":authority", addr}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]}) //nolint:errcheck // writes to a buffer
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	msg := []byte{0x0A, 4, 's', 'l', 'o', 'w'} // EchoRequest{name: "slow"}
	if err := fr.WriteData(1, true, append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	ended := false
	for !ended || !res.goAway {
		f, err := fr.ReadFrame()
		if err != nil {
			break // closed by the server (or the read deadline)
		}
		if handle(f) {
			ended = true
		}
	}
	return res
}
