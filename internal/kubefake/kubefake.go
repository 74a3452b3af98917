// Package kubefake is test support: a client-go fake clientset that tells a test when the
// watches its informers opened are in place.
//
// An API server replays to a watch every change made since the resourceVersion of the list
// before it. A fake clientset (client-go v0.37) replays the objects created or updated since
// then, but not the ones deleted: a Delete made between an informer's list and its watch is
// lost for ever, and the informer keeps the object. A test that deletes an object an
// informer holds must first wait for the watch, with WaitWatching. (make test-stress caught
// this: a resolver test's Delete fell into that gap and calls kept succeeding.)
package kubefake

import (
	"context"
	"fmt"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// Clientset is a fake.Clientset that counts, per resource, the lists made and the watches
// opened. Its methods may be called concurrently.
type Clientset struct {
	*fake.Clientset

	mu      sync.Mutex
	lists   map[string]int
	watches map[string]int
	changed chan struct{} // closed and replaced on every count
}

// NewClientset returns a Clientset holding objs, as fake.NewClientset does.
func NewClientset(objs ...runtime.Object) *Clientset {
	c := &Clientset{
		Clientset: fake.NewClientset(objs...),
		lists:     make(map[string]int),
		watches:   make(map[string]int),
		changed:   make(chan struct{}),
	}
	c.PrependReactor("list", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		c.count(c.lists, a.GetResource().Resource)
		return false, nil, nil // the default reactor answers
	})
	// The default watch reactor's work, then the count: a watch is counted once the tracker
	// delivers its events.
	c.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if wa, ok := a.(k8stesting.WatchActionImpl); ok {
			opts = wa.ListOptions
		}
		w, err := c.Tracker().Watch(a.GetResource(), a.GetNamespace(), opts)
		if err != nil {
			return false, nil, err
		}
		c.count(c.watches, a.GetResource().Resource)
		return true, w, nil
	})
	return c
}

func (c *Clientset) count(m map[string]int, resource string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m[resource]++
	close(c.changed)
	c.changed = make(chan struct{})
}

// WaitWatching returns nil once resource ("endpointslices", "services", ...) has been listed
// and every list of it has been followed by a watch: an informer that lists, then watches,
// then misses nothing. It returns an error if ctx ends first.
func (c *Clientset) WaitWatching(ctx context.Context, resource string) error {
	for {
		c.mu.Lock()
		l, w, changed := c.lists[resource], c.watches[resource], c.changed
		c.mu.Unlock()
		if l > 0 && w >= l {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("kubefake: %s listed %d times and watched %d times when waiting ended: %w", resource, l, w, context.Cause(ctx))
		}
	}
}
