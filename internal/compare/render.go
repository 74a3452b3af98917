package compare

import (
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
)

func fmtBalance(r Result) string {
	if r.Err != "" {
		return "—"
	}
	if math.IsInf(r.MaxMin, 1) {
		return fmt.Sprintf("∞ (%d of %d pods idle)", r.Idle, r.LivePods)
	}
	return fmt.Sprintf("%.2f", r.MaxMin)
}

func fmtNew(r Result, sc string, adds bool) string {
	if !adds || r.Err != "" {
		return "—"
	}
	if r.NewPods == 0 {
		return "no new pod"
	}
	if r.AllNewMS < 0 {
		return fmt.Sprintf("never (%d of %d new pods reached)", r.NewPodsReached, r.NewPods)
	}
	return fmt.Sprintf("%.2f s", r.AllNewMS/1000)
}

func fmtFailed(r Result) string {
	if r.Err != "" {
		return "run failed: " + r.Err
	}
	s := fmt.Sprintf("%d of %d (%.2f%%)", r.Failed, r.Report.Scheduled, r.FailedPct)
	var why []string
	for _, c := range slices.Sorted(maps.Keys(r.Report.Errors)) {
		why = append(why, fmt.Sprintf("%s %d", c, r.Report.Errors[c]))
	}
	if r.Report.Dropped > 0 {
		why = append(why, fmt.Sprintf("dropped %d", r.Report.Dropped))
	}
	if len(why) > 0 {
		s += ": " + strings.Join(why, ", ")
	}
	return s
}

// WriteMarkdown writes one table per scenario.
func (rep *Report) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "Produced by `spread compare` on %s, %s.\n", rep.Machine, rep.Started.UTC().Format("2006-01-02 15:04 MST"))
	for _, s := range rep.Settings {
		fmt.Fprintf(w, "%s.\n", s)
	}
	fmt.Fprintf(w, "Whole run: %.1f s. Absolute figures vary by machine; the shapes do not.\n", rep.WallMS/1000)
	adds := map[string]bool{}
	for _, s := range Scenarios() {
		adds[s.Name] = s.AddsPods
	}
	for _, sc := range rep.Scenarios {
		fmt.Fprintf(w, "\n### %s: %s\n\n", sc, rep.ScenarioInfo[sc])
		fmt.Fprintln(w, "| mode | balance max/min (last quarter) | new pods all get calls after | failed calls | p50 | p99 | attempts per call |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
		for _, m := range rep.Modes {
			r, ok := rep.Get(sc, m)
			if !ok {
				continue
			}
			p50, p99 := "—", "—"
			if r.Report != nil {
				p50, p99 = fmt.Sprintf("%.2f ms", r.Report.Latency.P50MS), fmt.Sprintf("%.2f ms", r.Report.Latency.P99MS)
			}
			apc := "—"
			if r.AttemptsPerCall > 0 {
				apc = fmt.Sprintf("%.3f", r.AttemptsPerCall)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", m, fmtBalance(r), fmtNew(r, sc, adds[sc]), fmtFailed(r), p50, p99, apc)
		}
	}
	if len(rep.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range rep.Notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// palette colours pods in charts, in order of first appearance.
var palette = []string{"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
	"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

const chartW, chartH = 420.0, 120.0

// shareChart draws per-pod share of calls per window as stacked areas (failed calls in grey
// on top, so a window's bar is all calls made in it) and the event as a red line.
func shareChart(r Result) template.HTML {
	lr := r.Report
	if lr == nil || len(lr.Windows) == 0 {
		return ""
	}
	// Pods in order of first call.
	pods := slices.Clone(lr.PodNames())
	slices.SortStableFunc(pods, func(a, b string) int {
		switch {
		case lr.FirstMS[a] < lr.FirstMS[b]:
			return -1
		case lr.FirstMS[a] > lr.FirstMS[b]:
			return 1
		}
		return 0
	})
	n := len(lr.Windows)
	bw := chartW / float64(n)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img"><rect width="100%%" height="100%%" fill="#fafafa"/>`, chartW, chartH+14, chartW, chartH+14)
	for k, w := range lr.Windows {
		total := w.Failed + w.Dropped
		for _, c := range w.Pods {
			total += c
		}
		if total == 0 {
			continue
		}
		y := chartH
		for i, p := range pods {
			c := w.Pods[p]
			if c == 0 {
				continue
			}
			h := chartH * float64(c) / float64(total)
			y -= h
			fmt.Fprintf(&b, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="%s"><title>%s: %d calls</title></rect>`, float64(k)*bw, y, bw+0.3, h, palette[i%len(palette)], p, c)
		}
		if f := w.Failed + w.Dropped; f > 0 {
			h := chartH * float64(f) / float64(total)
			fmt.Fprintf(&b, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f" fill="#333"><title>failed: %d</title></rect>`, float64(k)*bw, y-h, bw+0.3, h, f)
		}
	}
	if r.EventMS >= 0 {
		x := chartW * r.EventMS / (lr.WindowMS * float64(n))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="0" y2="%.0f" stroke="red" stroke-width="1.5"/>`, x, x, chartH)
	}
	fmt.Fprintf(&b, `<text x="2" y="%.0f" font-size="10">0 s</text><text x="%.0f" y="%.0f" font-size="10" text-anchor="end">%.0f s</text></svg>`,
		chartH+12, chartW-2, chartH+12, lr.WindowMS*float64(n)/1000)
	return template.HTML(b.String())
}

// latencyChart draws each mode's p99 (solid) and p50 (dashed) per window, log scale.
func latencyChart(rep *Report, sc string) template.HTML {
	type series struct {
		mode string
		r    Result
	}
	var ss []series
	maxN := 0
	for _, m := range rep.Modes {
		if r, ok := rep.Get(sc, m); ok && r.Report != nil {
			ss = append(ss, series{m, r})
			maxN = max(maxN, len(r.Report.Windows))
		}
	}
	if maxN == 0 {
		return ""
	}
	const w, h = 640.0, 200.0
	lo, hi := math.Log10(0.05), math.Log10(5000.0) // 50 µs to 5 s
	y := func(v float64) float64 {
		v = math.Min(math.Max(v, 0.05), 5000)
		return h - h*(math.Log10(v)-lo)/(hi-lo)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img"><rect width="100%%" height="100%%" fill="#fafafa"/>`, w+150, h+14, w+150, h+14)
	for _, v := range []float64{0.1, 1, 10, 100, 1000} {
		fmt.Fprintf(&b, `<line x1="0" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="2" y="%.1f" font-size="9">%g ms</text>`, w, y(v), y(v), y(v)-2, v)
	}
	for i, s := range ss {
		col := palette[i%len(palette)]
		for _, q := range []struct {
			get  func(int) float64
			dash string
		}{
			{func(k int) float64 { return s.r.Report.Windows[k].P99MS }, ""},
			{func(k int) float64 { return s.r.Report.Windows[k].P50MS }, ` stroke-dasharray="3,3"`},
		} {
			var pts []string
			for k := range s.r.Report.Windows {
				if v := q.get(k); v > 0 {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", w*(float64(k)+0.5)/float64(maxN), y(v)))
				}
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.3"%s points="%s"/>`, col, q.dash, strings.Join(pts, " "))
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" font-size="11" fill="%s">%s</text>`, w+6, 14+14*i, col, template.HTMLEscapeString(s.mode))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"share": shareChart, "latency": latencyChart, "balance": fmtBalance, "failed": fmtFailed,
	"newpods": func(r Result, sc string) string {
		for _, s := range Scenarios() {
			if s.Name == sc {
				return fmtNew(r, sc, s.AddsPods)
			}
		}
		return "—"
	},
	"get":  func(rep *Report, sc, m string) Result { r, _ := rep.Get(sc, m); return r },
	"secs": func(ms float64) string { return fmt.Sprintf("%.1f s", ms/1000) },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>spread compare</title>
<style>body{font-family:system-ui,sans-serif;margin:1.5em;max-width:100em}table{border-collapse:collapse}td,th{padding:.25em .7em;text-align:left;border-bottom:1px solid #eee;vertical-align:top}
.grid{display:flex;flex-wrap:wrap;gap:1em}.cell{font-size:.85em}h2{margin-top:2em}small{color:#555}</style></head><body>
<h1>spread compare</h1>
<p>{{.Machine}}, started {{.Started.UTC.Format "2006-01-02 15:04:05 MST"}}, whole run {{secs .WallMS}}.<br>
{{range .Settings}}{{.}}.<br>{{end}}
Absolute figures vary by machine; every figure and chart on this page comes from this run.</p>
<table><tr><th>mode</th><th>what it is</th></tr>{{range .Modes}}<tr><td><b>{{.}}</b></td><td>{{index $.ModeInfo .}}</td></tr>{{end}}</table>
{{range .Notes}}<p><small>{{.}}</small></p>{{end}}
{{$rep := .}}
{{range $sc := .Scenarios}}
<h2>{{$sc}}: {{index $rep.ScenarioInfo $sc}}</h2>
<table><tr><th>mode</th><th>balance max/min (last quarter)</th><th>new pods all get calls after</th><th>failed calls</th><th>p50</th><th>p99</th></tr>
{{range $m := $rep.Modes}}{{$r := get $rep $sc $m}}<tr><td>{{$m}}</td><td>{{balance $r}}</td><td>{{newpods $r $sc}}</td><td>{{failed $r}}</td>
<td>{{if $r.Report}}{{printf "%.2f" $r.Report.Latency.P50MS}} ms{{end}}</td><td>{{if $r.Report}}{{printf "%.2f" $r.Report.Latency.P99MS}} ms{{end}}</td></tr>{{end}}
</table>
<p><small>Share of calls per pod over time (one colour per pod, failed calls dark, the event in red):</small></p>
<div class="grid">{{range $m := $rep.Modes}}{{$r := get $rep $sc $m}}<div class="cell"><b>{{$m}}</b><br>{{share $r}}</div>{{end}}</div>
<p><small>Latency per window, p99 solid and p50 dashed, log scale:</small></p>
{{latency $rep $sc}}
{{end}}
</body></html>
`))

// WriteHTML writes the self-contained HTML page (inline SVG, no scripts, works offline).
func (rep *Report) WriteHTML(w io.Writer) error { return page.Execute(w, rep) }
