package hedge

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// unaryOut is a unary attempt's answer.
type unaryOut struct {
	reply    proto.Message
	hdr, trl metadata.MD
	peer     peer.Peer
}

// UnaryClientInterceptor returns the unary interceptor.
func (c *Client) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		pol, known := c.goPolicy(method)
		rep, isProto := reply.(proto.Message)
		if known && !pol.Idempotent || !isProto {
			c.once(method)
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		// The caller's Header, Trailer and Peer options get the winner's values; each
		// attempt has its own.
		var hdrs, trls []*metadata.MD
		var peers []*peer.Peer
		rest := make([]grpc.CallOption, 0, len(opts)+3)
		for _, o := range opts {
			switch o := o.(type) {
			case grpc.HeaderCallOption:
				hdrs = append(hdrs, o.HeaderAddr)
			case grpc.TrailerCallOption:
				trls = append(trls, o.TrailerAddr)
			case grpc.PeerCallOption:
				peers = append(peers, o.PeerAddr)
			default:
				rest = append(rest, o)
			}
		}
		mt := rep.ProtoReflect().Type()
		v, cancel, err := c.run(ctx, method, pol, known, func(actx context.Context) (any, error) {
			out := &unaryOut{reply: mt.New().Interface()}
			aopts := append(rest[:len(rest):len(rest)], grpc.Header(&out.hdr), grpc.Trailer(&out.trl), grpc.Peer(&out.peer))
			err := invoker(actx, method, req, out.reply, cc, aopts...)
			if a := attemptFrom(actx); a != nil && out.peer.Addr != nil {
				if addr, _ := a.pick(); addr == "" {
					a.mu.Lock()
					a.addr = out.peer.Addr.String()
					a.mu.Unlock()
				}
			}
			return out, err
		})
		if cancel != nil {
			defer cancel()
		}
		if err != nil {
			return err
		}
		out := v.(*unaryOut)
		proto.Reset(rep)
		proto.Merge(rep, out.reply)
		for _, h := range hdrs {
			*h = out.hdr
		}
		for _, t := range trls {
			*t = out.trl
		}
		for _, p := range peers {
			*p = out.peer
		}
		return nil
	}
}

// StreamClientInterceptor returns the stream interceptor. It hedges and retries
// server-streaming calls (one request, a stream of replies) of idempotent methods until
// their first reply: the first attempt to send a reply (or to end without one) wins and the
// call's later replies come from it alone. Other streams, and server-streaming calls whose
// Header is read before their first message, are passed through.
func (c *Client) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		pol, known := c.goPolicy(method)
		if desc.ClientStreams || !desc.ServerStreams || known && !pol.Idempotent {
			c.once(method)
			return streamer(ctx, desc, cc, method, opts...)
		}
		return &lazyStream{ctx: ctx, c: c, desc: desc, cc: cc, method: method, streamer: streamer, opts: opts, pol: pol, known: known}, nil
	}
}

// streamOut is a stream attempt's answer: the stream and its first reply (nil when the
// stream ended without one, with firstErr io.EOF).
type streamOut struct {
	cs       grpc.ClientStream
	first    proto.Message
	firstErr error
}

// lazyStream holds a server-streaming call until its first RecvMsg, then runs the attempts.
type lazyStream struct {
	ctx      context.Context
	c        *Client
	desc     *grpc.StreamDesc
	cc       *grpc.ClientConn
	method   string
	streamer grpc.Streamer
	opts     []grpc.CallOption
	pol      Policy
	known    bool

	mu       sync.Mutex
	req      any
	sent     bool
	started  bool
	err      error // the call failed to start
	cs       grpc.ClientStream
	first    proto.Message
	firstErr error
	served   bool
	cancel   context.CancelFunc
}

var errSendTwice = status.Error(codes.Internal, "hedge: SendMsg called twice on a server-streaming call")

func (s *lazyStream) SendMsg(m any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sent || s.started {
		return errSendTwice
	}
	s.req, s.sent = m, true
	return nil
}

func (s *lazyStream) CloseSend() error { return nil }

// start runs the attempts (once); into is the caller's first message, whose type the
// attempts receive into. With into nil (Header before RecvMsg) one plain attempt is made.
func (s *lazyStream) start(into any) {
	if s.started {
		return
	}
	s.started = true
	if !s.sent {
		s.err = status.Error(codes.Internal, "hedge: RecvMsg before SendMsg on a server-streaming call")
		return
	}
	msg, ok := into.(proto.Message)
	if !ok {
		s.c.once(s.method)
		cs, err := s.streamer(s.ctx, s.desc, s.cc, s.method, s.opts...)
		if err == nil {
			err = sendClose(cs, s.req)
		}
		s.cs, s.err, s.served = cs, err, true
		return
	}
	mt := msg.ProtoReflect().Type()
	v, cancel, err := s.c.run(s.ctx, s.method, s.pol, s.known, func(actx context.Context) (any, error) {
		cs, err := s.streamer(actx, s.desc, s.cc, s.method, s.opts...)
		if err != nil {
			return nil, err
		}
		if err := sendClose(cs, s.req); err != nil {
			return nil, err
		}
		first := mt.New().Interface()
		switch err := cs.RecvMsg(first); {
		case errors.Is(err, io.EOF):
			return &streamOut{cs: cs, firstErr: io.EOF}, nil
		case err != nil:
			return nil, err
		}
		return &streamOut{cs: cs, first: first}, nil
	})
	if err != nil {
		s.err = err
		return
	}
	out := v.(*streamOut)
	s.cs, s.first, s.firstErr, s.cancel = out.cs, out.first, out.firstErr, cancel
}

// sendClose sends the one request and closes the sending side; an io.EOF from SendMsg
// means the stream failed, with the status RecvMsg returns.
func sendClose(cs grpc.ClientStream, req any) error {
	if err := cs.SendMsg(req); err != nil {
		if errors.Is(err, io.EOF) {
			return cs.RecvMsg(new(struct{}))
		}
		return err
	}
	return cs.CloseSend()
}

func (s *lazyStream) RecvMsg(m any) error {
	s.mu.Lock()
	s.start(m)
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	if !s.served {
		s.served = true
		first, ferr := s.first, s.firstErr
		s.first = nil
		s.mu.Unlock()
		if ferr != nil {
			s.release()
			return ferr
		}
		dst := m.(proto.Message)
		proto.Reset(dst)
		proto.Merge(dst, first)
		return nil
	}
	cs := s.cs
	s.mu.Unlock()
	err := cs.RecvMsg(m)
	if err != nil {
		s.release()
	}
	return err
}

func (s *lazyStream) release() {
	s.mu.Lock()
	cancel := s.cancel
	s.cancel = nil
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (s *lazyStream) Header() (metadata.MD, error) {
	s.mu.Lock()
	s.start(nil)
	cs, err := s.cs, s.err
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return cs.Header()
}

func (s *lazyStream) Trailer() metadata.MD {
	s.mu.Lock()
	cs := s.cs
	s.mu.Unlock()
	if cs == nil {
		return nil
	}
	return cs.Trailer()
}

func (s *lazyStream) Context() context.Context {
	s.mu.Lock()
	cs := s.cs
	s.mu.Unlock()
	if cs == nil {
		return s.ctx
	}
	return cs.Context()
}

// once counts a call passed through with its one attempt.
func (c *Client) once(method string) {
	c.calls.Add(1)
	c.attempts.Add(1)
	c.m.calls.WithLabelValues(method).Inc()
	c.m.attempts.WithLabelValues(method, string(First)).Inc()
}
