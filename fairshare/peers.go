package fairshare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/spread-grpc/spread/endpoint"
)

// Peers reports the connection counts of a Service's backends. It may include this backend
// itself (Decide ignores an entry with its name). Counts must be safe to call concurrently.
type Peers interface {
	Counts(ctx context.Context) ([]Peer, error)
}

// PeersFunc adapts a function to Peers.
type PeersFunc func(ctx context.Context) ([]Peer, error)

// Counts calls f.
func (f PeersFunc) Counts(ctx context.Context) ([]Peer, error) { return f(ctx) }

// HTTPPeers reads every ready endpoint's count from http://<address>:<port>/fairshare (a
// Server.Handler on each backend's admin port), all at once, each bounded by a timeout.
// Feed it the Service's endpoints with Update, from any endpoint source: a subscription to
// the Kubernetes EndpointSlice source, or the demo's endpoint model.
//
// Why ask the peers rather than a control plane: every backend already has an admin port
// and the endpoint list, so this needs no new component, only list+watch on EndpointSlices
// (the same least-privilege Role the resolver uses) and one small GET per peer per round.
// A peer that does not answer is left out of the round (the fair share is then computed over
// the pods that did), so a dead pod makes the others shed less, never more.
type HTTPPeers struct {
	port    int
	client  *http.Client
	timeout time.Duration

	mu    sync.Mutex
	addrs []string
	known bool
}

// NewHTTPPeers reads counts on port (the admin port every backend shares) with client (nil:
// a client with a 1 s timeout per request).
func NewHTTPPeers(port int, client *http.Client) (*HTTPPeers, error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("fairshare: peer port %d out of range", port)
	}
	if client == nil {
		client = &http.Client{Timeout: time.Second}
	}
	return &HTTPPeers{port: port, client: client, timeout: time.Second}, nil
}

// Update sets the Service's endpoints; only ready ones are asked.
func (p *HTTPPeers) Update(s endpoint.Set) {
	addrs := make([]string, 0, len(s))
	for _, e := range s.Ready() {
		addrs = append(addrs, net.JoinHostPort(e.Address, strconv.Itoa(p.port)))
	}
	p.mu.Lock()
	p.addrs, p.known = addrs, true
	p.mu.Unlock()
}

// Counts asks every endpoint in parallel. It fails only when no endpoint list has arrived
// yet or no peer answered.
func (p *HTTPPeers) Counts(ctx context.Context) ([]Peer, error) {
	p.mu.Lock()
	addrs, known := p.addrs, p.known
	p.mu.Unlock()
	if !known {
		return nil, errors.New("fairshare: no endpoints yet")
	}
	out := make([]Peer, len(addrs))
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() { out[i], errs[i] = p.get(ctx, a) })
	}
	wg.Wait()
	peers := out[:0]
	for i := range out {
		if errs[i] == nil {
			peers = append(peers, out[i])
		}
	}
	if len(peers) == 0 && len(addrs) > 0 {
		return nil, fmt.Errorf("fairshare: no peer answered: %w", errors.Join(errs...))
	}
	return peers, nil
}

func (p *HTTPPeers) get(ctx context.Context, addr string) (Peer, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/fairshare", nil)
	if err != nil {
		return Peer{}, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return Peer{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Peer{}, fmt.Errorf("fairshare: peer %s: %s", addr, resp.Status)
	}
	var pr Peer
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&pr); err != nil {
		return Peer{}, fmt.Errorf("fairshare: peer %s: %w", addr, err)
	}
	if pr.Name == "" || pr.Conns < 0 {
		return Peer{}, fmt.Errorf("fairshare: peer %s: bad answer %+v", addr, pr)
	}
	return pr, nil
}
