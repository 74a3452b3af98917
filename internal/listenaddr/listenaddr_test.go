package listenaddr

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		allowOff bool
		want     string // "" accepts
	}{
		{":8080", false, ""},
		{"127.0.0.1:0", false, ""},
		{"[::1]:9090", false, ""},
		{"localhost:50051", false, ""},
		{"-", true, ""},
		{"-", false, "want host:port"},
		{"8080", false, "want host:port"},
		{":70000", false, `port "70000": want 0 to 65535`},
		{"bad host!:80", false, `host "bad host!" is neither`},
	} {
		err := Check("addr", tc.addr, tc.allowOff)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Check(%q, %v) = %v, want nil", tc.addr, tc.allowOff, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "--addr ")):
			t.Errorf("Check(%q, %v) = %v, want --addr ... %s", tc.addr, tc.allowOff, err, tc.want)
		}
	}
}
