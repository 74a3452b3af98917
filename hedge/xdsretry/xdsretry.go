// Package xdsretry maps an Envoy route's retry_policy and hedge_policy onto a hedge.Policy,
// for xDS clients whose control plane describes retries per route. grpc-go applies only
// part of retry_policy itself (gRFC A44: retry_on with gRPC status names, num_retries,
// retry_back_off), as retries of a failed attempt; it ignores per_try_timeout and
// hedge_policy, which the hedge interceptors implement.
//
// A route that asks for retries declares its methods safe to run again, so the policy is
// Idempotent. Give the result to hedge.WithPolicy for the route's methods. grpc-go still
// applies the route's own retries inside each of the interceptor's attempts: keep
// num_retries small on such routes, or leave RetryableCodes to one of the two.
package xdsretry

import (
	"errors"
	"fmt"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/grpc/codes"

	"github.com/spread-grpc/spread/hedge"
)

// grpcRetryOn are the retry_on conditions grpc-go honours (A44), by gRPC status.
var grpcRetryOn = map[string]codes.Code{
	"cancelled":          codes.Canceled,
	"deadline-exceeded":  codes.DeadlineExceeded,
	"internal":           codes.Internal,
	"resource-exhausted": codes.ResourceExhausted,
	"unavailable":        codes.Unavailable,
}

// maxAttempts is hedge's (and gRFC A6's) cap on attempts per call.
const maxAttempts = 5

// Policy maps rp and hp (either may be nil) onto a hedge.Policy:
//
//   - retry_on: the gRPC names grpc-go honours → RetryableCodes (other conditions, such as
//     5xx, are ignored, as grpc-go ignores them; none at all is an error);
//   - num_retries (default 1) → MaxAttempts = num_retries + 1, at most 5;
//   - per_try_timeout → PerAttemptTimeout;
//   - hedge_policy.hedge_on_per_try_timeout → the per-try timeout becomes the HedgeDelay
//     instead: the slow attempt is kept and another sent, as Envoy does;
//   - retry_back_off is not mapped: the interceptor retries at once, on another pod.
//
// hedge_policy.initial_requests above 1 and additional_request_chance have no counterpart
// and are refused.
func Policy(rp *routev3.RetryPolicy, hp *routev3.HedgePolicy) (hedge.Policy, error) {
	if rp == nil {
		return hedge.Policy{}, errors.New("xdsretry: no retry_policy")
	}
	p := hedge.Policy{Idempotent: true, MaxAttempts: 2}
	seen := map[codes.Code]bool{}
	for _, s := range strings.Split(rp.GetRetryOn(), ",") {
		if c, ok := grpcRetryOn[strings.ToLower(strings.TrimSpace(s))]; ok && !seen[c] {
			seen[c] = true
			p.RetryableCodes = append(p.RetryableCodes, c)
		}
	}
	if len(p.RetryableCodes) == 0 {
		return hedge.Policy{}, fmt.Errorf("xdsretry: retry_on %q names no gRPC status grpc-go retries on (cancelled, deadline-exceeded, internal, resource-exhausted, unavailable)", rp.GetRetryOn())
	}
	if n := rp.GetNumRetries(); n != nil {
		if n.GetValue() < 1 {
			return hedge.Policy{}, fmt.Errorf("xdsretry: num_retries %d: want at least 1", n.GetValue())
		}
		p.MaxAttempts = int(min(n.GetValue()+1, maxAttempts))
	}
	if d := rp.GetPerTryTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() <= 0 {
			return hedge.Policy{}, fmt.Errorf("xdsretry: per_try_timeout %v: want a positive duration", d)
		}
		p.PerAttemptTimeout = d.AsDuration()
	}
	if hp != nil {
		if n := hp.GetInitialRequests(); n != nil && n.GetValue() > 1 {
			return hedge.Policy{}, fmt.Errorf("xdsretry: hedge_policy.initial_requests %d: hedge sends one first attempt", n.GetValue())
		}
		if hp.GetAdditionalRequestChance().GetNumerator() > 0 {
			return hedge.Policy{}, errors.New("xdsretry: hedge_policy.additional_request_chance has no counterpart in hedge")
		}
		if hp.GetHedgeOnPerTryTimeout() {
			if p.PerAttemptTimeout == 0 {
				return hedge.Policy{}, errors.New("xdsretry: hedge_on_per_try_timeout without a per_try_timeout")
			}
			p.HedgeDelay, p.PerAttemptTimeout = p.PerAttemptTimeout, 0
		}
	}
	return p, p.Validate()
}
