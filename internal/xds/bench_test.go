package xds_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/protobuf/encoding/protowire"

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
		before := nb.Calls()
		start := time.Now()
		src.publish(beKey, append(eps(base, ""), nb.ep(""))...)
		for nb.Calls() == before {
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

var (
	fanoutStreams = flag.Int("fanout.streams", 2000, "BenchmarkFanout: ADS streams")
	plainCodec    = flag.Bool("plain-codec", false, "control planes the tests start use grpc-go's proto codec, not Server.ServerOptions (to measure what the shared encoding saves)")
	fanoutDecode  = flag.Bool("fanout.decode", false, "BenchmarkFanout: the clients decode every response in full (by default they read only what an ACK needs)")
)

// BenchmarkFanout: one endpoint change of a 5,000-endpoint Service pushed to 2,000 raw ADS
// streams (-fanout.streams) → time until every stream has ACKed it. The streams run in a
// child process (this test binary, TestFanoutClients), so the memory figures are the control
// plane's alone: peak-rss-MiB is the process's VmHWM (its whole life: start-up, the initial
// push to every stream, and the measured changes). The clients share the machine's cores
// with the control plane; by default they read only version, type URL and nonce of each
// response (what an ACK needs) and skip the resources' bytes, so the figure is the control
// plane's push and not 2,000 decodes of a 5,000-endpoint assignment on the same cores (real
// clients decode in their own processes, in parallel). -fanout.decode decodes in full.
func BenchmarkFanout(b *testing.B) {
	const endpoints = 5000
	streams := *fanoutStreams
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
	<-cp.srv.Ready()

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestFanoutClients$", "-test.v")
	// The child is the clients' process: a GOMEMLIMIT given to the benchmark (the control
	// plane) is not meant for it.
	env := slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "GOMEMLIMIT=") })
	cmd.Env = append(env, fanoutServerEnv+"="+cp.addr, fanoutStreamsEnv+"="+strconv.Itoa(streams), fanoutDecodeEnv+"="+strconv.FormatBool(*fanoutDecode))
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { in.Close(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(out)
	// waitAll reads the child's reports until every stream has ACKed version.
	waitAll := func(version string) {
		for lines.Scan() {
			if strings.TrimSpace(lines.Text()) == "acked "+version {
				return
			}
		}
		b.Fatalf("child ended before all streams acked %s: %v", version, lines.Err())
	}
	version := func() string { return cp.srv.Versions()[""]["endpoint"] }
	waitAll(version()) // every stream has the initial state
	var lat []time.Duration
	cpu0 := cpuTime()
	// b.Loop: the set-up above (2,000 streams' first push) runs once, not again for b.N = 1.
	for i := 0; b.Loop(); i++ {
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
	// CPU time of this process (the control plane alone) per change: the part of a push's
	// time that does not depend on the machine's other load.
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(len(lat)), "cp-cpu-ms/op")
	reportLatency(b, lat)
	b.ReportMetric(procStatusMiB("VmHWM:"), "peak-rss-MiB")
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "live-heap-MiB")
	b.ReportMetric(cp.metric("spread_xds_connected_clients", nil), "clients")
	if d, err := cp.srv.Dump(); err == nil {
		b.ReportMetric(float64(len(d.Zones[""].Resources["endpoint"][0]))/1024, "eds-json-KiB")
	}
}

const (
	fanoutServerEnv  = "SPREAD_XDS_FANOUT_SERVER"
	fanoutStreamsEnv = "SPREAD_XDS_FANOUT_STREAMS"
	fanoutDecodeEnv  = "SPREAD_XDS_FANOUT_DECODE"
)

// ackCodec is TestFanoutClients' codec: of a DiscoveryResponse it decodes only version,
// type URL and nonce, skipping the resources; everything else is proto.
type ackCodec struct{ encoding.CodecV2 }

func (c ackCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*discoveryv3.DiscoveryResponse)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	b := data.Materialize()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return protowire.ParseError(m)
		}
		if typ == protowire.BytesType {
			val, _ := protowire.ConsumeBytes(b)
			switch num {
			case 1:
				r.VersionInfo = string(val)
			case 4:
				r.TypeUrl = string(val)
			case 5:
				r.Nonce = string(val)
			}
		}
		b = b[m:]
	}
	return nil
}

// TestFanoutClients is BenchmarkFanout's child process: raw ADS streams that ACK every
// response, printing "acked <version>" whenever all of them have ACKed an EDS version.
// It ends when its standard input closes. Skipped unless started by the benchmark.
func TestFanoutClients(t *testing.T) {
	addr := os.Getenv(fanoutServerEnv)
	if addr == "" {
		t.Skip("run by BenchmarkFanout")
	}
	streams, _ := strconv.Atoi(os.Getenv(fanoutStreamsEnv))
	conns := max(1, streams/50) // 50 streams per connection
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if os.Getenv(fanoutDecodeEnv) != "true" {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.ForceCodecV2(ackCodec{encoding.GetCodecV2("proto")})))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }()

	var mu sync.Mutex
	last := make([]string, streams)
	count := map[string]int{}
	onEDS := func(i int, v string) {
		mu.Lock()
		defer mu.Unlock()
		if last[i] == v {
			return
		}
		last[i] = v
		count[v]++
		if count[v] == streams {
			fmt.Printf("\nacked %s\n", v)
			delete(count, v)
		}
	}
	var ccs []*grpc.ClientConn
	for range conns {
		cc, err := grpc.NewClient(addr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ccs = append(ccs, cc)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	name := beKey.String()
	for i := range streams {
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(ccs[i%conns]).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		node := &corev3.Node{Id: fmt.Sprintf("raw-%d", i)}
		for _, typ := range []string{"listener.v3.Listener", "route.v3.RouteConfiguration", "cluster.v3.Cluster", "endpoint.v3.ClusterLoadAssignment"} {
			if err := st.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: "type.googleapis.com/envoy.config." + typ, ResourceNames: []string{name}}); err != nil {
				t.Fatal(err)
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
	<-ctx.Done()
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procStatusMiB reads a memory figure (VmRSS:, VmHWM:) of this process.
func procStatusMiB(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
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
			start, cpu0 := time.Now(), cpuTime()
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
			// On a shared machine throughput swings with the neighbours' load; CPU time per call
			// (client, servers and control plane together, one process) is the steadier figure.
			b.ReportMetric(float64(calls.Load())/time.Since(start).Seconds(), "calls/s")
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(calls.Load()), "cpu-µs/call")
		})
	}
}
