package connect

import "testing"

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
