package controlplane_test

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/spread-grpc/spread/controlplane"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServeNeedsServerAndAddress(t *testing.T) {
	if err := controlplane.Serve(context.Background(), controlplane.ServeConfig{Addr: "127.0.0.1:0"}); err == nil {
		t.Error("Serve without a Server succeeded")
	}
	srv, err := controlplane.New(nil, controlplane.StaticServices{})
	if err != nil {
		t.Skipf("New without an endpoint source: %v", err)
	}
	if err := controlplane.Serve(context.Background(), controlplane.ServeConfig{Server: srv}); err == nil {
		t.Error("Serve without Addr or Listener succeeded")
	}
}
