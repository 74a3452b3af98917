package endpoint

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHealth(t *testing.T) {
	for _, tc := range []struct {
		e    Endpoint
		want Health
	}{
		{Endpoint{Ready: true, Serving: true}, Healthy},
		{Endpoint{Ready: false, Serving: true, Terminating: true}, Draining},
		{Endpoint{Ready: false, Serving: false, Terminating: true}, Unhealthy},
		{Endpoint{}, Unhealthy},
	} {
		if got := tc.e.Health(); got != tc.want {
			t.Errorf("%+v.Health() = %v, want %v", tc.e, got, tc.want)
		}
	}
}

func TestNewSetSortsAndDedupes(t *testing.T) {
	s := NewSet([]Endpoint{
		{Address: "192.0.2.2", Port: 80, Ready: true},
		{Address: "192.0.2.1", Port: 80, Serving: true, Terminating: true},
		{Address: "192.0.2.1", Port: 80, Ready: true, Pod: "b"},
		{Address: "192.0.2.1", Port: 79, Ready: true},
	})
	want := []string{"192.0.2.1:79", "192.0.2.1:80", "192.0.2.2:80"}
	if got := s.HostPorts(); !equal(got, want) {
		t.Fatalf("HostPorts = %v, want %v", got, want)
	}
	if !s[1].Ready || s[1].Pod != "b" {
		t.Errorf("duplicate kept %+v, want the ready one", s[1])
	}
}

func TestUsable(t *testing.T) {
	ready := Endpoint{Address: "192.0.2.1", Port: 1, Ready: true, Serving: true}
	draining := Endpoint{Address: "192.0.2.2", Port: 1, Serving: true, Terminating: true}
	dead := Endpoint{Address: "192.0.2.3", Port: 1, Terminating: true}
	for _, tc := range []struct {
		name string
		in   Set
		want []string
	}{
		{"ready wins over draining", NewSet([]Endpoint{ready, draining, dead}), []string{"192.0.2.1:1"}},
		{"draining when none ready", NewSet([]Endpoint{draining, dead}), []string{"192.0.2.2:1"}},
		{"nothing usable", NewSet([]Endpoint{dead}), []string{}},
		{"empty", Set{}, []string{}},
	} {
		if got := tc.in.Usable().HostPorts(); !equal(got, tc.want) {
			t.Errorf("%s: Usable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseKey(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Key
		wantErr bool
	}{
		{in: "be-srv.default:50051", want: Key{"default", "be-srv", "50051"}},
		{in: "be-srv.prod:grpc", want: Key{"prod", "be-srv", "grpc"}},
		{in: "be-srv:grpc", want: Key{"default", "be-srv", "grpc"}},
		{in: "be-srv.prod.svc.cluster.local:grpc", want: Key{"prod", "be-srv", "grpc"}},
		{in: "be-srv.prod", wantErr: true},
		{in: ":80", wantErr: true},
		{in: "a.b.c:80", wantErr: true},
	} {
		got, err := ParseKey(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseKey(%q) = %+v, %v; want %+v, err=%v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	if s := (Key{"prod", "be-srv", "grpc"}).String(); s != "be-srv.prod:grpc" {
		t.Errorf("String = %q", s)
	}
}

func TestPublisherCurrentFirstThenChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p Publisher
	one := NewSet([]Endpoint{{Address: "192.0.2.1", Port: 1, Ready: true}})
	p.Publish(one)

	got := make(chan Set, 10)
	subCtx, stop := context.WithCancel(ctx)
	wait, err := p.Subscribe(subCtx, func(s Set) { got <- s })
	if err != nil {
		t.Fatal(err)
	}

	expect := func(want Set) {
		t.Helper()
		select {
		case s := <-got:
			if !s.Equal(want) {
				t.Fatalf("got %v, want %v", s, want)
			}
		case <-ctx.Done():
			t.Fatalf("no set delivered, want %v", want)
		}
	}
	expect(one)
	// An equal set is not delivered. Watched for a while before the next Publish: a set
	// published right after it would otherwise be coalesced with it and hide a delivery.
	p.Publish(NewSet(one))
	select {
	case s := <-got:
		t.Fatalf("an equal set was delivered: %v", s)
	case <-time.After(100 * time.Millisecond): // a must-not-happen window
	}
	p.Publish(Set{}) // the empty set is a state too
	expect(Set{})
	stop()
	wait()
	p.Publish(one)
	select {
	case s := <-got:
		t.Fatalf("delivered %v after the subscription ended", s)
	default:
	}
}

func TestPublisherCoalescesToNewest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p Publisher
	entered := make(chan struct{}, 1)
	block := make(chan struct{})
	got := make(chan Set, 100)
	wait, err := p.Subscribe(ctx, func(s Set) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-block
		got <- s
	})
	if err != nil {
		t.Fatal(err)
	}
	set := func(i int) Set { return Set{{Address: "192.0.2.1", Port: int32(i)}} }
	p.Publish(set(1))
	select {
	case <-entered: // the subscriber holds set 1 and is blocked
	case <-ctx.Done():
		t.Fatal("first set never delivered")
	}
	// 49 sets published while the subscriber is busy: it must skip to the newest.
	for i := 2; i <= 50; i++ {
		p.Publish(set(i))
	}
	close(block)
	for _, want := range []int32{1, 50} {
		select {
		case s := <-got:
			if s[0].Port != want {
				t.Fatalf("delivered set with port %d, want %d (no coalescing to the newest)", s[0].Port, want)
			}
		case <-ctx.Done():
			t.Fatalf("set %d never delivered", want)
		}
	}
	cancel()
	wait()
	if len(got) > 0 {
		t.Errorf("%d more sets delivered after the newest", len(got))
	}
}

func TestPublisherSubscribeDoneContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var p Publisher
	p.Publish(Set{})
	if wait, err := p.Subscribe(ctx, func(Set) { t.Error("fn called") }); err == nil || wait != nil {
		t.Fatalf("Subscribe with a done context = %v, %v; want no subscription and an error", wait != nil, err)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
