package controlplane_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcxds "google.golang.org/grpc/xds" // the grpc-go xDS client: xds:/// resolver and balancers

	"github.com/spread-grpc/spread/controlplane"
	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/endpoint/endpointtest"
)

type hello struct {
	echo.UnimplementedEchoServerServer
}

func (hello) SayHello(_ context.Context, r *echo.EchoRequest) (*echo.EchoReply, error) {
	return &echo.EchoReply{Message: "hello " + r.Name}, nil
}

// The control plane over a static endpoint source, and a grpc-go client dialing through it.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)

	// A backend pod: a real gRPC server on loopback.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	backend := grpc.NewServer()
	echo.RegisterEchoServerServer(backend, hello{})
	go backend.Serve(lis)
	defer backend.Stop()

	// The sources: one Service port and its one endpoint. In a cluster these are
	// endpointslice.New(client) and kubeservices.New(client).
	key := endpoint.Key{Namespace: "default", Service: "be", Port: "grpc"}
	var eps endpointtest.Fake
	eps.Publish(key, endpoint.Endpoint{Address: "127.0.0.1", Port: int32(lis.Addr().(*net.TCPAddr).Port), Ready: true, Serving: true})

	srv, err := controlplane.New(&eps, controlplane.ServicesFromKeys(key), controlplane.WithLogger(quiet))
	if err != nil {
		panic(err)
	}
	started := make(chan net.Addr, 1)
	served := make(chan error, 1)
	serveCtx, stop := context.WithCancel(ctx)
	go func() {
		served <- controlplane.Serve(serveCtx, controlplane.ServeConfig{
			Server: srv, Addr: "127.0.0.1:0", Logger: quiet, Grace: 5 * time.Second,
			Started: func(a net.Addr) { started <- a },
		})
	}()
	var ads net.Addr
	select {
	case ads = <-started:
	case err := <-served:
		panic(err)
	}

	// The client: a bootstrap naming the control plane, then xds:///<svc>.<ns>:<port>. (A
	// production client reads the bootstrap from GRPC_XDS_BOOTSTRAP instead; this
	// per-channel builder is grpc-go's API for tests.)
	bootstrap, err := controlplane.Bootstrap(controlplane.BootstrapConfig{ServerURI: ads.String(), NodeID: "example"})
	if err != nil {
		panic(err)
	}
	xdsResolver, err := grpcxds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		panic(err)
	}
	conn, err := grpc.NewClient("xds:///"+key.String(), grpc.WithResolvers(xdsResolver),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	reply, err := echo.NewEchoServerClient(conn).SayHello(ctx, &echo.EchoRequest{Name: "xds"}, grpc.WaitForReady(true))
	if err != nil {
		panic(err)
	}
	fmt.Println(reply.Message)

	conn.Close()
	stop()
	fmt.Println("shutdown:", <-served)
	// Output:
	// hello xds
	// shutdown: <nil>
}
