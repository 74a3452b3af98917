package xdscmd

import (
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"github.com/spread-grpc/spread/internal/xds"
)

// EventReason is the reason of the Warning Event a rejected Service configuration produces.
const EventReason = "InvalidXDSConfig"

// ServiceEvents records a Warning Event on a Service whose spread.dev/ annotations the
// control plane rejected, so `kubectl describe service` shows why it keeps its last good
// configuration. It uses client-go's event broadcaster (core v1 Events): an identical event
// (same Service, reason and message, e.g. one per port) is counted on one Event object
// instead of creating another. Report never blocks (events are dropped if the queue fills).
type ServiceEvents struct {
	b record.EventBroadcaster
	r record.EventRecorder
}

// NewServiceEvents records through client, as component "spread-xds" on host os.Hostname()
// (in a pod: the pod's name). Stop it with Close.
//
// Replicas are not deduplicated: each replica parses the annotations itself and records its
// own Event, naming itself as the source host (`kubectl describe service` shows "spread-xds,
// <pod>" per replica). Deduplicating across replicas would need coordination (a leader, or
// reading Events before writing them: get/list on events, beyond least privilege) for an
// Event that is the same in content; one per replica also shows which replicas rejected it.
func NewServiceEvents(client kubernetes.Interface) *ServiceEvents {
	host, _ := os.Hostname()
	return newServiceEvents(client, host)
}

func newServiceEvents(client kubernetes.Interface, host string) *ServiceEvents {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return &ServiceEvents{b: b, r: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "spread-xds", Host: host})}
}

// NewServiceEventsForConfig is NewServiceEvents over a REST configuration.
func NewServiceEventsForConfig(rc *rest.Config) (*ServiceEvents, error) {
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "spread-xds"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("events client: %w", err)
	}
	return NewServiceEvents(client), nil
}

// Report is an xds.WithConfigErrorHandler.
func (e *ServiceEvents) Report(svc xds.Service, err error) {
	ref := &corev1.ObjectReference{
		Kind: "Service", APIVersion: "v1", Namespace: svc.Key.Namespace, Name: svc.Key.Service, UID: types.UID(svc.UID),
	}
	e.r.Eventf(ref, corev1.EventTypeWarning, EventReason,
		"xDS configuration rejected, the last good one stays in force: %v", err)
}

// Close stops recording (queued events may be dropped).
func (e *ServiceEvents) Close() { e.b.Shutdown() }
