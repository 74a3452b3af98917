package frontend

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServiceConfig(t *testing.T) {
	for _, tc := range []struct {
		m    Mode
		want string
	}{
		{Mode{}, ""},
		{Mode{Policy: RoundRobin}, `{"loadBalancingConfig":[{"round_robin":{}}]}`},
		{Mode{Policy: PickFirst, HealthCheck: true}, `{"loadBalancingConfig":[{"pick_first":{}}],"healthCheckConfig":{"serviceName":""}}`},
	} {
		if got := tc.m.ServiceConfig(); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.m, got, tc.want)
		}
	}
}

func TestParseCallParams(t *testing.T) {
	for _, tc := range []struct {
		q       string
		want    CallParams
		wantErr string
	}{
		{q: "", want: CallParams{N: 10}},
		{q: "n=1000&stream=true&interval=5&fresh=1", want: CallParams{N: 1000, Stream: true, Interval: 5 * time.Millisecond, Fresh: true}},
		{q: "interval=1.5s", want: CallParams{N: 10, Interval: 1500 * time.Millisecond}},
		{q: "interval=10s", want: CallParams{N: 10, Interval: 10 * time.Second}},
		{q: "n=-3", wantErr: "1 to 1000"},
		{q: "n=", wantErr: "whole number"},
		{q: "interval=10001", wantErr: "0 to 10s"},
		{q: "stream=", wantErr: "true or false"},
		{q: "x=1", wantErr: "unknown query parameter"},
	} {
		q, _ := url.ParseQuery(tc.q)
		got, err := ParseCallParams(q)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.q, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.q, got, err, tc.want)
		}
	}
}

func TestNewRejectsBadModes(t *testing.T) {
	for _, tc := range []struct {
		modes []Mode
		want  string
	}{
		{nil, "no modes"},
		{[]Mode{{Name: "Bad Name", Target: "dns:///x:1"}}, "lowercase"},
		{[]Mode{{Name: "a", Target: "dns:///x:1"}, {Name: "a", Target: "dns:///y:1"}}, "given twice"},
		{[]Mode{{Name: "a", Target: "dns:///x:1", Policy: "random"}}, "policy"},
		{[]Mode{{Name: "a", Target: "nosuchscheme:///x:1"}}, "target"},
	} {
		f, err := New(Config{Modes: tc.modes})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want error containing %q", tc.modes, err, tc.want)
		}
		if f != nil {
			f.Close()
		}
	}
}

func TestWantsHTML(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                                 false,
		"application/json":                 false,
		"text/html,application/xhtml+xml":  true,
		"application/json;q=1, text/html":  false,
		"*/*":                              false,
		"text/html;q=0.9,application/json": true,
	} {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Accept", accept)
		if got := wantsHTML(r); got != want {
			t.Errorf("Accept %q: wantsHTML = %v", accept, got)
		}
	}
}
