package frontend

import (
	"net/url"
	"testing"
)

// FuzzParseCallQuery: any query either is refused or gives parameters within the limits, and
// a refused one never falls back to defaults silently.
func FuzzParseCallQuery(f *testing.F) {
	for _, s := range []string{"", "n=3", "n=3&stream=true", "n=3;stream=true", "interval=288230376151711744",
		"interval=1.5s", "interval=-1", "n=1000&interval=10ms&fresh=1", "n=%zz", "n=1&n=2", "stream=maybe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := ParseCallQuery(raw)
		if err != nil {
			return
		}
		if p.N < 1 || p.N > MaxCalls || p.Interval < 0 || p.Interval > MaxInterval {
			t.Fatalf("%q accepted as %+v, outside the limits", raw, p)
		}
		q, qerr := url.ParseQuery(raw)
		if qerr != nil {
			t.Fatalf("%q accepted although it does not parse: %v", raw, qerr)
		}
		for k, vs := range q {
			if _, ok := allowedParams[k]; !ok || len(vs) != 1 {
				t.Fatalf("%q accepted with parameter %q given %d times", raw, k, len(vs))
			}
		}
	})
}
