package fairshare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// Server serves gRPC like a grpc.Server (Serve, GracefulStop, Stop), one grpc.Server per
// connection, and sheds connections above its fair share. Its methods may be called
// concurrently.
type Server struct {
	newServer func(...grpc.ServerOption) *grpc.Server
	o         options
	m         *metrics

	sheds, refusals, rounds atomic.Uint64

	quit     chan struct{} // closed by Stop / GracefulStop
	quitOnce sync.Once
	wg       sync.WaitGroup // the round loop and every connection's goroutines

	mu       sync.Mutex
	lis      []net.Listener
	conns    map[uint64]*conn // counted: accepted, not shed
	leaving  map[uint64]*conn // shed or refused, draining
	nextID   uint64
	last     Decision // the previous round's, for admission
	haveLast bool
	refused  int   // in this round
	totals   []int // the counted totals of the last rounds (newest last)
}

// totalWindow is how many rounds the largest total is remembered (see Input.MinTotal).
const totalWindow = 8

type conn struct {
	id     uint64
	opened time.Time
	g      *grpc.Server
	calls  atomic.Uint64
	seen   uint64        // calls at the previous round; guarded by Server.mu
	ready  chan struct{} // closed when the HTTP/2 transport is up
	served chan struct{} // closed when the first call on it ends
	closed chan struct{} // closed when the raw connection is closed
}

// turnAwayIdle bounds how long a connection being turned away waits for its first call
// before its GOAWAY (see accept).
const turnAwayIdle = 2 * time.Second

// NewServer returns a Server that builds a grpc.Server per connection with newServer, which
// must apply the extra options it is given (a stats handler) and register every service.
func NewServer(newServer func(extra ...grpc.ServerOption) *grpc.Server, opts ...Option) (*Server, error) {
	if newServer == nil {
		return nil, errors.New("fairshare: no server constructor")
	}
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.peers != nil && o.name == "" {
		return nil, errors.New("fairshare: peers need this backend's name (WithName)")
	}
	m, err := newMetrics(o.registerer)
	if err != nil {
		return nil, err
	}
	return &Server{newServer: newServer, o: o, m: m, quit: make(chan struct{}),
		conns: map[uint64]*conn{}, leaving: map[uint64]*conn{}}, nil
}

// Conns returns how many connections the Server holds (not counting shed ones that drain).
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Stats are a Server's counters since it started.
type Stats struct {
	// Conns is the connections held now; Sheds those shed for being above the share;
	// Refusals the new ones turned away before any call; Rounds the balancing rounds run.
	Conns                   int
	Sheds, Refusals, Rounds uint64
	// Leaving is the connections shed or turned away that have not closed yet.
	Leaving int
}

// Stats returns the Server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	leaving := len(s.leaving)
	s.mu.Unlock()
	return Stats{Conns: s.Conns(), Leaving: leaving, Sheds: s.sheds.Load(), Refusals: s.refusals.Load(), Rounds: s.rounds.Load()}
}

// Handler serves this backend's count as JSON ({"pod":…,"conns":…}) for its peers; mount it
// on the admin port at /fairshare (see HTTPPeers).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(Peer{Name: s.o.name, Conns: s.Conns()}) //nolint:errcheck // the peer retries next round
	})
}

// Serve accepts connections on lis and serves each on its own grpc.Server until Stop or
// GracefulStop, when it returns nil; it balances every round while it serves.
func (s *Server) Serve(lis net.Listener) error {
	s.mu.Lock()
	select {
	case <-s.quit:
		s.mu.Unlock()
		lis.Close()
		return grpc.ErrServerStopped
	default:
	}
	s.lis = append(s.lis, lis)
	first := len(s.lis) == 1
	s.mu.Unlock()
	if first && s.o.peers != nil {
		s.wg.Add(1)
		go s.loop()
	}
	var delay time.Duration
	for {
		c, err := lis.Accept()
		if err != nil {
			select {
			case <-s.quit:
				return nil
			default:
			}
			var ne interface{ Temporary() bool }
			if errors.As(err, &ne) && ne.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
				case <-s.quit:
					return nil
				}
				continue
			}
			return fmt.Errorf("fairshare: accept: %w", err)
		}
		delay = 0
		s.accept(c)
	}
}

func (s *Server) accept(raw net.Conn) {
	c := &conn{opened: s.o.now(), ready: make(chan struct{}), served: make(chan struct{}), closed: make(chan struct{})}
	c.g = s.newServer(grpc.StatsHandler(&connStats{c: c}))
	s.mu.Lock()
	select {
	case <-s.quit:
		s.mu.Unlock()
		raw.Close()
		return
	default:
	}
	s.nextID++
	c.id = s.nextID
	admit := true
	if s.haveLast && !s.last.Admit(len(s.conns)) && s.refused < s.o.maxRefuse {
		admit = false
		s.refused++
		s.leaving[c.id] = c
	} else {
		s.conns[c.id] = c
	}
	s.wg.Add(2)
	s.mu.Unlock()
	s.m.conns.Set(float64(s.Conns()))
	go func() {
		defer s.wg.Done()
		c.g.Serve(&oneConnListener{c: &trackedConn{Conn: raw, closed: c.closed}, addr: raw.LocalAddr(), done: c.closed}) //nolint:errcheck // ends with the connection
	}()
	go func() {
		defer s.wg.Done()
		<-c.closed
		c.g.Stop() // the connection is gone; release its server
		s.mu.Lock()
		delete(s.conns, c.id)
		delete(s.leaving, c.id)
		s.mu.Unlock()
		s.m.conns.Set(float64(s.Conns()))
	}()
	if !admit {
		s.m.refusals.Inc()
		s.refusals.Add(1)
		s.o.log.Debug("fairshare: turning a new connection away", "pod", s.o.name, "conn", c.id)
		// Not at once: only after its first call (or turnAwayIdle without one). A client
		// sends the calls it queued while reconnecting as soon as the connection is up; one
		// of them may be the transparent retry of a call a shed refused. A GOAWAY racing
		// with those calls refuses them again (grpc-js, for one, acks the GOAWAY's PING
		// before it stops sending), and a call refused twice fails with Unavailable.
		// Serving the first calls first means no call is refused twice.
		s.goAway(c, c.served)
	}
}

// goAway closes c gracefully once its transport is up and after (if not nil) is closed or
// turnAwayIdle has passed: GOAWAY, in-flight calls finish (bounded by the grace period).
func (s *Server) goAway(c *conn, after <-chan struct{}) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case <-c.ready:
		case <-c.closed:
			return
		}
		if after != nil {
			t := time.NewTimer(turnAwayIdle)
			select {
			case <-after:
			case <-t.C:
			case <-c.closed:
				t.Stop()
				return
			}
			t.Stop()
		}
		t := time.AfterFunc(s.o.grace, c.g.Stop)
		defer t.Stop()
		c.g.GracefulStop()
	}()
}

func (s *Server) loop() {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		d := s.o.interval + time.Duration((rand.Float64()*2-1)*s.o.jitter*float64(s.o.interval))
		t := time.NewTimer(d)
		select {
		case <-s.quit:
			t.Stop()
			return
		case <-t.C:
		}
		rctx, rcancel := context.WithTimeout(ctx, max(s.o.interval, 2*time.Second))
		if _, err := s.Rebalance(rctx); err != nil && ctx.Err() == nil {
			s.o.log.Warn("fairshare: round skipped", "pod", s.o.name, "err", err)
		}
		rcancel()
	}
}

// Rebalance runs one round now: it asks the peers for their counts, decides, and sheds the
// chosen connections (a GOAWAY each, spaced by a random fraction of a tenth of the interval).
// It returns the decision. The Server runs rounds by itself while it serves; Rebalance is for
// tests and tools.
func (s *Server) Rebalance(ctx context.Context) (Decision, error) {
	if s.o.peers == nil {
		return Decision{}, errors.New("fairshare: no peers configured")
	}
	peers, err := s.o.peers.Counts(ctx)
	if err != nil {
		s.m.peerErrors.Inc()
		return Decision{}, err
	}
	now := s.o.now()
	s.mu.Lock()
	in := Input{Self: s.o.name, Peers: peers, Now: now, Own: make([]Conn, 0, len(s.conns))}
	for _, c := range s.conns {
		calls := c.calls.Load()
		in.Own = append(in.Own, Conn{ID: c.id, Opened: c.opened, Calls: calls - c.seen})
		c.seen = calls
	}
	counted := len(in.Own)
	for _, p := range peers {
		if p.Name != s.o.name {
			counted += p.Conns
		}
	}
	for _, t := range s.totals {
		in.MinTotal = max(in.MinTotal, t)
	}
	s.totals = append(s.totals, counted)
	if len(s.totals) > totalWindow {
		s.totals = s.totals[1:]
	}
	d := Decide(s.o.policy, in)
	s.last, s.haveLast, s.refused = d, true, 0
	var shed []*conn
	for _, id := range d.Shed {
		if c, ok := s.conns[id]; ok {
			delete(s.conns, id)
			s.leaving[id] = c
			shed = append(shed, c)
		}
	}
	s.mu.Unlock()
	s.m.rounds.Inc()
	s.rounds.Add(1)
	s.m.share.Set(float64(d.Share))
	s.m.mean.Set(d.Mean)
	s.m.conns.Set(float64(s.Conns()))
	if len(shed) > 0 {
		s.o.log.Info("fairshare: shedding", "pod", s.o.name, "conns", len(in.Own), "share", d.Share,
			"mean", d.Mean, "pods", d.Pods, "shed", len(shed))
	}
	for i, c := range shed {
		if i > 0 {
			select {
			case <-time.After(time.Duration(rand.Int64N(int64(s.o.interval/10) + 1))):
			case <-ctx.Done():
			case <-s.quit:
			}
		}
		s.m.sheds.Inc()
		s.sheds.Add(1)
		s.goAway(c, nil)
	}
	return d, nil
}

// GracefulStop stops accepting, sends every connection a GOAWAY and waits for their calls
// to finish, like grpc.Server.GracefulStop.
func (s *Server) GracefulStop() { s.stop(true) }

// Stop closes every connection at once, failing calls in flight, like grpc.Server.Stop.
func (s *Server) Stop() { s.stop(false) }

func (s *Server) stop(graceful bool) {
	s.mu.Lock()
	s.quitOnce.Do(func() { close(s.quit) })
	for _, l := range s.lis {
		l.Close()
	}
	all := make([]*conn, 0, len(s.conns)+len(s.leaving))
	for _, c := range s.conns {
		all = append(all, c)
	}
	for _, c := range s.leaving {
		all = append(all, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Go(func() {
			if graceful {
				c.g.GracefulStop()
			} else {
				c.g.Stop()
			}
		})
	}
	wg.Wait()
	s.wg.Wait()
}

// connStats is one connection's stats handler: it counts calls and sees the transport start.
type connStats struct {
	c                *conn
	once, servedOnce sync.Once
}

func (h *connStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (h *connStats) HandleRPC(_ context.Context, st stats.RPCStats) {
	switch st.(type) {
	case *stats.Begin:
		h.c.calls.Add(1)
	case *stats.End:
		h.servedOnce.Do(func() { close(h.c.served) })
	}
}
func (h *connStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (h *connStats) HandleConn(_ context.Context, st stats.ConnStats) {
	if _, ok := st.(*stats.ConnBegin); ok {
		h.once.Do(func() { close(h.c.ready) })
	}
}

// trackedConn reports its Close, whoever calls it (the transport at the end, or on a failed
// handshake).
type trackedConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

// oneConnListener hands out one connection, then blocks until closed or the connection ends.
type oneConnListener struct {
	mu   sync.Mutex
	c    net.Conn
	addr net.Addr
	done chan struct{}
	shut chan struct{}
	once sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.shut == nil {
		l.shut = make(chan struct{})
	}
	c := l.c
	l.c = nil
	shut := l.shut
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	select {
	case <-shut:
	case <-l.done:
	}
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.mu.Lock()
	if l.shut == nil {
		l.shut = make(chan struct{})
	}
	l.once.Do(func() { close(l.shut) })
	// A connection never handed out (the server was stopped before it called Accept) is
	// closed here: nothing else would, and its tracker would wait for it forever.
	c := l.c
	l.c = nil
	l.mu.Unlock()
	if c != nil {
		c.Close()
	}
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.addr }
