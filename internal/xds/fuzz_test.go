package xds

import (
	"encoding/json"
	"testing"
)

// FuzzParseServiceConfig: any set of annotations is refused with a ConfigError or gives a
// config, and never panics.
func FuzzParseServiceConfig(f *testing.F) {
	f.Add(AnnotationLBPolicy, "round_robin", AnnotationOutlierDetection, OutlierFailurePercentage)
	f.Add(AnnotationLBPolicy, "ring_hash", AnnotationHashHeader, "x-user")
	f.Add(AnnotationLBPolicy, "least_request", AnnotationChoiceCount, "99999999999999999999")
	f.Add(AnnotationLBPolicy, "weighted_round_robin", AnnotationWRRBlackout, "-1s")
	f.Add(AnnotationCallTimeout, "500ms", AnnotationCallTimeoutMethods, "echo.EchoServer/SayHello")
	f.Add(AnnotationODInterval, "9223372036854775807ns", AnnotationODThreshold, "101")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		cfg, err := ParseServiceConfig(map[string]string{k1: v1, k2: v2})
		if err != nil {
			return
		}
		if _, err := json.Marshal(cfg); err != nil {
			t.Fatalf("config %+v does not encode: %v", cfg, err)
		}
	})
}

// FuzzBootstrap: the bootstrap flags give an error or JSON naming the server given.
func FuzzBootstrap(f *testing.F) {
	for _, s := range []string{"spread-xds.spread-system.svc:18000", "127.0.0.1:18000", "[::1]:18000", "host:99999", "a b:1", ":18000", "nohost", "host:0", "\x80:1", "dns:///h\xffx:1"} {
		f.Add(s, "node", "zone-a", "")
	}
	f.Add("x:1", "", "", "/ca.pem")
	f.Fuzz(func(t *testing.T, server, node, zone, ca string) {
		b, err := Bootstrap(BootstrapConfig{ServerURI: server, NodeID: node, Zone: zone, CAFile: ca})
		if err != nil {
			return
		}
		var got struct {
			XDSServers []struct {
				ServerURI string `json:"server_uri"`
			} `json:"xds_servers"`
		}
		if err := json.Unmarshal(b, &got); err != nil || len(got.XDSServers) != 1 || got.XDSServers[0].ServerURI != server {
			t.Fatalf("server %q: bootstrap %s (%v)", server, b, err)
		}
	})
}
