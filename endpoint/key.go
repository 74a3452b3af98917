package endpoint

import (
	"fmt"
	"strings"
)

// Key names one port of one Service: the unit that sources publish and consumers subscribe to.
// Port is a port name ("grpc") or number ("50051"), as the user wrote it.
type Key struct {
	Namespace string
	Service   string
	Port      string
}

// String renders the key as "<service>.<namespace>:<port>", the naming Spread uses for
// resolver targets and xDS resources alike.
func (k Key) String() string {
	return k.Service + "." + k.Namespace + ":" + k.Port
}

// ParseKey parses "<service>.<namespace>:<port>" (the namespace defaults to "default" when
// the host has no dot).
func ParseKey(s string) (Key, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok || port == "" {
		return Key{}, fmt.Errorf("endpoint: %q: want <service>.<namespace>:<port>", s)
	}
	svc, ns, _ := strings.Cut(host, ".")
	if ns == "" {
		ns = "default"
	}
	if svc == "" || strings.Contains(ns, ".") && !strings.HasSuffix(ns, ".svc") && !strings.Contains(ns, ".svc.") {
		return Key{}, fmt.Errorf("endpoint: %q: want <service>.<namespace>:<port>", s)
	}
	// Accept the cluster DNS forms <svc>.<ns>.svc[.cluster.local].
	ns, _, _ = strings.Cut(ns, ".")
	return Key{Namespace: ns, Service: svc, Port: port}, nil
}
