package dnsrefresh_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/resolver/dnsrefresh"
)

// BenchmarkNewPodFirstCall measures, on the real clock, how long after a DNS change (a pod
// added to the headless Service's answer) the new pod answers its first call, with a refresh
// interval of 1 s and every other setting at its default. Each iteration starts a fresh client
// on 3 pods, waits a random fraction of the interval (so that the change falls anywhere in the
// refresh cycle), adds pod-4 to DNS and calls in a loop until pod-4 answers. Reported: the
// median, 90th percentile and maximum of that delay. Run with a fixed count, e.g.
//
//	go test -run '^$' -bench NewPodFirstCall -benchtime 40x ./resolver/dnsrefresh/
func BenchmarkNewPodFirstCall(b *testing.B) {
	const interval = time.Second
	d, c := startDNS(b), startCluster(b, 4)
	builder, err := dnsrefresh.NewBuilder(dnsrefresh.WithInterval(interval))
	if err != nil {
		b.Fatal(err)
	}
	target := d.target(svc, c.port)
	var delays []time.Duration
	b.StopTimer()
	for range b.N {
		d.Set(svc, 30, c.IPs(1, 2, 3)...)
		conn, err := grpc.NewClient(target, grpc.WithResolvers(builder),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		client := echo.NewEchoServerClient(conn)
		callUntilAll(b, client, podNames(1, 2, 3)...)
		time.Sleep(rand.N(interval))

		b.StartTimer()
		start := time.Now()
		d.Set(svc, 30, c.IPs(1, 2, 3, 4)...)
		callUntilAll(b, client, "pod-4")
		delays = append(delays, time.Since(start))
		b.StopTimer()
		conn.Close()
	}
	slices.Sort(delays)
	ms := func(q float64) float64 {
		return float64(delays[min(len(delays)-1, int(q*float64(len(delays))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.9), "p90-ms")
	b.ReportMetric(ms(1), "max-ms")
}
