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

	// AnnotationOutlierDetection turns on outlier detection (gRFC A50, Cluster.outlier_detection):
	// "failure-percentage" ejects a pod failing at least a threshold share of its calls;
	// "off" (or absent) leaves it off. The tunables below default to DefaultOutlierDetection.
	AnnotationOutlierDetection = AnnotationPrefix + "outlier-detection"
	// AnnotationODThreshold is the failure percentage (1–100) at or above which a pod is ejected.
	AnnotationODThreshold = AnnotationPrefix + "outlier-failure-threshold"
	// AnnotationODMinimumHosts is how many pods need enough calls before any is ejected (≥ 1).
	AnnotationODMinimumHosts = AnnotationPrefix + "outlier-minimum-hosts"
	// AnnotationODRequestVolume is how many calls a pod needs in an interval to be judged (≥ 1).
	AnnotationODRequestVolume = AnnotationPrefix + "outlier-request-volume"
	// AnnotationODInterval is how often the counts are looked at (Go duration, 10ms–1h).
	AnnotationODInterval = AnnotationPrefix + "outlier-interval"
	// AnnotationODBaseEjection is the first ejection's length; a pod ejected again stays out
	// for a multiple of it, up to DefaultOutlierDetection's MaxEjection (Go duration, 1s–1h).
	AnnotationODBaseEjection = AnnotationPrefix + "outlier-base-ejection-time"
	// AnnotationODMaxEjectionPercent caps the share of pods ejected at once (1–100).
	AnnotationODMaxEjectionPercent = AnnotationPrefix + "outlier-max-ejection-percent"
	// AnnotationCallTimeout bounds every call routed to the Service (Go duration, 1ms–1h),
	// sent as the route's max_stream_duration, which grpc-go applies as the call timeout
	// (the shorter of it and the caller's deadline wins). It bounds streams too; see
	// AnnotationCallTimeoutMethods.
	AnnotationCallTimeout = AnnotationPrefix + "call-timeout"
	// AnnotationCallTimeoutMethods limits AnnotationCallTimeout to some methods: a comma-
	// separated list of "package.Service/Method" or "package.Service" (all its methods).
	// Other calls, long-lived streams for instance, are not bounded.
	AnnotationCallTimeoutMethods = AnnotationPrefix + "call-timeout-methods"
)

// OutlierFailurePercentage is the one outlier-detection mode AnnotationOutlierDetection takes.
const OutlierFailurePercentage = "failure-percentage"

// OutlierDetection is failure-percentage outlier detection, as grpc-go's outlier_detection
// policy runs it. Enforcement is always 100 % and success-rate ejection is always off.
type OutlierDetection struct {
	Enabled            bool
	Threshold          uint32 // failure percentage, 1–100
	MinimumHosts       uint32
	RequestVolume      uint32
	Interval           time.Duration
	BaseEjection       time.Duration
	MaxEjection        time.Duration
	MaxEjectionPercent uint32
}

// DefaultOutlierDetection is what AnnotationOutlierDetection: failure-percentage gives
// without tunables: the demo's tuned DNS mode's settings. A pod failing at least half of its
// calls, with 5 or more calls in a 500 ms interval, is ejected for 30 s (longer if it fails
// again, up to 300 s), at most half the pods at once, once 3 pods have enough calls.
func DefaultOutlierDetection() OutlierDetection {
	return OutlierDetection{
		Enabled: true, Threshold: 50, MinimumHosts: 3, RequestVolume: 5,
		Interval: 500 * time.Millisecond, BaseEjection: 30 * time.Second, MaxEjection: 300 * time.Second,
		MaxEjectionPercent: 50,
	}
}

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
	// Outlier is Cluster.outlier_detection (off unless Enabled).
	Outlier OutlierDetection
	// CallTimeout is the route's max_stream_duration (0 = none), for CallTimeoutMethods
	// ("package.Service/Method" or "package.Service") or, if there are none, for every call.
	CallTimeout        time.Duration
	CallTimeoutMethods []string
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
	ReasonUnknownOutlier    = "unknown_outlier_detection"
	ReasonInvalidMethod     = "invalid_method"
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
	if k, ok := UnknownAnnotation(annotations); ok {
		return ServiceConfig{}, &ConfigError{ReasonUnknownAnnotation, k, annotations[k], "not an annotation spread xds knows"}
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
	if err := parseOutlier(annotations, &c); err != nil {
		return ServiceConfig{}, err
	}
	if err := parseCallTimeout(annotations, &c); err != nil {
		return ServiceConfig{}, err
	}
	return c, nil
}

// parseOutlier reads AnnotationOutlierDetection and its tunables into c.Outlier.
func parseOutlier(annotations map[string]string, c *ServiceConfig) error {
	tunables := []string{AnnotationODBaseEjection, AnnotationODInterval, AnnotationODMaxEjectionPercent,
		AnnotationODMinimumHosts, AnnotationODRequestVolume, AnnotationODThreshold}
	mode := strings.ToLower(strings.TrimSpace(annotations[AnnotationOutlierDetection]))
	switch mode {
	case OutlierFailurePercentage:
	case "", "off":
		for _, k := range tunables {
			if v, ok := annotations[k]; ok {
				return &ConfigError{ReasonNotApplicable, k, v, "only applies with " + AnnotationOutlierDetection + ": " + OutlierFailurePercentage}
			}
		}
		return nil
	default:
		return &ConfigError{ReasonUnknownOutlier, AnnotationOutlierDetection, annotations[AnnotationOutlierDetection],
			"want " + OutlierFailurePercentage + " or off"}
	}
	od := DefaultOutlierDetection()
	for _, n := range []struct {
		k        string
		dst      *uint32
		min, max uint64
	}{
		{AnnotationODMaxEjectionPercent, &od.MaxEjectionPercent, 1, 100},
		{AnnotationODMinimumHosts, &od.MinimumHosts, 1, 10000},
		{AnnotationODRequestVolume, &od.RequestVolume, 1, 1000000},
		{AnnotationODThreshold, &od.Threshold, 1, 100},
	} {
		v, ok := annotations[n.k]
		if !ok {
			continue
		}
		x, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		if err != nil || x < n.min || x > n.max {
			return &ConfigError{ReasonInvalidNumber, n.k, v, fmt.Sprintf("want an integer from %d to %d", n.min, n.max)}
		}
		*n.dst = uint32(x)
	}
	for _, d := range []struct {
		k        string
		dst      *time.Duration
		min, max time.Duration
	}{
		{AnnotationODBaseEjection, &od.BaseEjection, time.Second, time.Hour},
		{AnnotationODInterval, &od.Interval, 10 * time.Millisecond, time.Hour},
	} {
		v, ok := annotations[d.k]
		if !ok {
			continue
		}
		x, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || x < d.min || x > d.max {
			return &ConfigError{ReasonInvalidDuration, d.k, v, fmt.Sprintf("want a Go duration from %v to %v", d.min, d.max)}
		}
		*d.dst = x
	}
	od.MaxEjection = max(od.MaxEjection, od.BaseEjection)
	c.Outlier = od
	return nil
}

// methodName is "package.Service/Method" or "package.Service".
var methodName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*(/[A-Za-z_][A-Za-z0-9_]*)?$`)

// parseCallTimeout reads AnnotationCallTimeout and AnnotationCallTimeoutMethods.
func parseCallTimeout(annotations map[string]string, c *ServiceConfig) error {
	v, ok := annotations[AnnotationCallTimeout]
	if !ok {
		if m, ok := annotations[AnnotationCallTimeoutMethods]; ok {
			return &ConfigError{ReasonNotApplicable, AnnotationCallTimeoutMethods, m, "only applies with " + AnnotationCallTimeout}
		}
		return nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < time.Millisecond || d > time.Hour {
		return &ConfigError{ReasonInvalidDuration, AnnotationCallTimeout, v, "want a Go duration from 1ms to 1h"}
	}
	c.CallTimeout = d
	if m, ok := annotations[AnnotationCallTimeoutMethods]; ok {
		for f := range strings.SplitSeq(m, ",") {
			f = strings.TrimSpace(f)
			if !methodName.MatchString(f) {
				return &ConfigError{ReasonInvalidMethod, AnnotationCallTimeoutMethods, m,
					fmt.Sprintf("%q: want a comma-separated list of package.Service/Method or package.Service", f)}
			}
			if !slices.Contains(c.CallTimeoutMethods, f) {
				c.CallTimeoutMethods = append(c.CallTimeoutMethods, f)
			}
		}
	}
	return nil
}

// isXDSAnnotation reports whether a spread.dev/ key is one this package owns. Other Spread
// components may add their own spread.dev/ annotations; only the xDS-looking ones (lb-*,
// hash-*, wrr-*, least-request-*, ring-hash-*, outlier*, call-*) are checked for typos.
// knownAnnotations are the annotation keys ParseServiceConfig reads.
var knownAnnotations = map[string]bool{
	AnnotationLBPolicy: true, AnnotationHashHeader: true, AnnotationChoiceCount: true,
	AnnotationWRRBlackout: true, AnnotationWRRUpdate: true, AnnotationWRRExpiration: true,
	AnnotationWRROOB: true, AnnotationXDS: true,
	AnnotationOutlierDetection: true, AnnotationODThreshold: true, AnnotationODMinimumHosts: true,
	AnnotationODRequestVolume: true, AnnotationODInterval: true, AnnotationODBaseEjection: true,
	AnnotationODMaxEjectionPercent: true, AnnotationCallTimeout: true, AnnotationCallTimeoutMethods: true,
}

// UnknownAnnotation returns the first key (in key order) that ParseServiceConfig refuses as
// not an annotation it knows: a spread.dev/ key that is not one of its own but looks like
// one (an xDS setting's prefix, or a near-miss such as spread.dev/lbpolicy). Other
// spread.dev/ keys are left to other components.
func UnknownAnnotation(annotations map[string]string) (string, bool) {
	for _, k := range slices.Sorted(maps.Keys(annotations)) {
		if strings.HasPrefix(k, AnnotationPrefix) && !knownAnnotations[k] && (isXDSAnnotation(k) || nearMiss(k, knownAnnotations)) {
			return k, true
		}
	}
	return "", false
}

func isXDSAnnotation(k string) bool {
	name := strings.TrimPrefix(k, AnnotationPrefix)
	for _, p := range []string{"lb-", "hash-", "wrr-", "least-request-", "ring-hash-", "xds", "outlier", "call-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// nearMiss reports whether k spells a known annotation with other separators or case
// (spread.dev/lbpolicy, spread.dev/LB_Policy for spread.dev/lb-policy): a typo, not another
// component's annotation.
func nearMiss(k string, known map[string]bool) bool {
	norm := func(s string) string {
		s = strings.ToLower(strings.TrimPrefix(s, AnnotationPrefix))
		return strings.NewReplacer("-", "", "_", "", ".", "").Replace(s)
	}
	n := norm(k)
	for kk := range known {
		if norm(kk) == n {
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
