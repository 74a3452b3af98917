package dashboard_test

// Browser tests: headless Chromium (Debian's `chromium`, installed by `make browser-deps`)
// driven with chromedp. Without the browser they skip with a message, unless
// SPREAD_REQUIRE_BROWSER=1 (CI), which makes a missing browser a failure.
//
//	SPREAD_CHROMIUM=/path/to/chromium   another browser binary (default /usr/bin/chromium)
//	SPREAD_ARTIFACTS=dir                where screenshots go (default: $TMPDIR/spread-artifacts)
//	SPREAD_UPDATE_SCREENSHOT=1          also rewrite docs/dashboard.png

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/spread-grpc/spread/internal/backend"
	"github.com/spread-grpc/spread/internal/cluster"
	"github.com/spread-grpc/spread/internal/connect"
	"github.com/spread-grpc/spread/internal/dashboard"
	"github.com/spread-grpc/spread/internal/demo"
	"github.com/spread-grpc/spread/internal/frontend"
	"github.com/spread-grpc/spread/internal/modes"
)

// browser starts a headless Chromium with a fresh profile and returns a tab's context.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := os.Getenv("SPREAD_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(path); err != nil {
		msg := fmt.Sprintf("browser test needs Chromium at %s (%v): run `make browser-deps` (apt-get install chromium) or set SPREAD_CHROMIUM", path, err)
		if os.Getenv("SPREAD_REQUIRE_BROWSER") == "1" {
			t.Fatal(msg + "; SPREAD_REQUIRE_BROWSER=1 makes this a failure")
		}
		t.Skip(msg)
	}
	dir, err := os.MkdirTemp("", "spread-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(1400, 1000),
	)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancel()
		// Chromium's helpers may still write to the profile for a moment after it exits.
		deadline := time.Now().Add(5 * time.Second)
		for os.RemoveAll(dir) != nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	})
	if err := chromedp.Do(tab); err != nil { // start the browser now: a clear error if it cannot
		t.Fatalf("starting %s: %v", path, err)
	}
	return tab
}

// waitFor polls a JavaScript condition in the page until it holds.
// timeout is what the condition takes on a busy machine; the wait allows three times that.
func waitFor(t *testing.T, tab context.Context, what, cond string, timeout time.Duration) {
	t.Helper()
	timeout *= 3
	if _, err := chromedp.Run(tab, chromedp.Poll[chromedp.Void](cond,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout))); err != nil {
		t.Fatalf("waiting for %s (%s): %v\npage state: %s", what, cond, err, pageSummary(tab))
	}
}

func eval[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// click presses the element css selects, once it is visible.
//
// The click is the element's own (HTMLElement.click, the same event and handlers as a mouse
// click), not a mouse event at the element's coordinates: the page re-renders its pod rows
// on every update, and on a busy machine the layout could move between chromedp measuring
// the button and pressing there, so that the press landed beside it and was lost.
func click(t *testing.T, tab context.Context, css string) {
	t.Helper()
	if err := chromedp.Do(tab, chromedp.WaitVisible(chromedp.CSS(css))); err != nil {
		t.Fatalf("click %s: %v", css, err)
	}
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e || e.disabled) return false; e.click(); return true; })()`, css)
	if !eval[bool](t, tab, js) {
		t.Fatalf("click %s: no such enabled element\npage state: %s", css, pageSummary(tab))
	}
}

// podRow is one pod's row in a mode's chart, as the page shows it.
type podRow struct {
	Pod   string `json:"pod"`
	Calls int    `json:"calls"`
	New   bool   `json:"new"`
	State string `json:"state"`
}

const rowsJS = `Object.fromEntries(Array.from(document.querySelectorAll('section.mode')).map(s =>
	[s.dataset.mode, Array.from(s.querySelectorAll('.pod')).map(r => ({
		pod: r.querySelector('.name').textContent, calls: +r.dataset.calls, new: r.dataset.new === '1', state: r.dataset.state}))]))`

func rows(t *testing.T, tab context.Context) map[string][]podRow {
	t.Helper()
	return eval[map[string][]podRow](t, tab, rowsJS)
}

func pageSummary(tab context.Context) string {
	ctx, cancel := context.WithTimeout(tab, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](`({conn: document.getElementById('conn').textContent, message: document.getElementById('message').textContent, modes: `+rowsJS+`})`))
	if err != nil {
		return err.Error()
	}
	return string(v)
}

func active(rs []podRow) []string {
	var out []string
	for _, r := range rs {
		if r.Calls > 0 {
			out = append(out, r.Pod)
		}
	}
	return out
}

// answering is a JS condition: mode's chart shows exactly n pods with calls.
func answering(mode string, n int) string {
	return fmt.Sprintf(`document.querySelector('section.mode[data-mode=%q]')?.dataset.answering === '%d'`, mode, n)
}

// TestBrowserDemo is the scenario: under `spread demo`, start load on the modes from
// the page, see ClusterIP on one pod and headless on five, scale up from the page, and see
// the new pods take calls under the re-resolving modes and not under plain headless.
func TestBrowserDemo(t *testing.T) {
	tab := browser(t)
	d, err := demo.Start(demo.Config{
		Cluster: cluster.Config{Replicas: 5, FirstPodIP: netip.MustParseAddr("127.0.41.1"), PodPort: 0,
			VIP: "127.96.0.41:0", DNSAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0", DNSTTL: time.Second},
		FrontendAddr: "127.0.0.1:0", AdminAddr: "-",
		ModeOptions: modes.Options{DNSRefreshInterval: time.Second},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("demo Stop: %v", err)
		}
	})
	if err := chromedp.Do(tab, chromedp.EmulateViewport(1400, 1000), chromedp.Navigate(d.FrontendURL+"/")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, tab, "the first state with controls", `document.body.dataset.ready === '1' && document.body.dataset.controls === '1'`, 20*time.Second)
	if visible := eval[bool](t, tab, `document.getElementById('controls').offsetParent !== null && document.querySelector('section.mode button.start').offsetParent !== null`); !visible {
		t.Fatal("controls hidden under the demo")
	}
	modes := eval[[]string](t, tab, `Array.from(document.querySelectorAll('section.mode')).map(s => s.dataset.mode)`)
	if want := d.Frontend.Modes(); !slices.Equal(modes, want) {
		t.Fatalf("page shows modes %v, the frontend has %v", modes, want)
	}
	// Modes that follow the cluster and so must reach new pods: whichever of these exist.
	var following []string
	for _, m := range modes {
		if m == "dns-refresh" || m == "kube" || m == "xds" {
			following = append(following, m)
		}
	}
	if len(following) == 0 {
		t.Fatalf("no re-resolving mode among %v", modes)
	}

	// Start a steady load from the page on clusterip, headless and the following modes.
	if err := chromedp.Do(tab, chromedp.SetValue(chromedp.ID("rate"), "100")); err != nil {
		t.Fatal(err)
	}
	for _, m := range append([]string{"clusterip", "headless"}, following...) {
		click(t, tab, fmt.Sprintf(`section.mode[data-mode=%q] button.start`, m))
		waitFor(t, tab, m+" load running", fmt.Sprintf(`document.querySelector('section.mode[data-mode=%q]').dataset.load === '1'`, m), 10*time.Second)
	}

	// One pod vs five.
	cond := answering("clusterip", 1) + " && " + answering("headless", 5)
	for _, m := range following {
		cond += " && " + answering(m, 5)
	}
	waitFor(t, tab, "clusterip on one pod, headless on five", cond, 30*time.Second)
	before := rows(t, tab)
	if n := len(before["clusterip"]); n != 5 {
		t.Errorf("clusterip panel lists %d pods, want the cluster's 5", n)
	}
	original := map[string]bool{}
	for _, r := range before["headless"] {
		original[r.Pod] = true
	}

	// Scale up by two from the page.
	for _, want := range []int{6, 7} {
		click(t, tab, "#scale-up")
		waitFor(t, tab, fmt.Sprintf("%d replicas", want), fmt.Sprintf(`document.getElementById('replicas').textContent === '%d'`, want), 10*time.Second)
	}
	// The new pods are listed at once, marked new (for 30 s after they were created: checked
	// now, before waiting for them to answer, which can take that long on a starved machine).
	originalJSON, err := json.Marshal(original)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, tab, "two new pods listed and marked new", fmt.Sprintf(`(() => {
		const original = %s;
		const rows = Array.from(document.querySelectorAll('section.mode[data-mode="headless"] .pod')).
			filter(r => !original[r.querySelector('.name').textContent]);
		return rows.length === 2 && rows.every(r => r.dataset.new === '1');
	})()`, originalJSON), 10*time.Second)

	cond = "true"
	for _, m := range following {
		cond += " && " + answering(m, 7)
	}
	waitFor(t, tab, "the new pods answering under "+strings.Join(following, ", "), cond, 30*time.Second)

	// The new pods take calls only where the resolver re-reads DNS: plain headless read it
	// once. Watched for two seconds, as it must not happen.
	deadline := time.Now().Add(2 * time.Second)
	for {
		now := rows(t, tab)
		var newPods []string
		for _, r := range now["headless"] {
			if !original[r.Pod] {
				newPods = append(newPods, r.Pod)
			}
		}
		if len(newPods) != 2 {
			t.Fatalf("headless panel lists new pods %v, want 2: %+v", newPods, now["headless"])
		}
		for _, r := range now["headless"] {
			if slices.Contains(newPods, r.Pod) && r.Calls > 0 {
				t.Fatalf("plain headless sent %d calls to new pod %s", r.Calls, r.Pod)
			}
		}
		if got := active(now["headless"]); len(got) != 5 {
			t.Fatalf("headless answering pods %v, want the original 5", got)
		}
		if got := active(now["clusterip"]); len(got) != 1 {
			t.Fatalf("clusterip answering pods %v, want 1", got)
		}
		for _, m := range following {
			for _, r := range now[m] {
				if slices.Contains(newPods, r.Pod) && r.Calls == 0 {
					t.Fatalf("%s: new pod %s has no calls", m, r.Pod)
				}
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	screenshot(t, tab, "dashboard-demo.png", true)

	// The pod controls: freeze and thaw a pod from its row, kill one, rolling restart.
	frozen := eval[string](t, tab, `document.querySelector('#pods tbody tr').dataset.pod`)
	click(t, tab, `#pods tbody tr:first-child button.freeze`)
	waitFor(t, tab, "the frozen badge", `document.querySelectorAll('section.mode .badge.frozen').length === document.querySelectorAll('section.mode').length`, 10*time.Second)
	if got := eval[string](t, tab, `document.querySelector('section.mode .badge.frozen').closest('.pod').dataset.pod`); got != frozen {
		t.Errorf("frozen badge on %s, froze %s", got, frozen)
	}
	click(t, tab, `#pods tbody tr:first-child button.thaw`)
	waitFor(t, tab, "the pod thawed", `document.querySelectorAll('section.mode .badge.frozen').length === 0`, 10*time.Second)
	click(t, tab, "#kill-random")
	waitFor(t, tab, "a killed pod restarting", `document.querySelector('section.mode .pod[data-state="restarting"]') !== null`, 10*time.Second)
	waitFor(t, tab, "the killed pod back", `document.querySelector('section.mode .pod[data-state="restarting"]') === null`, 20*time.Second)
	old := eval[[]string](t, tab, `Array.from(document.querySelectorAll('#pods tbody tr')).map(r => r.dataset.pod)`)
	oldJSON, _ := json.Marshal(old)
	click(t, tab, "#rollout")
	waitFor(t, tab, "the rolling restart to replace every pod", fmt.Sprintf(`(() => {
		const old = new Set(%s);
		const rows = Array.from(document.querySelectorAll('#pods tbody tr'));
		return rows.length === 7 && rows.every(r => !old.has(r.dataset.pod) && r.querySelector('td.state').textContent === 'ready');
	})()`, oldJSON), 60*time.Second)

	// Stop the loads from the page.
	for _, m := range append([]string{"clusterip", "headless"}, following...) {
		click(t, tab, fmt.Sprintf(`section.mode[data-mode=%q] button.stop`, m))
		waitFor(t, tab, m+" load stopped", fmt.Sprintf(`document.querySelector('section.mode[data-mode=%q]').dataset.load === '0'`, m), 10*time.Second)
	}
}

// screenshot saves the page as a test artifact and, when asked, as the README's image.
func screenshot(t *testing.T, tab context.Context, name string, docs bool) {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := os.Getenv("SPREAD_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "spread-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	if docs && os.Getenv("SPREAD_UPDATE_SCREENSHOT") == "1" {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "dashboard.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("docs/dashboard.png updated")
	}
}

// evilPod is a pod name a misbehaving backend might report: markup that would run if the
// page ever put it in as HTML.
const evilPod = `<img src=x onerror="window.pwned='pod'"><script>window.pwned='script'</script>`

// TestBrowserRealFrontendRestart runs a plain frontend (no demo: a "real cluster"): the page
// hides the controls, lists the pods the frontend observes (one reports a name made of
// markup, shown as text), and reconnects by itself when the frontend restarts.
func TestBrowserRealFrontendRestart(t *testing.T) {
	tab := browser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A real backend whose pod name is markup.
	blis, err := net.Listen("tcp", "127.0.42.1:0")
	if err != nil {
		t.Fatal(err)
	}
	be, err := backend.New(backend.Config{Pod: evilPod, Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	bctx, bcancel := context.WithCancel(ctx)
	bdone := make(chan error, 1)
	go func() { bdone <- be.Serve(bctx, blis) }()
	t.Cleanup(func() { bcancel(); <-bdone })

	// The frontend, started twice on the same address.
	addr := "127.0.0.1:0"
	start := func() (*frontend.Frontend, func()) {
		win := dashboard.NewWindow(dashboard.DefaultWindow, nil)
		fe, err := frontend.New(frontend.Config{Name: "fe-real", Modes: []connect.Mode{
			{Name: "headless", Target: "passthrough:///" + blis.Addr().String(), Policy: connect.RoundRobin},
		}}, frontend.WithObserver(win))
		if err != nil {
			t.Fatal(err)
		}
		d := dashboard.New(fe, win)
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		addr = lis.Addr().String()
		srv := &http.Server{Handler: dashboard.Handler(fe, d), ReadHeaderTimeout: 5 * time.Second}
		srv.RegisterOnShutdown(d.EndStreams)
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(lis) }()
		return fe, func() {
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			defer scancel()
			if err := srv.Shutdown(sctx); err != nil {
				t.Errorf("frontend shutdown held up: %v", err)
			}
			if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("serve: %v", err)
			}
			d.Close()
			fe.Close()
		}
	}
	_, stop1 := start()
	if err := chromedp.Do(tab, chromedp.Navigate("http://"+addr+"/")); err != nil {
		stop1()
		t.Fatal(err)
	}
	waitFor(t, tab, "the first state", `document.body.dataset.ready === '1'`, 20*time.Second)
	first := eval[string](t, tab, `document.body.dataset.instance`)
	if eval[bool](t, tab, `['#controls', '#pods-panel', 'section.mode .load', 'section.mode button.start'].some(sel =>
		Array.from(document.querySelectorAll(sel)).some(e => e.offsetParent !== null))`) {
		t.Error("controls shown without a demo cluster")
	}
	httpGet(t, ctx, "http://"+addr+"/call/headless?n=5")
	waitFor(t, tab, "the observed pod", answering("headless", 1), 10*time.Second)
	assertNoMarkup(t, tab)
	if got := rows(t, tab)["headless"]; len(got) != 1 || got[0].Pod != evilPod || got[0].State != "observed" {
		t.Errorf("headless rows %+v, want the observed pod named %q as text", got, evilPod)
	}

	// Restart the frontend on the same address: the page notices and reconnects.
	stop1()
	waitFor(t, tab, "the page to notice the restart", `document.getElementById('conn').dataset.state !== 'live'`, 10*time.Second)
	_, stop2 := start()
	defer stop2()
	waitFor(t, tab, "the page to reconnect to the new frontend",
		fmt.Sprintf(`document.body.dataset.instance !== %q && document.getElementById('conn').dataset.state === 'live'`, first), 30*time.Second)
	httpGet(t, ctx, "http://"+addr+"/call/headless?n=5")
	waitFor(t, tab, "calls after the restart", answering("headless", 1), 10*time.Second)
	screenshot(t, tab, "dashboard-real.png", false)
}

// TestBrowserEscaping feeds markup through every string the page shows (frontend name, pod
// names from the cluster and from calls, an error message) and checks it renders as text.
func TestBrowserEscaping(t *testing.T) {
	tab := browser(t)
	win := dashboard.NewWindow(0, nil)
	fe := evilFrontend{}
	cl := evilCluster{}
	api := http.NewServeMux()
	d := dashboard.New(fe, win, dashboard.WithCluster(cl, api))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", d.ServePage)
	d.Register(mux)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	srv.RegisterOnShutdown(d.EndStreams)
	go srv.Serve(lis)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		d.Close()
	})
	win.ObserveCall("m", evilPod, nil, 0)
	win.ObserveCall("m", "", errors.New(`<b id="bold">boom</b><script>window.pwned='error'</script>`), 0)

	if err := chromedp.Do(tab, chromedp.Navigate("http://"+lis.Addr().String()+"/")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, tab, "the state", `document.body.dataset.ready === '1' && document.querySelectorAll('#pods tbody tr').length === 1`, 20*time.Second)
	assertNoMarkup(t, tab)
	texts := eval[map[string]string](t, tab, `({
		frontend: document.getElementById('frontend').textContent,
		lasterr: document.querySelector('section.mode .lasterr').textContent,
		podcell: document.querySelector('#pods tbody td.name').textContent,
	})`)
	for k, want := range map[string]string{
		"frontend": fe.Name(),
		"lasterr":  `last error: <b id="bold">boom</b><script>window.pwned='error'</script>`,
		"podcell":  cl.PodStates()[0].Name,
	} {
		if texts[k] != want {
			t.Errorf("%s shows %q, want the text %q", k, texts[k], want)
		}
	}
	names := rows(t, tab)["m"]
	if len(names) != 2 || names[0].Pod != cl.PodStates()[0].Name || names[1].Pod != evilPod || names[1].State != "gone" {
		t.Errorf("rows %+v", names)
	}
}

// assertNoMarkup checks that nothing the server sent became an element or ran.
func assertNoMarkup(t *testing.T, tab context.Context) {
	t.Helper()
	got := eval[map[string]any](t, tab, `({
		pwned: window.pwned === undefined ? '' : String(window.pwned),
		imgs: document.querySelectorAll('img').length,
		bold: document.querySelectorAll('#bold, b#bold').length,
		scripts: Array.from(document.scripts).filter(s => !s.src.endsWith('/static/app.js')).length,
		svgOnload: document.querySelectorAll('[onload], [onerror]').length,
	})`)
	for k, v := range got {
		if v != "" && v != float64(0) {
			t.Errorf("markup from the server became live: %s = %v", k, v)
		}
	}
}

type evilFrontend struct{}

func (evilFrontend) Name() string { return `fe<script>window.pwned='name'</script>` }
func (evilFrontend) ModeStates() []dashboard.Mode {
	return []dashboard.Mode{{Name: "m", Description: `<i onmouseover="x">desc</i>`, Target: "dns:///<x>", State: "READY"}}
}
func (evilFrontend) CallOnce(context.Context, string) (string, error) { return "", errors.New("no") }

type evilCluster struct{}

func (evilCluster) PodStates() []dashboard.PodState {
	return []dashboard.PodState{{Name: `<svg onload="window.pwned='cluster'"></svg>`, Phase: "ready", Created: time.Now(), Delay: `<u>1s</u>`}}
}
func (evilCluster) Replicas() int { return 1 }

func httpGet(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.Contains(string(b), `"failed": 5`) {
		t.Fatalf("GET %s: %s %s", url, resp.Status, b)
	}
}
