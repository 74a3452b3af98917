package kubetest

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// PodNetwork is where pod IPs come from: TEST-NET-1 (RFC 5737). EndpointSlices
// refuse loopback and link-local addresses, and documentation addresses are
// never routed, so a test that dials one by mistake fails instead of reaching
// something real. Map them to loopback listeners in the test's dialer.
var PodNetwork = netip.MustParsePrefix("192.0.2.0/24")

// ZoneLabel is the well-known label the endpointslice controller copies into
// each endpoint's zone.
const ZoneLabel = "topology.kubernetes.io/zone"

// CreateNode creates a Ready node labelled with zone (if not empty), as a
// kubelet would register one. The endpointslice controller skips pods whose
// node does not exist, so create nodes before [Cluster.MarkPodsReady].
func (c *Cluster) CreateNode(ctx context.Context, name, zone string) (*corev1.Node, error) {
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		return nil, fmt.Errorf("kubetest: client: %w", err)
	}
	labels := map[string]string{corev1.LabelHostname: name}
	if zone != "" {
		labels[ZoneLabel] = zone
	}
	node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubetest: create node %s: %w", name, err)
	}
	now := metav1.Now()
	node.Status.Conditions = []corev1.NodeCondition{{
		Type:               corev1.NodeReady,
		Status:             corev1.ConditionTrue,
		Reason:             "KubeletReady",
		Message:            "kubetest: simulated node",
		LastHeartbeatTime:  now,
		LastTransitionTime: now,
	}}
	node.Status.Phase = corev1.NodeRunning
	node, err = cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("kubetest: set node %s ready: %w", name, err)
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, name)
	c.mu.Unlock()
	return node, nil
}

// Placement says where a pod runs and which address it gets.
type Placement struct {
	Node string
	IP   netip.Addr // must lie in PodNetwork
}

// MarkPodsReady does a kubelet's part for the pods in namespace matching the
// label selector: it binds each unscheduled pod to a node (pods/binding; a
// pod's nodeName cannot be changed after creation) and reports it Running and
// Ready with one IP. place chooses node and IP per pod; nil spreads pods over
// the nodes made by [Cluster.CreateNode] in turn and hands out fresh addresses
// from [PodNetwork].
//
// Pods already Running and Ready are left alone and pods being deleted are
// skipped, so it is safe to call repeatedly, e.g. in a poll loop until a
// ReplicaSet's pods all exist. It returns the pods that are Running and Ready
// afterwards.
func (c *Cluster) MarkPodsReady(ctx context.Context, namespace, selector string, place func(*corev1.Pod) Placement) ([]corev1.Pod, error) {
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		return nil, fmt.Errorf("kubetest: client: %w", err)
	}
	if place == nil {
		place = c.defaultPlacement
	}
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("kubetest: list pods %s in %s: %w", selector, namespace, err)
	}
	var ready []corev1.Pod
	for i := range pods.Items {
		pod := &pods.Items[i]
		if pod.DeletionTimestamp != nil {
			continue
		}
		if isRunningAndReady(pod) {
			ready = append(ready, *pod)
			continue
		}
		pl := place(pod)
		if pod.Spec.NodeName != "" {
			pl.Node = pod.Spec.NodeName
		}
		if pl.Node == "" {
			return nil, fmt.Errorf("kubetest: no node for pod %s/%s: create one with CreateNode", pod.Namespace, pod.Name)
		}
		if !pl.IP.Is4() || !PodNetwork.Contains(pl.IP) {
			return nil, fmt.Errorf("kubetest: pod %s/%s: IP %v is not in %v", pod.Namespace, pod.Name, pl.IP, PodNetwork)
		}
		updated, err := markPodReady(ctx, cs, pod, pl)
		if err != nil {
			return nil, err
		}
		ready = append(ready, *updated)
	}
	return ready, nil
}

func (c *Cluster) defaultPlacement(*corev1.Pod) Placement {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextIP++
	var pl Placement
	if len(c.nodes) > 0 {
		pl.Node = c.nodes[(c.nextIP-1)%len(c.nodes)]
	}
	if c.nextIP < 255 {
		pl.IP = netip.AddrFrom4([4]byte{192, 0, 2, byte(c.nextIP)})
	}
	// else: the zero Addr, which MarkPodsReady reports as out of range.
	return pl
}

func markPodReady(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, pl Placement) (*corev1.Pod, error) {
	if pod.Spec.NodeName == "" {
		err := cs.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: pl.Node},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsConflict(err) { // conflict: bound meanwhile
			return nil, fmt.Errorf("kubetest: bind pod %s/%s to %s: %w", pod.Namespace, pod.Name, pl.Node, err)
		}
	}
	var updated *corev1.Pod
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		setRunningAndReady(cur, pl.IP)
		updated, err = cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("kubetest: mark pod %s/%s ready: %w", pod.Namespace, pod.Name, err)
	}
	return updated, nil
}

func setRunningAndReady(pod *corev1.Pod, ip netip.Addr) {
	now := metav1.Now()
	ipStr := ip.String()
	if pod.Status.PodIP != "" {
		ipStr = pod.Status.PodIP // IPs do not change over a pod's life
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = ipStr
	pod.Status.PodIPs = []corev1.PodIP{{IP: ipStr}}
	if pod.Status.StartTime == nil {
		pod.Status.StartTime = &now
	}
	for _, t := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		setCondition(pod, t, now)
	}
	pod.Status.ContainerStatuses = nil
	for _, ctr := range pod.Spec.Containers {
		started := true
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name:    ctr.Name,
			Image:   ctr.Image,
			Ready:   true,
			Started: &started,
			State:   corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
}

func setCondition(pod *corev1.Pod, t corev1.PodConditionType, now metav1.Time) {
	for i := range pod.Status.Conditions {
		cond := &pod.Status.Conditions[i]
		if cond.Type == t {
			if cond.Status != corev1.ConditionTrue {
				cond.Status = corev1.ConditionTrue
				cond.LastTransitionTime = now
			}
			return
		}
	}
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{
		Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now,
	})
}

func isRunningAndReady(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
		return false
	}
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// FinishTerminatingPods removes the pods in namespace matching selector that
// are being deleted, as a kubelet does once their containers stopped (without
// a kubelet they would stay terminating for ever). It returns how many it
// removed.
func (c *Cluster) FinishTerminatingPods(ctx context.Context, namespace, selector string) (int, error) {
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		return 0, fmt.Errorf("kubetest: client: %w", err)
	}
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return 0, fmt.Errorf("kubetest: list pods %s in %s: %w", selector, namespace, err)
	}
	n := 0
	zero := int64(0)
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp == nil {
			continue
		}
		err := cs.CoreV1().Pods(namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero,
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return n, fmt.Errorf("kubetest: delete pod %s/%s: %w", namespace, pod.Name, err)
		}
		n++
	}
	return n, nil
}
