package demo

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/cluster"
)

func startCluster(t *testing.T, firstIP string, cfg cluster.Config) *cluster.Cluster {
	t.Helper()
	cfg.FirstPodIP = netip.MustParseAddr(firstIP)
	cfg.VIP = "127.96.0.10:0"
	cfg.DNSAddr = "127.0.0.1:0"
	cfg.XDSAddr = "127.0.0.1:0"
	c, err := cluster.Start(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return c
}

// followingClient is a round_robin client whose addresses follow the cluster's endpoint
// model through a manual resolver: what the kubernetes resolver and xDS do for real.
func followingClient(t *testing.T, c *cluster.Cluster) echo.EchoServerClient {
	t.Helper()
	r := manual.NewBuilderWithScheme("demo")
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var wait func()
	r.BuildCallback = func(resolver.Target, resolver.ClientConn, resolver.BuildOptions) {
		go func() {
			var err error
			wait, err = c.Subscribe(ctx, endpoint.Key{Namespace: cluster.Namespace, Service: cluster.HeadlessService, Port: cluster.PortName}, func(s endpoint.Set) {
				var addrs []resolver.Address
				for _, e := range s.Usable() {
					addrs = append(addrs, resolver.Address{Addr: e.HostPort()})
				}
				r.UpdateState(resolver.State{Addresses: addrs})
			})
			if err != nil {
				t.Error(err)
			}
			close(started)
		}()
	}
	conn, err := grpc.NewClient("demo:///x", grpc.WithResolvers(r), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	conn.Connect()
	t.Cleanup(func() {
		conn.Close()
		cancel()
		<-started
		if wait != nil {
			wait()
		}
	})
	return echo.NewEchoServerClient(conn)
}

// spreadOver makes n calls and counts answers per pod.
func spreadOver(t *testing.T, client echo.EchoServerClient, n int) (map[string]int, int) {
	t.Helper()
	counts, failed := map[string]int{}, 0
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := client.SayHello(ctx, &echo.EchoRequest{Name: "t"})
		cancel()
		if err != nil {
			failed++
			continue
		}
		counts[r.Pod]++
	}
	return counts, failed
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

func dnsAnswers(t *testing.T, c *cluster.Cluster) int {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(c.ServiceName(cluster.HeadlessService)+".", dns.TypeA)
	r, err := dns.Exchange(m, c.DNSAddr())
	if err != nil {
		t.Fatal(err)
	}
	return len(r.Answer)
}

func TestScaleUpAndDown(t *testing.T) {
	c := startCluster(t, "127.0.31.1", cluster.Config{Replicas: 5, PodPort: 0})
	following := followingClient(t, c)
	eventually(t, "following client on 5 pods", func() bool { counts, _ := spreadOver(t, following, 10); return len(counts) == 5 })

	if err := c.Scale(8); err != nil {
		t.Fatal(err)
	}
	eventually(t, "8 ready endpoints", func() bool { return len(c.Endpoints().Ready()) == 8 })
	// The cluster DNS follows the endpoint model through its own subscription, so it may
	// answer the new set a moment after Endpoints shows it.
	eventually(t, "DNS answering 8 addresses after scale-up", func() bool { return dnsAnswers(t, c) == 8 })
	eventually(t, "following client on 8 pods", func() bool { counts, _ := spreadOver(t, following, 16); return len(counts) == 8 })

	// Scale down under load: zero failed calls, and the removed pods leave.
	var failed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, f := spreadOver(t, following, 1); f > 0 {
				failed.Add(int64(f))
			}
		}
	}()
	if err := c.Scale(5); err != nil {
		t.Fatal(err)
	}
	eventually(t, "5 pods left", func() bool { return len(c.Status()) == 5 && len(c.Endpoints()) == 5 })
	close(stop)
	<-done
	if f := failed.Load(); f != 0 {
		t.Errorf("%d calls failed during scale-down", f)
	}
	counts, _ := spreadOver(t, following, 50)
	if len(counts) != 5 {
		t.Errorf("after scale-down calls reached %v, want 5 pods", counts)
	}
	if err := c.Scale(cluster.MaxReplicas + 1); err == nil {
		t.Error("Scale above the maximum: no error")
	}
}

func TestRolloutZeroFailures(t *testing.T) {
	c := startCluster(t, "127.0.32.1", cluster.Config{Replicas: 4, PodPort: 0, RolloutPause: 50 * time.Millisecond})
	following := followingClient(t, c)
	eventually(t, "following client on 4 pods", func() bool { counts, _ := spreadOver(t, following, 8); return len(counts) == 4 })
	oldRS := c.Status()[0].ReplicaSet

	st, err := c.Rollout()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rollout(); err == nil {
		t.Error("second Rollout while one runs: no error")
	}
	var calls, failed int
	for {
		_, f := spreadOver(t, following, 4)
		calls += 4
		failed += f
		if r, _ := c.RolloutState(); r.Finished && len(c.Status()) == 4 {
			break
		}
		if calls > 100000 {
			t.Fatal("rollout never finished")
		}
	}
	if failed != 0 {
		t.Errorf("%d of %d calls failed during the rolling restart", failed, calls)
	}
	for _, p := range c.Status() {
		if p.ReplicaSet != st.ReplicaSet || p.ReplicaSet == oldRS {
			t.Errorf("pod %s of ReplicaSet %s after rollout to %s", p.Name, p.ReplicaSet, st.ReplicaSet)
		}
	}
	eventually(t, "calls on the 4 new pods", func() bool {
		counts, _ := spreadOver(t, following, 8)
		for pod := range counts {
			if !strings.Contains(pod, st.ReplicaSet) {
				return false
			}
		}
		return len(counts) == 4
	})
}

func TestKillFreezeSlow(t *testing.T) {
	c := startCluster(t, "127.0.33.1", cluster.Config{Replicas: 3, PodPort: 0, RestartDelay: 100 * time.Millisecond})
	pod := c.Status()[0]
	direct, err := grpc.NewClient("passthrough:///"+pod.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	client := echo.NewEchoServerClient(direct)
	call := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := client.SayHello(ctx, &echo.EchoRequest{})
		return err
	}
	if err := call(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	// Freeze: the connection stays, calls hang until their deadline.
	if _, err := c.Freeze(pod.Name, true); err != nil {
		t.Fatal(err)
	}
	if err := call(300 * time.Millisecond); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("call to a frozen pod: %v, want DeadlineExceeded", err)
	}
	if !c.Status()[0].Frozen || len(c.Endpoints().Ready()) != 3 {
		t.Error("frozen pod not shown frozen, or dropped from the endpoints")
	}
	if _, err := c.Freeze(pod.Name, false); err != nil {
		t.Fatal(err)
	}
	if err := call(5 * time.Second); err != nil {
		t.Errorf("call after thaw: %v", err)
	}

	// Slow: every call takes at least the delay.
	if _, err := c.Slow(pod.Name, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := call(5 * time.Second); err != nil || time.Since(start) < 200*time.Millisecond {
		t.Errorf("slow call: %v after %v, want success after ≥200ms", err, time.Since(start))
	}
	c.Slow(pod.Name, 0)

	// Kill: the connection resets, the endpoint turns not ready, the container restarts.
	if _, err := c.Kill(pod.Name); err != nil {
		t.Fatal(err)
	}
	if err := call(time.Second); status.Code(err) != codes.Unavailable {
		t.Errorf("call right after kill: %v, want Unavailable", err)
	}
	eventually(t, "the killed pod back and ready", func() bool {
		s := c.Status()[0]
		return s.Phase == cluster.PhaseReady && s.Restarts == 1 && len(c.Endpoints().Ready()) == 3
	})
	eventually(t, "calls to the restarted pod", func() bool { return call(time.Second) == nil })

	for _, bad := range []func() error{
		func() error { _, err := c.Kill("nope"); return err },
		func() error { _, err := c.Slow(pod.Name, -time.Second); return err },
		func() error { _, err := c.Freeze("nope", true); return err },
	} {
		if bad() == nil {
			t.Error("bad control accepted")
		}
	}
}

func TestAdminAPI(t *testing.T) {
	d := startDemo(t, "127.0.34.1", 2)
	post := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, d.AdminURL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/cluster/scale?replicas=3", 200, `"replicas": 3`},
		{"/cluster/scale?replicas=-1", 400, "0 to 200"},
		{"/cluster/scale?replicas=x", 400, "whole number"},
		{"/cluster/pods/nope/kill", 404, "no pod"},
		{"/cluster/pods/random/explode", 404, "unknown action"},
		{"/cluster/pods/random/slow?delay=soon", 400, "duration"},
		{"/cluster/pods/random/slow?delay=2m", 400, "0 to 1m"},
		{"/cluster/pods/random/freeze", 200, `"freeze"`},
		{"/cluster/rollout", 202, `"total": 3`},
	} {
		code, body := post(tc.path)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("POST %s = %d %s; want %d with %q", tc.path, code, body, tc.code, tc.want)
		}
	}
	code, body := get(t, d.AdminURL+"/cluster")
	if code != 200 || !strings.Contains(string(body), `"pods"`) {
		t.Errorf("GET /cluster = %d %s", code, body)
	}
}
