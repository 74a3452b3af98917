package echo

import (
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The stream-age contract. A backend with a bounded stream age ends a SayHelloStream that
// reached its age with status UNAVAILABLE, a message starting with StreamAgePrefix and the
// trailer StreamAgeTrailer (the age it had, e.g. "9.6s"). A client that sees it re-opens the
// stream at once, through its balancer (so it may land on another pod), with
// EchoRequest.resume_after set to the last seq it received; the backend continues with
// resume_after+1. Nothing is lost or repeated, and a long-lived stream follows scale-ups.
const (
	StreamAgePrefix  = "stream-age"
	StreamAgeTrailer = "spread-stream-age"
)

// IsStreamAgeEnd reports whether err is a stream ended by its maximum age: resume it at once.
func IsStreamAgeEnd(err error) bool {
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.Unavailable && strings.HasPrefix(s.Message(), StreamAgePrefix)
}
