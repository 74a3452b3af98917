package compare

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spread-grpc/spread/internal/demo"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func contenders(t *testing.T, names ...string) []Contender {
	t.Helper()
	var cs []Contender
	for _, n := range names {
		c, err := RegistryContender(n)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	return cs
}

func scenarios(t *testing.T, names ...string) []Scenario {
	t.Helper()
	var out []Scenario
	for _, n := range names {
		for _, s := range Scenarios() {
			if s.Name == n {
				out = append(out, s)
			}
		}
	}
	if len(out) != len(names) {
		t.Fatalf("scenarios %v: not all found", names)
	}
	return out
}

func get(t *testing.T, rep *Report, sc, mode string) Result {
	t.Helper()
	r, ok := rep.Get(sc, mode)
	if !ok {
		t.Fatalf("no result for %s/%s", sc, mode)
	}
	if r.Err != "" {
		t.Fatalf("%s/%s: run failed: %s", sc, mode, r.Err)
	}
	return r
}

// The behaviour the report claims, scenario by scenario, on real clusters with real gRPC.
func TestScenarioClaims(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the cluster scenarios")
	}
	const refresh = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{
		Contenders: contenders(t, "clusterip", "headless", "dns-refresh"),
		Scenarios:  scenarios(t, "steady", "scale-up", "rollout", "streams-scale-up"),
		Rate:       100, Duration: 6 * time.Second, FirstNet: 150,
		ModeOptions: demo.ModeOptions{DNSRefreshInterval: refresh},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// ClusterIP: one connection through the VIP, every call on one pod.
	if r := get(t, rep, "steady", "clusterip"); len(r.Report.Pods) != 1 || r.Report.OK != r.Report.Scheduled {
		t.Errorf("clusterip steady: pods %v, %d of %d ok; want every call on one pod", r.Report.Pods, r.Report.OK, r.Report.Scheduled)
	}
	if r := get(t, rep, "steady", "headless"); len(r.Report.Pods) != 5 || r.MaxMin > 1.5 {
		t.Errorf("headless steady: pods %v, balance %v; want 5 pods evenly", r.Report.Pods, r.MaxMin)
	}
	// Plain headless never reaches pods added later (within the run: 4.5 s after the scale-up).
	if r := get(t, rep, "scale-up", "headless"); r.NewPods != 3 || r.NewPodsReached != 0 {
		t.Errorf("headless scale-up: %d of %d new pods reached, want 0 of 3", r.NewPodsReached, r.NewPods)
	}
	// dns-refresh reaches every new pod within its interval (plus one more for a lookup that
	// was already under way, and the calls' spacing).
	if r := get(t, rep, "scale-up", "dns-refresh"); r.NewPodsReached != 3 || r.AllNewMS < 0 || r.AllNewMS > float64(2*refresh/time.Millisecond)+100 {
		t.Errorf("dns-refresh scale-up: %d of %d new pods reached, the last after %.0f ms; want all within %v",
			r.NewPodsReached, r.NewPods, r.AllNewMS, refresh)
	}
	// A rolling restart under dns-refresh fails no call.
	if r := get(t, rep, "rollout", "dns-refresh"); r.Failed != 0 || r.NewPodsReached != r.NewPods {
		t.Errorf("dns-refresh rollout: %d failed, %d of %d new pods reached; want 0 failed, all reached", r.Failed, r.NewPodsReached, r.NewPods)
	}
	// Long-lived streams follow a scale-up when the pods bound their age and the resolver
	// follows DNS; with plain headless they resume, but only onto the old pods.
	if r := get(t, rep, "streams-scale-up", "dns-refresh"); r.NewPodsReached != 3 || r.Failed != 0 {
		t.Errorf("dns-refresh streams: %d of %d new pods reached, %d failed (%v); want all, none failed", r.NewPodsReached, r.NewPods, r.Failed, r.Report.Errors)
	}
	if r := get(t, rep, "streams-scale-up", "headless"); r.NewPodsReached != 0 || r.Report.OK == 0 {
		t.Errorf("headless streams: %d new pods reached, %d messages; want 0 new pods, messages flowing", r.NewPodsReached, r.Report.OK)
	}
	var md, page bytes.Buffer
	rep.WriteMarkdown(&md)
	if err := rep.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### scale-up", "| dns-refresh |", "never (0 of 3 new pods reached)"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md.String())
		}
	}
	if h := page.String(); !strings.Contains(h, "<svg") || strings.Contains(h, "http://") || strings.Contains(h, "https://") || strings.Contains(h, "<script") {
		t.Error("HTML page: want inline SVG charts, no external resources, no scripts")
	}
}

// A frozen pod (TCP open, never answers) costs the tuned modes under 1% of their calls: the
// call deadline fails them fast and outlier detection ejects the pod, whether the client's
// service config sets them (dns-refresh-tuned, kube-tuned) or the xDS control plane sends them (xds-tuned).
func TestFrozenPodTuned(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster scenario")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	frozen := scenarios(t, "frozen-pod")[0]
	frozen.Replicas = 10
	rep, err := Run(ctx, Config{
		Contenders: contenders(t, "dns-refresh-tuned", "kube-tuned", "xds-tuned", "dns-refresh"),
		Scenarios:  []Scenario{frozen}, Rate: 100, Duration: 20 * time.Second, EventAt: 0.1, FirstNet: 170,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	plain := get(t, rep, "frozen-pod", "dns-refresh")
	// The client's service config sets them (dns-refresh-tuned, kube-tuned) or the control plane
	// sends them (xds-tuned): the same outcome.
	for _, mode := range []string{"dns-refresh-tuned", "kube-tuned", "xds-tuned"} {
		tuned := get(t, rep, "frozen-pod", mode)
		t.Logf("frozen pod of 10: %s %d of %d failed (%.2f%%), untuned dns-refresh %d (%.2f%%)",
			mode, tuned.Failed, tuned.Report.Scheduled, tuned.FailedPct, plain.Failed, plain.FailedPct)
		if tuned.FailedPct >= 1 {
			t.Errorf("%s: %d of %d calls failed (%.2f%%), want under 1%%", mode, tuned.Failed, tuned.Report.Scheduled, tuned.FailedPct)
		}
	}
	if plain.FailedPct < 5 {
		t.Errorf("untuned: %.2f%% failed; the frozen pod should cost it about a tenth of its calls", plain.FailedPct)
	}
}

func TestConfigValidate(t *testing.T) {
	cs := contenders(t, "headless")
	sc := scenarios(t, "steady")
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Scenarios: sc, Rate: 1, Duration: time.Second}, "no modes"},
		{Config{Contenders: cs, Rate: 1, Duration: time.Second}, "no scenarios"},
		{Config{Contenders: cs, Scenarios: sc, Rate: -1, Duration: time.Second}, "rate"},
		{Config{Contenders: cs, Scenarios: sc, Rate: 1}, "duration"},
		{Config{Contenders: cs, Scenarios: sc, Rate: 1, Duration: time.Second, EventAt: 1.5}, "event at"},
		{Config{Contenders: append(cs, cs...), Scenarios: sc, Rate: 1, Duration: time.Second}, "twice"},
		{Config{Contenders: cs, Scenarios: sc, Rate: 1, Duration: time.Second, FirstNet: 255}, "do not fit"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate: %v, want an error with %q", err, tc.want)
		}
	}
	if _, err := RegistryContender("nope"); err == nil {
		t.Error("unknown mode: no error")
	}
}

// The L7 proxy peer, where nginx is installed: it balances per call and follows a scale-up.
func TestNginxPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster scenario")
	}
	ng, ok := NginxContender()
	if !ok {
		t.Skip("nginx not installed (apt-get install nginx-light)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := Run(ctx, Config{Contenders: []Contender{ng}, Scenarios: scenarios(t, "scale-up"), Rate: 100, Duration: 4 * time.Second, FirstNet: 180}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := get(t, rep, "scale-up", NginxName); r.NewPodsReached != 3 || r.Failed != 0 {
		t.Errorf("nginx scale-up: %d of %d new pods reached, %d failed; want all 3, none failed", r.NewPodsReached, r.NewPods, r.Failed)
	}
}
