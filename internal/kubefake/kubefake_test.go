package kubefake

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

func pod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}}
}

// WaitWatching holds until every list has its watch, and the watch it counted delivers.
func TestWaitWatching(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := NewClientset(pod("a"))
	pods := c.CoreV1().Pods("ns")

	// Nothing listed yet, then listed but not watched: the wait ends only with its context.
	for _, step := range []string{"before the list", "between the list and the watch"} {
		short, stop := context.WithTimeout(ctx, 20*time.Millisecond)
		err := c.WaitWatching(short, "pods")
		stop()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitWatching %s = %v, want the context's deadline", step, err)
		}
		if step == "before the list" {
			if _, err := pods.List(ctx, metav1.ListOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}

	w, err := pods.Watch(ctx, metav1.ListOptions{ResourceVersion: "999"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := c.WaitWatching(ctx, "pods"); err != nil {
		t.Fatal(err)
	}
	// The counted watch is the one the tracker feeds: a delete reaches it.
	if err := pods.Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		if ev.Type != watch.Deleted {
			t.Fatalf("event %v, want Deleted", ev.Type)
		}
	case <-ctx.Done():
		t.Fatal("the watch never saw the delete")
	}
}
