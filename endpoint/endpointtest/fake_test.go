package endpointtest

import (
	"errors"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/spread-grpc/spread/endpoint"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFakeConformance(t *testing.T) {
	key := endpoint.Key{Namespace: "ns", Service: "be", Port: "grpc"}
	refused := endpoint.Key{Namespace: "ns", Service: "secret", Port: "grpc"}
	RunConformance(t, func(t *testing.T) Harness {
		var f Fake
		t.Cleanup(f.Close)
		one := endpoint.Endpoint{Address: "192.0.2.1", Port: 8080, Ready: true, Serving: true}
		f.Publish(key, one)
		f.Refuse(refused, errors.New("forbidden"))
		initial, _ := f.Publisher(key).Current()
		return Harness{
			Source:  &f,
			Key:     key,
			Initial: initial,
			Change: func(t *testing.T) func(endpoint.Set) bool {
				two := endpoint.Endpoint{Address: "192.0.2.2", Port: 8080, Ready: true, Serving: true}
				f.Publish(key, one, two)
				return func(s endpoint.Set) bool {
					return slices.Equal(s.HostPorts(), []string{"192.0.2.1:8080", "192.0.2.2:8080"})
				}
			},
			Empty:   func(t *testing.T) { f.Publish(key) },
			Refused: &refused,
			Close:   f.Close,
		}
	})
}
