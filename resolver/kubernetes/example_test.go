package kubernetes_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/resolver/kubernetes"
)

// A client of the Service "be-srv" in namespace "default", port named "grpc". In a pod,
// kubernetes.NewBuilder() needs no option (it uses the pod's service account); here a fake
// clientset stands in for the API server.
func Example() {
	client, stop := fakeCluster()
	defer stop()

	b, err := kubernetes.NewBuilder(kubernetes.WithClient(client)) // 1. a builder (in a pod: NewBuilder())
	if err != nil {
		log.Print(err)
		return
	}
	defer b.Close()                                                                         // 2. stop its watches with the client
	conn, err := grpc.NewClient("kubernetes:///be-srv.default:grpc", grpc.WithResolvers(b), // 3. dial the Service
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Print(err)
		return
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply, err := echo.NewEchoServerClient(conn).SayHello(ctx, &echo.EchoRequest{Name: "gopher"})
	if err != nil {
		log.Print(err)
		return
	}
	fmt.Println(reply.GetMessage())
	// Output: Hello gopher from hostname be-srv-7d9f
}

// fakeCluster runs one echo backend on loopback and a fake clientset holding its
// EndpointSlice (a real API server refuses loopback addresses; the fake does not).
func fakeCluster() (*fake.Clientset, func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := grpc.NewServer()
	echo.RegisterEchoServerServer(srv, greeter{})
	healthpb.RegisterHealthServer(srv, health.NewServer()) // for the client-side health checks
	go func() { _ = srv.Serve(lis) }()
	_, p, _ := net.SplitHostPort(lis.Addr().String())
	port, _ := strconv.Atoi(p)
	return fake.NewClientset(&discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: "be-srv-abcde", Namespace: "default",
			Labels: map[string]string{discoveryv1.LabelServiceName: "be-srv"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{{
			Addresses: []string{"127.0.0.1"},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "be-srv-7d9f"},
		}},
	}), srv.Stop
}

type greeter struct {
	echo.UnimplementedEchoServerServer
}

func (greeter) SayHello(_ context.Context, r *echo.EchoRequest) (*echo.EchoReply, error) {
	return &echo.EchoReply{Message: "Hello " + r.GetName() + " from hostname be-srv-7d9f", Pod: "be-srv-7d9f"}, nil
}
