package xds_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/endpoint"
	"github.com/spread-grpc/spread/internal/xds"
)

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(percentile(lat, 1).Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(len(lat)), "trials")
}

// BenchmarkDiscovery: an endpoint set change reaches the control plane → time until the
// first call lands on the new pod (one trial per iteration; run with -benchtime=100x).
func BenchmarkDiscovery(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var src fakeEndpoints
	base := startBackends(b, 3, "be-")
	extra := startBackends(b, 2, "new-")
	src.publish(beKey, eps(base, "")...)
	cp := startControlPlane(b, "127.0.0.1:0", &src, xds.ServicesFromKeys(beKey))
	c := newClient(b, cp.addr, "", beTarget)
	if _, err := spread(ctx, c, 10); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		nb := extra[i%len(extra)]
		before := nb.calls.Load()
		start := time.Now()
		src.publish(beKey, append(eps(base, ""), nb.ep(""))...)
		for nb.calls.Load() == before {
			if _, err := c.SayHello(ctx, &echo.EchoRequest{Name: "d"}); err != nil {
				b.Fatal(err)
			}
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		// Remove it again and wait until it is out of rotation, outside the timing.
		src.publish(beKey, eps(base, "")...)
		for {
			got, err := spread(ctx, c, 6)
			if err != nil {
				b.Fatal(err)
			}
			if got[nb.pod] == 0 {
				break
			}
		}
		b.StartTimer()
	}
	reportLatency(b, lat)
}

// BenchmarkFanout: one endpoint change of a 5,000-endpoint Service pushed to 500 raw ADS
// streams → time until every stream has ACKed it.
func BenchmarkFanout(b *testing.B) {
	const streams, endpoints, conns = 500, 5000, 10
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var src fakeEndpoints
	set := make([]endpoint.Endpoint, endpoints)
	for i := range set {
		set[i] = endpoint.Endpoint{
			Address: "192.0.2." + strconv.Itoa(i%250+1), Port: int32(10000 + i/250),
			Pod: fmt.Sprintf("be-%d", i), Zone: fmt.Sprintf("zone-%d", i%3), Ready: true, Serving: true,
		}
	}
	src.publish(beKey, set...)
	cp := startControlPlane(b, "127.0.0.1:0", &src, xds.ServicesFromKeys(beKey))

	// last[i] is the EDS version stream i has ACKed most recently.
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	last := make([]string, streams)
	onEDS := func(i int, version string) {
		mu.Lock()
		last[i] = version
		mu.Unlock()
		cond.Broadcast()
	}
	waitAll := func(version string) {
		mu.Lock()
		defer mu.Unlock()
		for {
			n := 0
			for _, v := range last {
				if v == version {
					n++
				}
			}
			if n == streams {
				return
			}
			cond.Wait()
		}
	}
	var ccs []*grpc.ClientConn
	for range conns {
		cc, err := grpc.NewClient(cp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		ccs = append(ccs, cc)
	}
	defer func() {
		for _, cc := range ccs {
			cc.Close()
		}
	}()
	sctx, stopStreams := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopStreams(); wg.Wait() }()
	name := beKey.String()
	for i := range streams {
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(ccs[i%conns]).StreamAggregatedResources(sctx)
		if err != nil {
			b.Fatal(err)
		}
		node := &corev3.Node{Id: fmt.Sprintf("raw-%d", i)}
		for _, t := range []string{"listener.v3.Listener", "route.v3.RouteConfiguration", "cluster.v3.Cluster", "endpoint.v3.ClusterLoadAssignment"} {
			if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: "type.googleapis.com/envoy.config." + t, ResourceNames: []string{name}}); err != nil {
				b.Fatal(err)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				r, err := st.Recv()
				if err != nil {
					return
				}
				if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce(), ResourceNames: []string{name}}); err != nil {
					return
				}
				if strings.HasSuffix(r.GetTypeUrl(), "ClusterLoadAssignment") {
					onEDS(i, r.GetVersionInfo())
				}
			}
		}()
	}
	version := func() string {
		return cp.srv.Versions()[""]["endpoint"]
	}
	waitAll(version()) // every stream has the initial state
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		set[0].Ready = i%2 == 1 // flip one endpoint's health
		set[0].Serving = set[0].Ready
		prev := version()
		start := time.Now()
		src.publish(beKey, set...)
		v := version()
		for v == prev { // the new version is known once the snapshot is built
			runtime.Gosched()
			v = version()
		}
		waitAll(v)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	b.ReportMetric(rssMiB(), "rss-MiB")
}

func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkOverhead compares, in one run, unary throughput of 64 callers over: one direct
// connection (pick_first), plain round_robin over 5 backends (manual resolver), and
// xds:/// round robin over the same 5.
func BenchmarkOverhead(b *testing.B) {
	var src fakeEndpoints
	bs := startBackends(b, 5, "be-")
	src.publish(beKey, eps(bs, "")...)
	cp := startControlPlane(b, "127.0.0.1:0", &src, xds.ServicesFromKeys(beKey))
	addrs := make([]resolver.Address, len(bs))
	for i, be := range bs {
		addrs[i] = resolver.Address{Addr: fmt.Sprintf("127.0.0.1:%d", be.port)}
	}
	dial := func(target string, opts ...grpc.DialOption) echo.EchoServerClient {
		cc, err := grpc.NewClient(target, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cc.Close() })
		return echo.NewEchoServerClient(cc)
	}
	clients := map[string]func() echo.EchoServerClient{
		"direct": func() echo.EchoServerClient { return dial(addrs[0].Addr) },
		"round_robin": func() echo.EchoServerClient {
			r := manual.NewBuilderWithScheme("bench")
			r.InitialState(resolver.State{Addresses: addrs})
			return dial("bench:///be", grpc.WithResolvers(r), grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
		},
		"xds_round_robin": func() echo.EchoServerClient { return newClient(b, cp.addr, "", beTarget) },
	}
	for _, name := range []string{"direct", "round_robin", "xds_round_robin"} {
		b.Run(name, func(b *testing.B) {
			c := clients[name]()
			ctx := context.Background()
			if _, err := spread(ctx, c, 50); err != nil {
				b.Fatal(err)
			}
			var calls atomic.Int64
			b.SetParallelism(32) // 32 × GOMAXPROCS(2) = 64 callers
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				req := &echo.EchoRequest{Name: "x"}
				for pb.Next() {
					if _, err := c.SayHello(ctx, req); err != nil {
						b.Error(err)
						return
					}
					calls.Add(1)
				}
			})
			b.ReportMetric(float64(calls.Load())/time.Since(start).Seconds(), "calls/s")
		})
	}
}
