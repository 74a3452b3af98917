package xdscmd

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/internal/clusterdns"
	"github.com/spread-grpc/spread/internal/xds"
)

// Environment of a control-plane child process (TestFailoverChild).
const (
	envChildListen     = "SPREAD_TEST_XDS_CHILD_LISTEN"
	envChildKubeconfig = "SPREAD_TEST_XDS_CHILD_KUBECONFIG"
)

// TestFailoverChild is not a test: it is the control-plane replica TestFailoverUnderLoad
// runs as a separate process (so that it can be SIGKILLed), `spread xds` as Run serves it,
// until SIGTERM.
func TestFailoverChild(t *testing.T) {
	listen := os.Getenv(envChildListen)
	if listen == "" {
		t.Skip("only run as a child of TestFailoverUnderLoad")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cfg := DefaultConfig()
	cfg.Listen, cfg.AdminListen, cfg.Kubeconfig, cfg.ShutdownGrace = listen, "127.0.0.1:0", os.Getenv(envChildKubeconfig), 5*time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.Started = func(_, admin net.Addr) { fmt.Printf("ADMIN %s\n", admin) }
	err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "replica:", err)
		os.Exit(1)
	}
	// A process under test, not a test: its exit code is the result. (Exit here, before
	// TestMain's leak check: client-go's idle API-server connections outlive Run briefly.)
	os.Exit(0)
}

// replica is one control-plane child process.
type replica struct {
	listen string
	cmd    *exec.Cmd
	admin  string
	exited chan struct{}
}

func startReplica(t *testing.T, ctx context.Context, listen, kubeconfig string) *replica {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFailoverChild$")
	cmd.Env = append(os.Environ(), envChildListen+"="+listen, envChildKubeconfig+"="+kubeconfig)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{listen: listen, cmd: cmd, exited: make(chan struct{})}
	adminc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADMIN "); ok {
				adminc <- a
			}
		}
		_ = cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-r.exited })
	select {
	case r.admin = <-adminc:
	case <-r.exited:
		t.Fatalf("replica %s exited before listening", listen)
	case <-ctx.Done():
		t.Fatalf("replica %s: not listening before the deadline", listen)
	}
	for !r.ready() {
		select {
		case <-ctx.Done():
			t.Fatalf("replica %s: not ready before the deadline", listen)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return r
}

func (r *replica) ready() bool {
	resp, err := http.Get("http://" + r.admin + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

var clientsMetric = regexp.MustCompile(`(?m)^spread_xds_connected_clients (\S+)$`)

// clients is the replica's spread_xds_connected_clients (-1 if it does not answer).
func (r *replica) clients() int {
	resp, err := http.Get("http://" + r.admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := clientsMetric.FindSubmatch(b)
	if m == nil {
		return -1
	}
	n, _ := strconv.ParseFloat(string(m[1]), 64)
	return int(n)
}

// versions are the replica's zone-less snapshot versions, from /debug/xds.
func (r *replica) versions() map[string]string {
	resp, err := http.Get("http://" + r.admin + "/debug/xds")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var d xds.Dump
	if json.NewDecoder(resp.Body).Decode(&d) != nil {
		return nil
	}
	return d.Zones[""].Versions
}

func (r *replica) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("replica %s did not exit on %v", r.listen, sig)
	}
}

// TestFailoverUnderLoad: two control-plane replicas (separate processes over one real API
// server) behind one DNS name, like a Service's pods; clients call all the time. One replica
// is SIGKILLed, later the other is drained with SIGTERM (the first restarted meanwhile).
// Every call succeeds, and after each loss every client is back on the live replica and
// follows an EndpointSlice change made after it.
func TestFailoverUnderLoad(t *testing.T) {
	e := startKubeEnv(t, 5) // also runs an in-process control plane; the clients here do not use it
	ctx, cs, slice, ep := e.ctx, e.cs, e.slice, e.ep

	// One port on two loopback addresses, both under one name (a headless Service's DNS).
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	lis.Close()
	dns := clusterdns.New("cluster.local", time.Second)
	dnsAddr, err := dns.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = dns.Shutdown(sctx)
	})
	const name = "spread-xds.spread-system.svc.cluster.local"
	dns.Set(name, []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")})
	kubeconfig := e.kubeconfig
	replicas := []*replica{
		startReplica(t, ctx, "127.0.0.1:"+port, kubeconfig),
		startReplica(t, ctx, "127.0.0.2:"+port, kubeconfig),
	}

	const nClients = 4
	target := "dns://" + dnsAddr + "/" + name + ":" + port
	clients := make([]echo.EchoServerClient, nClients)
	for i := range clients {
		clients[i] = e.dialVia(t, target, fmt.Sprintf("failover-client-%d", i))
	}
	// seen reports whether n calls of every client land on exactly the pods want.
	seen := func(want ...string) bool {
		for _, c := range clients {
			got, err := e.count(c, 3*len(want))
			if err != nil || len(got) != len(want) {
				return false
			}
			for _, p := range want {
				if got[p] == 0 {
					return false
				}
			}
		}
		return true
	}
	e.until("every client on pods 1-3", func() bool { return seen("be-1", "be-2", "be-3") })

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stopCalls := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			for {
				select {
				case <-stopCalls:
					return
				case <-ctx.Done():
					return
				default:
				}
				callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := c.SayHello(callCtx, &echo.EchoRequest{Name: "failover"})
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					ok.Add(1)
				}
				time.Sleep(time.Millisecond) // pace: ~1,000 calls/s per client at most
			}
		})
	}
	defer func() { close(stopCalls); wg.Wait() }()
	flowing := func(what string) {
		t.Helper()
		n := ok.Load()
		e.until(what, func() bool { return ok.Load() > n+100 })
	}
	holder := func() (int, string) {
		a, b := replicas[0].clients(), replicas[1].clients()
		if a >= b {
			return 0, fmt.Sprint(a, "/", b)
		}
		return 1, fmt.Sprint(a, "/", b)
	}
	setPods := func(pods ...int) {
		t.Helper()
		slice.Endpoints = nil
		for _, p := range pods {
			slice.Endpoints = append(slice.Endpoints, ep(p, true, false))
		}
		var err error
		if slice, err = cs.DiscoveryV1().EndpointSlices("default").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	allOn := func(live *replica) {
		t.Helper()
		e.until("every client's stream on the live replica", func() bool { return live.clients() == nClients })
	}
	flowing("calls flowing")

	// 1. SIGKILL the replica the clients are on.
	i, counts := holder()
	t.Logf("clients per replica before the kill: %s", counts)
	killed, live := replicas[i], replicas[1-i]
	start := time.Now()
	killed.signal(t, syscall.SIGKILL)
	setPods(1, 2, 3, 4)
	e.until("every client follows a change made after the kill", func() bool { return seen("be-1", "be-2", "be-3", "be-4") })
	t.Logf("SIGKILL → every client on pods 1-4: %v", time.Since(start).Round(time.Millisecond))
	allOn(live)
	flowing("calls flowing after the kill")

	// 2. Restart it, then drain the survivor with SIGTERM.
	replicas[i] = startReplica(t, ctx, killed.listen, kubeconfig)
	e.until("both replicas report the same versions", func() bool {
		a, b := replicas[0].versions(), replicas[1].versions()
		return a["endpoint"] != "" && maps.Equal(a, b)
	})
	drained := live
	start = time.Now()
	drained.signal(t, syscall.SIGTERM)
	setPods(2, 3, 4, 5)
	e.until("every client follows a change made after the drain", func() bool { return seen("be-2", "be-3", "be-4", "be-5") })
	t.Logf("SIGTERM → every client on pods 2-5: %v", time.Since(start).Round(time.Millisecond))
	allOn(replicas[i])
	flowing("calls flowing after the drain")

	close(stopCalls)
	wg.Wait()
	stopCalls = make(chan struct{}) // for the deferred close
	if failed.Load() != 0 {
		t.Fatalf("%d of %d calls failed across a SIGKILL and a SIGTERM of a replica (first: %v)", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	t.Logf("%d calls from %d clients, 0 failed, across a SIGKILL and a SIGTERM of a replica", ok.Load(), nClients)
}
