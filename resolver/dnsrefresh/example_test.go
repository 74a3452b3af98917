package dnsrefresh_test

import (
	"fmt"
	"log"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/resolver/dnsrefresh"
)

// A client of a headless Service that follows its pods: here a local DNS server stands in for
// CoreDNS, and three loopback gRPC servers for the pods; a fourth pod is added to DNS while the
// client runs and gets calls after the next refresh (interval 1 s).
func Example() {
	env := &exampleEnv{}
	defer env.close()
	dnsServer, pods := startDNS(env), startCluster(env, 4)
	dnsServer.Set("be-srv-lb.default.svc.cluster.local.", 5, pods.IPs(1, 2, 3)...)

	b, err := dnsrefresh.NewBuilder(
		dnsrefresh.WithServer(dnsServer.addr), // in a pod: leave it out, /etc/resolv.conf is used
		dnsrefresh.WithInterval(time.Second),
	)
	if err != nil {
		log.Fatal(err)
	}
	target := fmt.Sprintf("dns+refresh:///be-srv-lb.default.svc.cluster.local.:%d", pods.port)
	conn, err := grpc.NewClient(target, grpc.WithResolvers(b),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := echo.NewEchoServerClient(conn)

	callUntilAll(env, client, "pod-1", "pod-2", "pod-3")
	printCounts(callN(env, client, 6))

	// Scale up: pod-4 joins the Service.
	dnsServer.Set("be-srv-lb.default.svc.cluster.local.", 5, pods.IPs(1, 2, 3, 4)...)
	callUntilAll(env, client, "pod-4")
	printCounts(callN(env, client, 8))
	// Output:
	// pod-1:2 pod-2:2 pod-3:2
	// pod-1:2 pod-2:2 pod-3:2 pod-4:2
}

func printCounts(counts map[string]int) {
	var out []string
	for pod, n := range counts {
		out = append(out, fmt.Sprintf("%s:%d", pod, n))
	}
	slices.Sort(out)
	fmt.Println(strings.Join(out, " "))
}

// exampleEnv lets Examples use the test helpers: Fatal panics, cleanups run at close.
type exampleEnv struct{ cleanups []func() }

func (e *exampleEnv) Helper()                   {}
func (e *exampleEnv) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (e *exampleEnv) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (e *exampleEnv) Cleanup(f func())          { e.cleanups = append(e.cleanups, f) }
func (e *exampleEnv) close() {
	for _, f := range slices.Backward(e.cleanups) {
		f()
	}
}
