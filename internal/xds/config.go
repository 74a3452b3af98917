package xds

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Annotations read from a Service. Unknown keys under AnnotationPrefix are errors, so that a
// typo does not silently fall back to a default.
const (
	AnnotationPrefix = "spread.dev/"
	// AnnotationLBPolicy chooses the load-balancing policy: round_robin (default),
	// least_request, ring_hash, weighted_round_robin or pick_first.
	AnnotationLBPolicy = AnnotationPrefix + "lb-policy"
	// AnnotationHashHeader names the request header ring_hash hashes on (required for
	// ring_hash, lower case, not a binary "-bin" header).
	AnnotationHashHeader = AnnotationPrefix + "hash-header"
	// AnnotationChoiceCount is least_request's number of random choices (≥ 2, default 2).
	AnnotationChoiceCount = AnnotationPrefix + "least-request-choice-count"
	// AnnotationWRRBlackout is weighted_round_robin's blackout period (Go duration,
	// default 10s): how long after a backend's first load report its weight is ignored.
	AnnotationWRRBlackout = AnnotationPrefix + "wrr-blackout-period"
	// AnnotationWRRUpdate is weighted_round_robin's weight update period (default 1s).
	AnnotationWRRUpdate = AnnotationPrefix + "wrr-weight-update-period"
	// AnnotationWRRExpiration is weighted_round_robin's weight expiration period (default 3m).
	AnnotationWRRExpiration = AnnotationPrefix + "wrr-weight-expiration-period"
	// AnnotationWRROOB switches weighted_round_robin from per-call (trailer) load reports to
	// out-of-band ORCA streams ("true"/"false", default false).
	AnnotationWRROOB = AnnotationPrefix + "wrr-oob-reporting"
	// AnnotationXDS opts a Service in to being served by the Kubernetes service source
	// ("true"); a Service carrying AnnotationLBPolicy is opted in too.
	AnnotationXDS = AnnotationPrefix + "xds"
)

// LBPolicy is a load-balancing policy grpc-go's xDS client accepts in a Cluster's
// load_balancing_policy field.
type LBPolicy string

// The supported policies.
const (
	RoundRobin         LBPolicy = "round_robin"
	LeastRequest       LBPolicy = "least_request"
	RingHash           LBPolicy = "ring_hash"
	WeightedRoundRobin LBPolicy = "weighted_round_robin"
	PickFirst          LBPolicy = "pick_first"
)

var policies = []LBPolicy{RoundRobin, LeastRequest, RingHash, WeightedRoundRobin, PickFirst}

// ServiceConfig is the per-Service configuration parsed from annotations. The zero value
// is not valid; use ParseServiceConfig or DefaultServiceConfig.
type ServiceConfig struct {
	Policy      LBPolicy
	HashHeader  string        // ring_hash only
	ChoiceCount uint32        // least_request only; 0 = grpc-go default (2)
	Blackout    time.Duration // weighted_round_robin only; <0 = default
	Update      time.Duration // weighted_round_robin only; <0 = default
	Expiration  time.Duration // weighted_round_robin only; <0 = default
	OOB         bool          // weighted_round_robin only
}

// DefaultServiceConfig is what a Service without annotations gets: round_robin.
func DefaultServiceConfig() ServiceConfig {
	return ServiceConfig{Policy: RoundRobin, Blackout: -1, Update: -1, Expiration: -1}
}

// ConfigError says why a Service's annotations were rejected. Reason is a short stable
// label for metrics (spread_xds_config_errors_total{reason}).
type ConfigError struct {
	Reason     string
	Annotation string
	Value      string
	Detail     string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("annotation %s=%q: %s (%s)", e.Annotation, e.Value, e.Detail, e.Reason)
}

// Reasons reported in ConfigError.Reason.
const (
	ReasonUnknownPolicy     = "unknown_lb_policy"
	ReasonMissingHashHeader = "missing_hash_header"
	ReasonInvalidHashHeader = "invalid_hash_header"
	ReasonInvalidNumber     = "invalid_number"
	ReasonInvalidDuration   = "invalid_duration"
	ReasonInvalidBool       = "invalid_bool"
	ReasonUnknownAnnotation = "unknown_annotation"
	ReasonNotApplicable     = "not_applicable"
)

var headerName = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_|~-]+$`)

// ParseServiceConfig reads a Service's annotations. Annotations outside AnnotationPrefix
// are ignored. It returns the first problem found (in annotation-key order, so the error is
// stable) as a *ConfigError.
func ParseServiceConfig(annotations map[string]string) (ServiceConfig, error) {
	c := DefaultServiceConfig()
	get := func(k string) (string, bool) {
		v, ok := annotations[k]
		return strings.TrimSpace(v), ok
	}
	known := map[string]bool{
		AnnotationLBPolicy: true, AnnotationHashHeader: true, AnnotationChoiceCount: true,
		AnnotationWRRBlackout: true, AnnotationWRRUpdate: true, AnnotationWRRExpiration: true,
		AnnotationWRROOB: true, AnnotationXDS: true,
	}
	for _, k := range slices.Sorted(maps.Keys(annotations)) {
		if strings.HasPrefix(k, AnnotationPrefix) && !known[k] && isXDSAnnotation(k) {
			return ServiceConfig{}, &ConfigError{ReasonUnknownAnnotation, k, annotations[k], "not an annotation spread xds knows"}
		}
	}
	if v, ok := get(AnnotationLBPolicy); ok && v != "" {
		p := LBPolicy(strings.ReplaceAll(strings.ToLower(v), "-", "_"))
		if !slices.Contains(policies, p) {
			return ServiceConfig{}, &ConfigError{ReasonUnknownPolicy, AnnotationLBPolicy, v, fmt.Sprintf("want one of %v", policies)}
		}
		c.Policy = p
	}
	onlyFor := func(k string, p LBPolicy) error {
		if _, ok := annotations[k]; ok && c.Policy != p {
			return &ConfigError{ReasonNotApplicable, k, annotations[k], fmt.Sprintf("only applies to %s, policy is %s", p, c.Policy)}
		}
		return nil
	}
	for _, kp := range []struct {
		k string
		p LBPolicy
	}{
		{AnnotationChoiceCount, LeastRequest}, {AnnotationHashHeader, RingHash}, {AnnotationWRRBlackout, WeightedRoundRobin},
		{AnnotationWRRExpiration, WeightedRoundRobin}, {AnnotationWRROOB, WeightedRoundRobin}, {AnnotationWRRUpdate, WeightedRoundRobin},
	} {
		if err := onlyFor(kp.k, kp.p); err != nil {
			return ServiceConfig{}, err
		}
	}
	switch c.Policy {
	case RingHash:
		v, ok := get(AnnotationHashHeader)
		if !ok || v == "" {
			return ServiceConfig{}, &ConfigError{ReasonMissingHashHeader, AnnotationHashHeader, v, "ring_hash needs a header to hash on"}
		}
		if !headerName.MatchString(v) || strings.HasSuffix(v, "-bin") || strings.HasPrefix(v, "grpc-") {
			return ServiceConfig{}, &ConfigError{ReasonInvalidHashHeader, AnnotationHashHeader, v, "want a lower-case, non-binary, non-grpc- header name"}
		}
		c.HashHeader = v
	case LeastRequest:
		if v, ok := get(AnnotationChoiceCount); ok {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n < 2 || n > 100 {
				return ServiceConfig{}, &ConfigError{ReasonInvalidNumber, AnnotationChoiceCount, v, "want an integer from 2 to 100"}
			}
			c.ChoiceCount = uint32(n)
		}
	case WeightedRoundRobin:
		for _, kd := range []struct {
			k   string
			dst *time.Duration
		}{{AnnotationWRRBlackout, &c.Blackout}, {AnnotationWRRExpiration, &c.Expiration}, {AnnotationWRRUpdate, &c.Update}} {
			k, dst := kd.k, kd.dst
			v, ok := get(k)
			if !ok {
				continue
			}
			d, err := time.ParseDuration(v)
			// grpc-go reads 0 as "use the default", so 0 is refused rather than misread.
			if err != nil || d <= 0 || d > 24*time.Hour {
				return ServiceConfig{}, &ConfigError{ReasonInvalidDuration, k, v, "want a Go duration above 0s, up to 24h"}
			}
			*dst = d
		}
		if c.Update >= 0 && c.Update < 100*time.Millisecond {
			return ServiceConfig{}, &ConfigError{ReasonInvalidDuration, AnnotationWRRUpdate, annotations[AnnotationWRRUpdate], "want at least 100ms"}
		}
		if v, ok := get(AnnotationWRROOB); ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return ServiceConfig{}, &ConfigError{ReasonInvalidBool, AnnotationWRROOB, v, "want true or false"}
			}
			c.OOB = b
		}
	}
	if v, ok := get(AnnotationXDS); ok {
		if _, err := strconv.ParseBool(v); err != nil {
			return ServiceConfig{}, &ConfigError{ReasonInvalidBool, AnnotationXDS, v, "want true or false"}
		}
	}
	return c, nil
}

// isXDSAnnotation reports whether a spread.dev/ key is one this package owns. Other Spread
// components may add their own spread.dev/ annotations; only the xDS-looking ones (lb-*,
// hash-*, wrr-*, least-request-*, ring-hash-*) are checked for typos.
func isXDSAnnotation(k string) bool {
	name := strings.TrimPrefix(k, AnnotationPrefix)
	for _, p := range []string{"lb-", "hash-", "wrr-", "least-request-", "ring-hash-", "xds"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// reasonOf extracts the metric reason label from an error.
func reasonOf(err error) string {
	if ce, ok := errors.AsType[*ConfigError](err); ok {
		return ce.Reason
	}
	return "invalid_resource"
}
