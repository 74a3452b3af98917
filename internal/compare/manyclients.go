package compare

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/modes"
)

// ManyClients is how many separate ClusterIP clients the clusterip-40 contenders run.
const ManyClients = 40

// FairShareInterval is the fair-share round of the clusterip-40-fairshare contender (the
// spread backend default).
const FairShareInterval = 5 * time.Second

// ManyClientsContenders are the clients nobody will rewrite: 40 separate connections (one
// grpc-go pick_first client each) through the ClusterIP VIP, the run's calls dealt among them
// in turn, against pods doing nothing, recycling connections with MaxConnectionAge 5 s or 30 s,
// or shedding connections above their fair share (package fairshare).
func ManyClientsContenders() []Contender {
	mk := func(name, desc string, cluster func(*cluster.Config)) Contender {
		return Contender{Name: name, Description: desc, Cluster: cluster, Connect: connectMany}
	}
	return []Contender{
		mk("clusterip-40", fmt.Sprintf("%d ClusterIP clients (one connection each through the VIP), pods do nothing", ManyClients), nil),
		mk("clusterip-40-mca-5s", fmt.Sprintf("%d ClusterIP clients, pods with MaxConnectionAge 5 s", ManyClients),
			func(c *cluster.Config) { c.MaxConnectionAge = 5 * time.Second }),
		mk("clusterip-40-mca-30s", fmt.Sprintf("%d ClusterIP clients, pods with MaxConnectionAge 30 s", ManyClients),
			func(c *cluster.Config) { c.MaxConnectionAge = 30 * time.Second }),
		mk("clusterip-40-fairshare", fmt.Sprintf("%d ClusterIP clients, pods shed connections above their fair share (%v rounds)", ManyClients, FairShareInterval),
			func(c *cluster.Config) { c.FairShareInterval = FairShareInterval }),
	}
}

// ManyClientsContender returns the clusterip-40 contender named name.
func ManyClientsContender(name string) (Contender, bool) {
	for _, c := range ManyClientsContenders() {
		if c.Name == name {
			return c, true
		}
	}
	return Contender{}, false
}

func connectMany(ctx context.Context, c *cluster.Cluster, _ modes.Options) (echo.EchoServerClient, func() error, error) {
	if c.Config().TLSCert != "" {
		return nil, nil, errors.New("compare: the clusterip-40 contenders dial plaintext")
	}
	m := &manyClients{}
	for range ManyClients {
		cc, err := grpc.NewClient("passthrough:///"+c.VIPAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			m.close()
			return nil, nil, err
		}
		cc.Connect()
		m.conns = append(m.conns, cc)
		m.clients = append(m.clients, echo.NewEchoServerClient(cc))
	}
	return m, m.close, nil
}

// manyClients deals calls to its clients in turn.
type manyClients struct {
	conns   []*grpc.ClientConn
	clients []echo.EchoServerClient
	next    atomic.Uint64
}

func (m *manyClients) pick() echo.EchoServerClient {
	return m.clients[(m.next.Add(1)-1)%uint64(len(m.clients))]
}

func (m *manyClients) SayHello(ctx context.Context, in *echo.EchoRequest, opts ...grpc.CallOption) (*echo.EchoReply, error) {
	return m.pick().SayHello(ctx, in, opts...)
}

func (m *manyClients) SayHelloStream(ctx context.Context, in *echo.EchoRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[echo.EchoReply], error) {
	return m.pick().SayHelloStream(ctx, in, opts...)
}

func (m *manyClients) close() error {
	var errs []error
	for _, cc := range m.conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}
