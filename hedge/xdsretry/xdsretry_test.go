package xdsretry_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/spread-grpc/spread/hedge"
	"github.com/spread-grpc/spread/hedge/xdsretry"
)

func TestPolicy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rp      *routev3.RetryPolicy
		hp      *routev3.HedgePolicy
		want    hedge.Policy
		wantErr string
	}{
		{name: "defaults", rp: &routev3.RetryPolicy{RetryOn: "unavailable"},
			want: hedge.Policy{Idempotent: true, MaxAttempts: 2, RetryableCodes: []codes.Code{codes.Unavailable}}},
		{name: "codes, retries, per-try timeout", rp: &routev3.RetryPolicy{RetryOn: "5xx, Unavailable,cancelled,unavailable,resource-exhausted",
			NumRetries: wrapperspb.UInt32(9), PerTryTimeout: durationpb.New(200 * time.Millisecond)},
			want: hedge.Policy{Idempotent: true, MaxAttempts: 5, PerAttemptTimeout: 200 * time.Millisecond,
				RetryableCodes: []codes.Code{codes.Unavailable, codes.Canceled, codes.ResourceExhausted}}},
		{name: "hedge on per-try timeout", rp: &routev3.RetryPolicy{RetryOn: "deadline-exceeded", NumRetries: wrapperspb.UInt32(1),
			PerTryTimeout: durationpb.New(50 * time.Millisecond)}, hp: &routev3.HedgePolicy{HedgeOnPerTryTimeout: true},
			want: hedge.Policy{Idempotent: true, MaxAttempts: 2, HedgeDelay: 50 * time.Millisecond, RetryableCodes: []codes.Code{codes.DeadlineExceeded}}},
		{name: "nil", wantErr: "no retry_policy"},
		{name: "no gRPC condition", rp: &routev3.RetryPolicy{RetryOn: "5xx,reset"}, wantErr: "names no gRPC status"},
		{name: "zero retries", rp: &routev3.RetryPolicy{RetryOn: "unavailable", NumRetries: wrapperspb.UInt32(0)}, wantErr: "num_retries 0"},
		{name: "negative per-try", rp: &routev3.RetryPolicy{RetryOn: "unavailable", PerTryTimeout: durationpb.New(-time.Second)}, wantErr: "per_try_timeout"},
		{name: "initial requests", rp: &routev3.RetryPolicy{RetryOn: "unavailable"}, hp: &routev3.HedgePolicy{InitialRequests: wrapperspb.UInt32(2)}, wantErr: "initial_requests 2"},
		{name: "chance", rp: &routev3.RetryPolicy{RetryOn: "unavailable"},
			hp: &routev3.HedgePolicy{AdditionalRequestChance: &typev3.FractionalPercent{Numerator: 10}}, wantErr: "additional_request_chance"},
		{name: "hedge without per-try", rp: &routev3.RetryPolicy{RetryOn: "unavailable"}, hp: &routev3.HedgePolicy{HedgeOnPerTryTimeout: true}, wantErr: "without a per_try_timeout"},
	} {
		got, err := xdsretry.Policy(tc.rp, tc.hp)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !reflect.DeepEqual(got, tc.want):
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
