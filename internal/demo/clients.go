package demo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/cluster"
)

// Bounds of the demo's ClusterIP clients (ClientsConfig).
const (
	MaxClusterIPClients     = 200
	MaxClusterIPClientRate  = 50.0
	DefaultClusterIPRate    = 2.0
	DefaultClusterIPFor     = 10 * time.Minute
	MaxClusterIPClientsFor  = time.Hour
	clusterIPClientDeadline = 5 * time.Second
)

// ClientsConfig starts clients nobody can change: N separate grpc-go pick_first clients, each
// with one long-lived connection through the ClusterIP VIP, each making Rate calls per second
// for For (then they stop by themselves). With fair-share pods (cluster.Config.
// FairShareInterval) the dashboard's pod table shows their connections move toward an even
// split after a scale-up; without, the new pods get none of them.
type ClientsConfig struct {
	N    int
	Rate float64       // calls per second per client (default 2)
	For  time.Duration // how long they run (default 10 min)
}

// Validate checks the bounds.
func (c ClientsConfig) Validate() error {
	switch {
	case c.N < 0 || c.N > MaxClusterIPClients:
		return fmt.Errorf("demo: %d ClusterIP clients: want 0 to %d", c.N, MaxClusterIPClients)
	case c.Rate < 0 || c.Rate > MaxClusterIPClientRate:
		return fmt.Errorf("demo: ClusterIP client rate %v: want 0 (default %v) to %v per second", c.Rate, DefaultClusterIPRate, MaxClusterIPClientRate)
	case c.For < 0 || c.For > MaxClusterIPClientsFor:
		return fmt.Errorf("demo: ClusterIP clients for %v: want 0 (default %v) to %v", c.For, DefaultClusterIPFor, MaxClusterIPClientsFor)
	}
	return nil
}

// ClusterIPClients is the running set of ClientsConfig's clients.
type ClusterIPClients struct {
	conns         []*grpc.ClientConn
	cancel        context.CancelFunc
	wg            sync.WaitGroup
	calls, failed atomic.Uint64
	lastErr       atomic.Pointer[string]
	closeOnce     sync.Once
	closeErr      error
}

// StartClusterIPClients starts cfg's clients against c's VIP (creds nil: plaintext).
func StartClusterIPClients(c *cluster.Cluster, cfg ClientsConfig, creds credentials.TransportCredentials) (*ClusterIPClients, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Rate == 0 {
		cfg.Rate = DefaultClusterIPRate
	}
	if cfg.For == 0 {
		cfg.For = DefaultClusterIPFor
	}
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.For)
	m := &ClusterIPClients{cancel: cancel}
	for range cfg.N {
		cc, err := grpc.NewClient("passthrough:///"+c.VIPAddr(), grpc.WithTransportCredentials(creds))
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("demo: ClusterIP client: %w", err)
		}
		cc.Connect()
		m.conns = append(m.conns, cc)
	}
	period := time.Duration(float64(time.Second) / cfg.Rate)
	for _, cc := range m.conns {
		client := echo.NewEchoServerClient(cc)
		m.wg.Go(func() {
			// Start spread over one period, so the clients do not call in lockstep.
			t := time.NewTimer(time.Duration(rand.Int64N(int64(period) + 1)))
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				cctx, ccancel := context.WithTimeout(ctx, clusterIPClientDeadline)
				_, err := client.SayHello(cctx, &echo.EchoRequest{Name: "clusterip-client"})
				ccancel()
				if ctx.Err() != nil {
					return
				}
				m.calls.Add(1)
				if err != nil {
					m.failed.Add(1)
					s := err.Error()
					m.lastErr.Store(&s)
				}
				t.Reset(period)
			}
		})
	}
	return m, nil
}

// Counts returns the calls made and failed so far, and the last error.
func (m *ClusterIPClients) Counts() (calls, failed uint64, lastErr string) {
	if p := m.lastErr.Load(); p != nil {
		lastErr = *p
	}
	return m.calls.Load(), m.failed.Load(), lastErr
}

// Close stops the clients and closes their connections; it waits for their calls.
func (m *ClusterIPClients) Close() error {
	m.closeOnce.Do(func() {
		if m.cancel != nil {
			m.cancel()
		}
		m.wg.Wait()
		var errs []error
		for _, cc := range m.conns {
			errs = append(errs, cc.Close())
		}
		m.closeErr = errors.Join(errs...)
	})
	return m.closeErr
}
