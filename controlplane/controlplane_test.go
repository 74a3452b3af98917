package controlplane_test

import (
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/spread-grpc/spread/controlplane"
	"github.com/spread-grpc/spread/endpoint/endpointtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServeNeedsServerAndAddress(t *testing.T) {
	if err := controlplane.Serve(context.Background(), controlplane.ServeConfig{Addr: "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "no Server") {
		t.Errorf("Serve without a Server = %v, want an error saying there is no Server", err)
	}
	// A valid Server: the error must be about the missing address, not about the Server.
	var eps endpointtest.Fake
	srv, err := controlplane.New(&eps, controlplane.StaticServices{})
	if err != nil {
		t.Fatal(err)
	}
	if err := controlplane.Serve(context.Background(), controlplane.ServeConfig{Server: srv}); err == nil || !strings.Contains(err.Error(), "no Addr or Listener") {
		t.Errorf("Serve without Addr or Listener = %v, want an error saying there is no Addr or Listener", err)
	}
}
