package kubernetes

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sercand/kuberesolver/v6"
	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/endpointslice"
	"github.com/spread-grpc/spread/internal/kubetest"
)

// BenchmarkDiscoveryLatency measures, on a real kube-apiserver, the time from an
// EndpointSlice write (the start of the Update request) to the first call landing on the
// backend it added, for this resolver and for sercand/kuberesolver/v6, with both clients
// calling all along and watching the same Service in the same run. Each iteration is one
// trial: it adds a new pod and removes the previous trial's. It reports p50/p99 per resolver
// and the API-server watches each opens per client connection. Run with ≥ 50 trials:
//
//	SPREAD_KUBE_ASSETS=$PWD/.cache/kube/v1.37.2 go test ./resolver/kubernetes \
//	    -run '^$' -bench DiscoveryLatency -benchtime 60x
func BenchmarkDiscoveryLatency(b *testing.B) {
	c := kubetest.Start(b)
	admin, err := k8s.NewForConfig(c.RESTConfig())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	f := newService(ctx, b, c, admin, "bench")
	base := f.eps(1, 2)
	f.apply(ctx, "be-a", base)

	ours := newBuilder(b, WithRESTConfig(c.RESTConfig()))
	// The same resolver without client-side health checking, which costs one health RPC
	// round trip before a new subchannel takes calls (kuberesolver has none).
	const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}` // kuberesolver sets no service config
	oursNoHealth := newBuilder(b, WithRESTConfig(c.RESTConfig()), WithServiceConfig(roundRobin))
	kr := kuberesolver.NewBuilder(newKubeResolverClient(b, c.RESTConfig()), "kuberesolver")
	krTarget := "kuberesolver://" + f.ns + "/" + f.name + ":grpc"
	clients := map[string]echo.EchoServerClient{
		"spread":          f.dial(ours),
		"spread-nohealth": f.dial(oursNoHealth),
		"kuberesolver":    f.dialTarget(krTarget, kr, grpc.WithDefaultServiceConfig(roundRobin)),
	}
	names := []string{"spread", "spread-nohealth", "kuberesolver"}
	for _, name := range names {
		awaitServing(ctx, b, clients[name], 1, 2)
	}

	// Watches per client connection: open 4 more connections per resolver (ours on one
	// Builder, as an application sharing it would) and count the API server's watchers.
	w0 := endpointSliceWatchers(ctx, b, admin) // 2 spread Builders + 1 kuberesolver connection
	for i := range 4 {
		target := f.target()
		if i%2 == 1 {
			target = "kubernetes:///" + f.name + "." + f.ns + ":" + strconv.Itoa(grpcPortNumber)
		}
		awaitServing(ctx, b, f.dialTarget(target, ours), 1, 2)
	}
	w1 := endpointSliceWatchers(ctx, b, admin)
	for range 4 {
		awaitServing(ctx, b, f.dialTarget(krTarget, kr, grpc.WithDefaultServiceConfig(roundRobin)), 1, 2)
	}
	w2 := endpointSliceWatchers(ctx, b, admin)
	b.Logf("API-server EndpointSlice watchers: %v with one connection each, %v after 4 more spread connections, %v after 4 more kuberesolver connections", w0, w1, w2)
	b.ReportMetric((w1-w0)/4, "spread-watches/extra-conn")
	b.ReportMetric((w2-w1)/4, "kuberesolver-watches/extra-conn")

	// Both clients call all along, each with its name in the request.
	callCtx, stopCalls := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	callErrs := map[string]int{}
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(200 * time.Microsecond)
			defer tick.Stop()
			for callCtx.Err() == nil {
				if _, err := clients[name].SayHello(callCtx, &echo.EchoRequest{Name: name}); err != nil && callCtx.Err() == nil {
					errMu.Lock()
					callErrs[name]++
					errMu.Unlock()
				}
				select {
				case <-tick.C:
				case <-callCtx.Done():
				}
			}
		}()
	}
	defer func() { stopCalls(); wg.Wait() }()

	slice, err := admin.DiscoveryV1().EndpointSlices(f.ns).Get(ctx, "be-a", metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	lat := map[string][]time.Duration{}
	b.ResetTimer()
	for i := range b.N {
		idx := 3 + i
		nb := f.pod(idx)
		next := slice.DeepCopy()
		next.Endpoints = append(slices.Clone(base), ep(idx, ready))
		start := time.Now()
		next.Annotations[endpointslice.TriggerTimeAnnotation] = start.UTC().Format(time.RFC3339Nano)
		if slice, err = admin.DiscoveryV1().EndpointSlices(f.ns).Update(ctx, next, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		deadline := time.After(30 * time.Second)
		for _, name := range names {
			for {
				if first, ok := nb.FirstCall(name); ok {
					lat[name] = append(lat[name], first.Sub(start))
					break
				}
				select {
				case <-deadline:
					b.Fatalf("trial %d: %s never called the new pod", i, name)
				case <-time.After(100 * time.Microsecond): // poll; the arrival time is taken by the backend
				}
			}
		}
	}
	b.StopTimer()
	for _, name := range names {
		p50, p99 := percentile(lat[name], 50), percentile(lat[name], 99)
		b.ReportMetric(float64(p50.Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, name+"-p99-ms")
		b.Logf("%s: %d trials, p50 %v, p99 %v, max %v, failed calls %d", name, len(lat[name]), p50, p99, percentile(lat[name], 100), callErrs[name])
	}
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100 // nearest rank
	return s[max(min(i, len(s))-1, 0)]
}

// endpointSliceWatchers reads the API server's open namespaced EndpointSlice watches from
// apiserver_longrunning_requests{resource="endpointslices",scope="namespace"}: client-go's
// watches show as verb="WATCH", kuberesolver's legacy /watch/ path as a long-running
// verb="LIST" (the API server's own cluster-scoped watch is left out).
func endpointSliceWatchers(ctx context.Context, tb testing.TB, admin k8s.Interface) float64 {
	tb.Helper()
	raw, err := admin.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_longrunning_requests{") ||
			!strings.Contains(line, `resource="endpointslices"`) || !strings.Contains(line, `scope="namespace"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			tb.Fatalf("parse %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// kubeResolverClient implements kuberesolver.K8sClient with a client-go transport, so that
// kuberesolver reaches the test API server with the same credentials as ours.
type kubeResolverClient struct {
	host string
	hc   *http.Client
}

func newKubeResolverClient(tb testing.TB, cfg *rest.Config) *kubeResolverClient {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(hc.CloseIdleConnections)
	return &kubeResolverClient{host: cfg.Host, hc: hc}
}

func (k *kubeResolverClient) Do(req *http.Request) (*http.Response, error) { return k.hc.Do(req) }
func (k *kubeResolverClient) Host() string                                 { return k.host }
func (k *kubeResolverClient) GetRequest(url string) (*http.Request, error) {
	if !strings.HasPrefix(url, k.host) {
		url = fmt.Sprintf("%s/%s", k.host, url)
	}
	return http.NewRequest(http.MethodGet, url, nil)
}

var _ kuberesolver.K8sClient = (*kubeResolverClient)(nil)
