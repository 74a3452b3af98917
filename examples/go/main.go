// Command go is a tiny proxyless xDS client in Go: grpc-go's xds:/// resolver dialing a
// Service served by `spread xds` (or `spread demo`'s control plane), printing how many of its
// calls each pod answered.
//
//	spread xds bootstrap --server 127.0.0.1:18000 > bootstrap.json
//	GRPC_XDS_BOOTSTRAP=bootstrap.json go run ./examples/go --target xds:///be-srv.default:50051 --n 100
//
// grpc-go reads GRPC_XDS_BOOTSTRAP when the xds package loads, so set it before the program
// starts. grpc-go dials named ports too (xds:///be-srv.default:grpc); other languages need
// the number.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	_ "google.golang.org/grpc/xds" // registers the xds:/// resolver and the xDS balancers

	"github.com/spread-grpc/spread/echo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

// result is what run prints: answers per pod and failures per status.
type result struct {
	Counts map[string]int `json:"counts"`
	Errors map[string]int `json:"errors"`
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("example", flag.ContinueOnError)
	target := fs.String("target", "xds:///be-srv.default:50051", "xds:///<service>.<namespace>:<port>")
	n := fs.Int("n", 10, "calls to make (at most 100000)")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline of each call")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > 100000 {
		return fmt.Errorf("--n %d: want 1 to 100000", *n)
	}
	if os.Getenv("GRPC_XDS_BOOTSTRAP") == "" && os.Getenv("GRPC_XDS_BOOTSTRAP_CONFIG") == "" {
		return fmt.Errorf("set GRPC_XDS_BOOTSTRAP to a bootstrap file (spread xds bootstrap --server ...)")
	}
	cc, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	c := echo.NewEchoServerClient(cc)
	res := result{Counts: map[string]int{}, Errors: map[string]int{}}
	for range *n {
		callCtx, cancel := context.WithTimeout(ctx, *timeout)
		r, err := c.SayHello(callCtx, &echo.EchoRequest{Name: "go-example"})
		cancel()
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			s := status.Convert(err)
			res.Errors[s.Code().String()+": "+s.Message()]++
			continue
		}
		res.Counts[r.GetPod()]++
	}
	return json.NewEncoder(out).Encode(res)
}
