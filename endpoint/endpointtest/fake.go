// Package endpointtest checks endpoint sources against the endpoint.Source contract
// (RunConformance) and provides Fake, an in-memory source for tests of consumers.
//
// Every implementation of endpoint.Source in this module calls RunConformance from its own
// tests: the EndpointSlice source over a fake clientset and over a real kube-apiserver
// (package endpointslice), the demo's simulated cluster (internal/cluster) and Fake (here).
package endpointtest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/spread-grpc/spread/endpoint"
)

// Fake is an endpoint.Source whose sets the test publishes: one endpoint.Publisher per key.
// A key is known once published; Subscribe to any other key returns at once and delivers its
// first set when it is published (the contract's "test fake" case), unless Refuse was called
// for it. The zero Fake is ready to use.
type Fake struct {
	mu      sync.Mutex
	pubs    map[endpoint.Key]*endpoint.Publisher
	refused map[endpoint.Key]error
	closed  bool
	ctx     context.Context // done after Close
	cancel  context.CancelFunc
}

var _ endpoint.Source = (*Fake)(nil)

// ErrClosed is returned by Subscribe after Close.
var ErrClosed = errors.New("endpointtest: fake source closed")

func (f *Fake) initLocked() {
	if f.pubs == nil {
		f.pubs = map[endpoint.Key]*endpoint.Publisher{}
		f.refused = map[endpoint.Key]error{}
		f.ctx, f.cancel = context.WithCancel(context.Background())
	}
}

// Publisher returns the Publisher of key, creating it.
func (f *Fake) Publisher(key endpoint.Key) *endpoint.Publisher {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.initLocked()
	p, ok := f.pubs[key]
	if !ok {
		p = &endpoint.Publisher{}
		f.pubs[key] = p
	}
	return p
}

// Publish makes eps (as an endpoint.NewSet) the current set of key.
func (f *Fake) Publish(key endpoint.Key, eps ...endpoint.Endpoint) {
	f.Publisher(key).Publish(endpoint.NewSet(eps))
}

// Refuse makes Subscribe to key fail with err, as a source refuses a key it may not watch
// (Forbidden) or does not have.
func (f *Fake) Refuse(key endpoint.Key, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.initLocked()
	f.refused[key] = err
}

// Subscribe implements endpoint.Source.
func (f *Fake) Subscribe(ctx context.Context, key endpoint.Key, fn func(endpoint.Set)) (func(), error) {
	f.mu.Lock()
	f.initLocked()
	closed, refused := f.closed, f.refused[key]
	f.mu.Unlock()
	switch {
	case closed:
		return nil, ErrClosed
	case refused != nil:
		return nil, fmt.Errorf("endpointtest: subscribe %s: %w", key, refused)
	}
	subCtx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(f.ctx, cancel)
	wait, err := f.Publisher(key).Subscribe(subCtx, fn)
	if err != nil {
		stopOnClose()
		cancel()
		return nil, err
	}
	return func() { wait(); stopOnClose(); cancel() }, nil
}

// Close ends every subscription and makes later Subscribe calls fail.
func (f *Fake) Close() {
	f.mu.Lock()
	f.initLocked()
	f.closed = true
	f.mu.Unlock()
	f.cancel()
}
