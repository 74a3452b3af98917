package backend

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/spread-grpc/spread/echo"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// started is a backend serving on loopback, with a client connection to it.
type started struct {
	srv    *Server
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan error
	reg    *prometheus.Registry
}

func start(t *testing.T, cfg Config) *started {
	t.Helper()
	reg := prometheus.NewRegistry()
	srv, err := New(cfg, WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{srv: srv, cancel: cancel, done: make(chan error, 1), reg: reg}
	go func() { s.done <- srv.Serve(ctx, lis) }()
	s.conn, err = grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.conn.Close()
		s.stop(t)
	})
	return s
}

// stop cancels Serve and waits for it (idempotent).
func (s *started) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok && err != nil {
			t.Errorf("Serve: %v", err)
		}
		if ok {
			close(s.done)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "pod name is empty"},
		{Config{Pod: "p", Grace: -1}, "negative"},
		{Config{Pod: "p", MaxConnectionAge: -1}, "must not be negative"},
		{Config{Pod: "p", TLSCert: "c"}, "both a certificate and a key"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want error containing %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := New(Config{Pod: "p", TLSCert: "/nonexistent", TLSKey: "/nonexistent"}); err == nil {
		t.Error("New with missing TLS files: no error")
	}
}

func TestSayHello(t *testing.T) {
	s := start(t, Config{Pod: "be-deployment-abc-1", Zone: "zone-a"})
	r, err := echo.NewEchoServerClient(s.conn).SayHello(testCtx(t), &echo.EchoRequest{Name: "unary RPC msg"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "Hello unary RPC msg from hostname be-deployment-abc-1"; r.Message != want {
		t.Errorf("message %q, want %q", r.Message, want)
	}
	if r.Pod != "be-deployment-abc-1" || r.Zone != "zone-a" || r.PodIp != "127.0.0.1" || r.Seq != 1 {
		t.Errorf("reply %+v: want pod, zone, ip 127.0.0.1 and seq 1", r)
	}
	if got := testutil.ToFloat64(s.srv.metrics.calls.WithLabelValues("/echo.EchoServer/SayHello", "OK")); got != 1 {
		t.Errorf("spread_backend_calls_total = %v, want 1", got)
	}
}

func TestSayHelloStream(t *testing.T) {
	s := start(t, Config{Pod: "p1"})
	c := echo.NewEchoServerClient(s.conn)
	for _, tc := range []struct {
		req      *echo.EchoRequest
		wantSeqs []uint64
	}{
		{&echo.EchoRequest{Name: "x"}, []uint64{1, 2, 3, 4, 5}},
		{&echo.EchoRequest{Name: "x", Count: 3, IntervalMs: 1}, []uint64{1, 2, 3}},
		{&echo.EchoRequest{Name: "x", Count: 6, ResumeAfter: 4}, []uint64{5, 6}},
	} {
		st, err := c.SayHelloStream(testCtx(t), tc.req)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for {
			r, err := st.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Pod != "p1" {
				t.Errorf("stream reply from %q", r.Pod)
			}
			seqs = append(seqs, r.Seq)
		}
		if !slices.Equal(seqs, tc.wantSeqs) {
			t.Errorf("%v: seqs %v, want %v", tc.req, seqs, tc.wantSeqs)
		}
	}
	for _, bad := range []*echo.EchoRequest{{Count: MaxStreamCount + 1}, {IntervalMs: uint32(MaxStreamInterval/time.Millisecond) + 1}} {
		st, err := c.SayHelloStream(testCtx(t), bad)
		if err == nil {
			_, err = st.Recv()
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: got %v, want InvalidArgument", bad, err)
		}
	}
}

// sampleEchoProto is the sample application's own echo.proto (fields numbered 1 only), built
// at run time: a client generated from it must work against our backend.
func sampleEchoProto(t *testing.T) protoreflect.FileDescriptor {
	t.Helper()
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	fdp := &descriptorpb.FileDescriptorProto{
		Name: proto.String("sample/echo.proto"), Package: proto.String("echo"), Syntax: proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("EchoRequest"), Field: []*descriptorpb.FieldDescriptorProto{{Name: proto.String("name"), Number: proto.Int32(1), Type: str, Label: opt, JsonName: proto.String("name")}}},
			{Name: proto.String("EchoReply"), Field: []*descriptorpb.FieldDescriptorProto{{Name: proto.String("message"), Number: proto.Int32(1), Type: str, Label: opt, JsonName: proto.String("message")}}},
		},
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

func TestSampleClientCompatibility(t *testing.T) {
	s := start(t, Config{Pod: "be-1"})
	fd := sampleEchoProto(t)
	reqDesc, replyDesc := fd.Messages().ByName("EchoRequest"), fd.Messages().ByName("EchoReply")
	req := dynamicpb.NewMessage(reqDesc)
	req.Set(reqDesc.Fields().ByName("name"), protoreflect.ValueOfString("unary RPC msg"))

	reply := dynamicpb.NewMessage(replyDesc)
	if err := s.conn.Invoke(testCtx(t), "/echo.EchoServer/SayHello", req, reply); err != nil {
		t.Fatalf("sample SayHello: %v", err)
	}
	if got := reply.Get(replyDesc.Fields().ByName("message")).String(); got != "Hello unary RPC msg from hostname be-1" {
		t.Errorf("sample SayHello message %q", got)
	}

	sd := &grpc.StreamDesc{StreamName: "SayHelloStream", ServerStreams: true}
	st, err := s.conn.NewStream(testCtx(t), sd, "/echo.EchoServer/SayHelloStream")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(req); err != nil {
		t.Fatal(err)
	}
	st.CloseSend()
	n := 0
	for {
		m := dynamicpb.NewMessage(replyDesc)
		if err := st.RecvMsg(m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(m.Get(replyDesc.Fields().ByName("message")).String(), "from hostname be-1") {
			t.Errorf("stream message %v", m)
		}
		n++
	}
	if n != DefaultStreamCount {
		t.Errorf("sample stream got %d messages, want %d", n, DefaultStreamCount)
	}
}

func TestReflectionListsServices(t *testing.T) {
	s := start(t, Config{Pod: "p"})
	st, err := reflectionpb.NewServerReflectionClient(s.conn).ServerReflectionInfo(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"echo.EchoServer", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	st.CloseSend()
}

// TestDrain: on shutdown, health Watch reports NOT_SERVING at once while an in-flight stream
// keeps running to its end; then Serve returns.
func TestDrain(t *testing.T) {
	s := start(t, Config{Pod: "p", Grace: 20 * time.Second})
	ctx := testCtx(t)
	for _, svc := range []string{"", "echo.EchoServer"} {
		r, err := healthpb.NewHealthClient(s.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q) = %v, %v; want SERVING", svc, r, err)
		}
	}
	watch, err := healthpb.NewHealthClient(s.conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: ""})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch update %v, %v; want SERVING", r, err)
	}
	// An in-flight stream that outlives the start of the drain.
	st, err := echo.NewEchoServerClient(s.conn).SayHelloStream(ctx, &echo.EchoRequest{Count: 50, IntervalMs: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	s.cancel() // what SIGTERM does

	r, err := watch.Recv()
	if err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch during drain: %v, %v; want NOT_SERVING", r, err)
	}
	if s.srv.Ready() == nil {
		t.Error("Ready() = nil while draining")
	}
	// The Watch ends once it has said NOT_SERVING, so it cannot hold up GracefulStop.
	if r, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Watch after NOT_SERVING: %v, %v; want the stream to end with Unavailable", r, err)
	}
	got := 1
	for {
		_, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("in-flight stream failed during drain after %d messages: %v", got, err)
		}
		got++
	}
	if got != 50 {
		t.Errorf("in-flight stream got %d of 50 messages", got)
	}
	s.stop(t)
}

// TestDrainBoundedByGrace: a call longer than the grace period is cut, and Serve returns.
func TestDrainBoundedByGrace(t *testing.T) {
	s := start(t, Config{Pod: "p", Grace: 100 * time.Millisecond})
	st, err := echo.NewEchoServerClient(s.conn).SayHelloStream(testCtx(t), &echo.EchoRequest{Count: 100000, IntervalMs: 100})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	s.stop(t)
	for {
		_, err := st.Recv()
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || status.Code(err) != codes.Unavailable {
			t.Fatalf("stream after grace: %v, want Unavailable", err)
		}
		break
	}
}
