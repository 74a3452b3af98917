package hedge_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/resolver"

	"github.com/spread-grpc/spread/echo"
	"github.com/spread-grpc/spread/hedge"
)

// recorderName is a test policy: round_robin whose picks report, through Done, whether each
// attempt ended in error, as outlier detection would count it. It records the picks and
// Dones of calls whose context carries a callIDKey, per call and pod.
const recorderName = "hedge_test_recorder"

// callIDKey keys a test call's number in its context; the attempts' contexts, which the
// child policy's picker sees, inherit it.
type callIDKey struct{}

// callRecord is what the child policy heard of one call.
type callRecord struct {
	picks int            // successful picks, each owed one Done
	dones int            // Done reports
	fails map[string]int // Done reports with an error, by pod address
}

// recorded holds the records of the calls carrying a callIDKey (not the warm-up's).
var recorded struct {
	mu    sync.Mutex
	calls map[int]*callRecord
}

// resetRecorded forgets every record; only calls made after it are recorded.
func resetRecorded() {
	recorded.mu.Lock()
	defer recorded.mu.Unlock()
	recorded.calls = map[int]*callRecord{}
}

type recorderBuilder struct{}

func (recorderBuilder) Name() string { return recorderName }

func (recorderBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	return balancer.Get("round_robin").Build(&recorderCC{ClientConn: cc, addrs: map[balancer.SubConn]string{}}, opts)
}

type recorderCC struct {
	balancer.ClientConn
	mu    sync.Mutex
	addrs map[balancer.SubConn]string
}

func (r *recorderCC) NewSubConn(addrs []resolver.Address, opts balancer.NewSubConnOptions) (balancer.SubConn, error) {
	sc, err := r.ClientConn.NewSubConn(addrs, opts)
	if err == nil && len(addrs) > 0 {
		r.mu.Lock()
		r.addrs[sc] = addrs[0].Addr
		r.mu.Unlock()
	}
	return sc, err
}

func (r *recorderCC) UpdateState(s balancer.State) {
	s.Picker = recorderPicker{Picker: s.Picker, cc: r}
	r.ClientConn.UpdateState(s)
}

type recorderPicker struct {
	balancer.Picker
	cc *recorderCC
}

func (p recorderPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	r, err := p.Picker.Pick(info)
	id, tagged := info.Ctx.Value(callIDKey{}).(int)
	if err != nil || !tagged {
		return r, err
	}
	p.cc.mu.Lock()
	addr := p.cc.addrs[r.SubConn]
	p.cc.mu.Unlock()
	recorded.mu.Lock()
	rec := recorded.calls[id]
	if rec == nil {
		rec = &callRecord{fails: map[string]int{}}
		recorded.calls[id] = rec
	}
	rec.picks++
	recorded.mu.Unlock()
	done := r.Done
	r.Done = func(di balancer.DoneInfo) {
		recorded.mu.Lock()
		rec.dones++
		if di.Err != nil {
			rec.fails[addr]++
		}
		recorded.mu.Unlock()
		if done != nil {
			done(di)
		}
	}
	return r, nil
}

// The child policy hears of every attempt: those overtaken by a later attempt as failed
// (unless they answered anyway), those outrun by an earlier one (hedges that were not
// needed) as successes.
//
// The test attributes every Done the child hears to its call and pod, and checks each
// call's attempts against the call's CallInfo once the child has heard a Done for every
// pick of every call: totals would mix in Dones of the warm-up's attempts, of picks the
// call never used (the balancer reports those as successes) and of attempts picked only
// after their call ended, and could not tell an outrun attempt's failure from another's.
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
	// Every pod takes 20 ms: calls are hedged after 5 ms and mostly answered by the first
	// attempt, the hedge outrun; the slow pod's first attempts are overtaken by hedges.
	for _, p := range f.pods {
		p.Server.SetDelay(20 * time.Millisecond)
	}
	slow := f.pods[0].Addr
	f.pods[0].Server.SetDelay(200 * time.Millisecond)
	resetRecorded()
	obs.start()
	// One call at a time, so that the observer's n-th CallInfo is call n's.
	const calls = 120
	for i := range calls {
		cctx, cancel := context.WithTimeout(context.WithValue(ctx, callIDKey{}, i), 10*time.Second)
		_, err := c.SayHello(cctx, &echo.EchoRequest{Name: fmt.Sprint("call-", i)})
		cancel()
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	infos := obs.infos()
	if len(infos) != calls {
		t.Fatalf("observed %d calls, made %d", len(infos), calls)
	}

	// Done comes when an attempt's stream ends, after the call returned: wait until every
	// pick of every call has had its Done.
	var records map[int]callRecord
	for {
		recorded.mu.Lock()
		owed := 0
		records = map[int]callRecord{}
		for id, r := range recorded.calls {
			owed += r.picks - r.dones
			cp := *r
			cp.fails = map[string]int{}
			for a, n := range r.fails {
				cp.fails[a] = n
			}
			records[id] = cp
		}
		recorded.mu.Unlock()
		if owed == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the child still waits for %d Done reports", owed)
		case <-time.After(5 * time.Millisecond):
		}
	}

	var overtaken, outrun, slowFailed int
	for i, ci := range infos {
		rec, ok := records[i]
		if !ok {
			t.Fatalf("call %d: the child saw no pick", i)
		}
		pods := map[string]int{}
		for _, a := range ci.Attempts {
			if a.Addr != "" {
				pods[a.Addr]++
			}
		}
		for n, a := range ci.Attempts {
			if a.Addr == "" || pods[a.Addr] > 1 {
				// Never picked while the call ran (the child may see it later, and then
				// on a pod this call did not try), or sharing its pod with another
				// attempt of the call: its Done cannot be told apart.
				continue
			}
			switch {
			case n > ci.Winner:
				outrun++
				if rec.fails[a.Addr] > 0 {
					t.Errorf("call %d: attempt %d (%s), outrun by attempt %d, was reported to the child as failed", i, n, a.Addr, ci.Winner)
				}
			case n < ci.Winner:
				overtaken++
				// The slow pod, cancelled long before its answer, failed; another may
				// have answered before its cancellation took.
				if a.Addr == slow && rec.fails[a.Addr] > 0 {
					slowFailed++
				}
			}
		}
	}
	if overtaken == 0 || outrun == 0 {
		t.Fatalf("%d attempts overtaken, %d outrun: the test did not race attempts", overtaken, outrun)
	}
	if slowFailed == 0 {
		t.Fatalf("none of the %d overtaken attempts on the slow pod was reported failed", overtaken)
	}
	t.Logf("%d calls: %d attempts outrun, reported successful; %d overtaken, %d of them on the slow pod reported failed", calls, outrun, overtaken, slowFailed)
}
