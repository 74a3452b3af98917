package hedge_test

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/balancer"

	"github.com/spread-grpc/spread/hedge"
)

// recorderName is a test policy: round_robin whose picks report, through Done, whether each
// attempt ended in error, as outlier detection would count it.
const recorderName = "hedge_test_recorder"

// recorded counts the Done reports of the recorder policy.
var recorded struct {
	mu        sync.Mutex
	ok, error int
}

type recorderBuilder struct{}

func (recorderBuilder) Name() string { return recorderName }

func (recorderBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	return balancer.Get("round_robin").Build(&recorderCC{ClientConn: cc}, opts)
}

type recorderCC struct{ balancer.ClientConn }

func (r *recorderCC) UpdateState(s balancer.State) {
	s.Picker = recorderPicker{s.Picker}
	r.ClientConn.UpdateState(s)
}

type recorderPicker struct{ balancer.Picker }

func (p recorderPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	r, err := p.Picker.Pick(info)
	if err != nil {
		return r, err
	}
	r.Done = func(di balancer.DoneInfo) {
		recorded.mu.Lock()
		defer recorded.mu.Unlock()
		if di.Err != nil {
			recorded.error++
		} else {
			recorded.ok++
		}
	}
	return r, nil
}

// The child policy hears of every attempt: those overtaken by a later attempt as failed
// (unless they answered anyway), those outrun by an earlier one (hedges that were not
// needed) as successes.
func TestOutrunAttemptsReportedAsSuccess(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	f := startFleet(t, 3)
	sc, err := hedge.ServiceConfig(recorderName, nil)
	if err != nil {
		t.Fatal(err)
	}
	obs := &observer{}
	h := newClient(t, obs, hedge.WithPolicy(sayHello, hedge.Policy{Idempotent: true, MaxAttempts: 2, HedgeDelay: 5 * time.Millisecond}),
		hedge.WithBudget(hedge.Budget{Ratio: 1, Burst: 20}))
	c := dial(t, ctx, f, h, sc)
	// Every pod takes 20 ms: most calls are hedged after 5 ms and answered by the first
	// attempt, the hedge outrun; the slow pod's first attempts are overtaken by hedges.
	for _, p := range f.pods {
		p.Server.SetDelay(20 * time.Millisecond)
	}
	f.pods[0].Server.SetDelay(200 * time.Millisecond)
	recorded.mu.Lock()
	recorded.ok, recorded.error = 0, 0
	recorded.mu.Unlock()
	obs.start()
	rs := callMany(ctx, c, 150, 4, 10*time.Second)
	if k, err := failed(rs); k > 0 {
		t.Fatalf("%d calls failed, first: %v", k, err)
	}
	var attempts, overtaken, outrun int
	for _, ci := range obs.infos() {
		for i, a := range ci.Attempts {
			if a.Addr == "" {
				continue // cancelled before it was picked: the child never saw it
			}
			attempts++
			switch {
			case i < ci.Winner:
				overtaken++
			case i > ci.Winner:
				outrun++
			}
		}
	}
	if overtaken == 0 || outrun == 0 {
		t.Fatalf("%d attempts overtaken, %d outrun: the test did not race attempts", overtaken, outrun)
	}
	// Done comes when an attempt's stream ends, after the call returned: wait for all.
	for {
		recorded.mu.Lock()
		ok, bad := recorded.ok, recorded.error
		recorded.mu.Unlock()
		// grpc-go may pick more than once for one attempt (a transparent retry of a stream
		// that never left the client), and each pick gets its Done: the child can hear of
		// a few more attempts than the calls record, each such extra one a failure at most.
		if extra := ok + bad - attempts; extra >= 0 {
			// Outrun attempts are all successes, so at most the overtaken ones failed (one
			// may have answered before its cancellation took: a success too); the slow pod's,
			// cancelled long before its answer, failed.
			if bad > overtaken+extra || bad == 0 {
				t.Fatalf("the child heard of %d failed attempts and %d successes; want the %d outrun as successes, at most the %d overtaken failed",
					bad, ok, outrun, overtaken)
			}
			t.Logf("%d attempts: %d reported failed (%d overtaken), %d outrun reported successful", attempts, bad, overtaken, outrun)
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the child heard of %d of %d attempts", ok+bad, attempts)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
