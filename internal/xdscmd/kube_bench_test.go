package xdscmd

import (
	"fmt"
	"slices"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/spread-grpc/spread/echo"
)

// BenchmarkKubeDiscovery: EndpointSlice write on the API server → first call on the new pod,
// through EndpointSlice watch → spread xds → ADS → grpc-go. One trial per iteration; run
// with -benchtime=60x.
func BenchmarkKubeDiscovery(b *testing.B) {
	e := startKubeEnv(b, 5)
	c := e.dial("xds:///be.default:grpc")
	e.until("3 pods", func() bool { got, err := e.count(c, 9); return err == nil && len(got) == 3 })
	base := []discoveryv1.Endpoint{e.ep(1, true, false), e.ep(2, true, false), e.ep(3, true, false)}
	slice := e.slice
	write := func(eps []discoveryv1.Endpoint) {
		s := slice.DeepCopy()
		s.Endpoints = eps
		var err error
		if slice, err = e.cs.DiscoveryV1().EndpointSlices("default").Update(e.ctx, s, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		n := 4 + i%2
		pod := fmt.Sprintf("be-%d", n)
		start := time.Now()
		write(append(slices.Clone(base), e.ep(n, true, false)))
		for {
			r, err := c.SayHello(e.ctx, &echo.EchoRequest{})
			if err != nil {
				b.Fatal(err)
			}
			if r.GetPod() == pod {
				break
			}
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		write(base)
		e.until(pod+" gone", func() bool { got, err := e.count(c, 6); return err == nil && got[pod] == 0 })
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)-1)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
