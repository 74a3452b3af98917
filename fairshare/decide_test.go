package fairshare

import (
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// conns returns n connections opened an hour before t0; calls[i] (if given) is conn i+1's
// recent call count.
func conns(n int, calls ...uint64) []Conn {
	out := make([]Conn, n)
	for i := range out {
		out[i] = Conn{ID: uint64(i + 1), Opened: t0.Add(-time.Hour + time.Duration(i)*time.Second)}
		if i < len(calls) {
			out[i].Calls = calls[i]
		}
	}
	return out
}

func peers(counts ...int) []Peer {
	out := make([]Peer, len(counts))
	for i, c := range counts {
		out[i] = Peer{Name: string(rune('b' + i)), Conns: c}
	}
	return out
}

func TestDecide(t *testing.T) {
	young := conns(8)
	for i := range young {
		young[i].Opened = t0.Add(-time.Second)
	}
	for _, tc := range []struct {
		name     string
		policy   Policy
		own      []Conn
		peers    []Peer
		balanced bool
		share    int
		shed     []uint64
		admit    bool // Admit(len(own))
	}{
		{"every pod within tolerance: nothing shed", Policy{}, conns(6), peers(5, 4, 5, 5), true, 5, nil, true},
		{"scale-up 5→8: above share, sheds a few, busiest first", Policy{}, conns(8, 1, 9, 3, 9, 0, 0, 0, 0), peers(8, 8, 8, 8, 0, 0, 0), false, 5, []uint64{2, 4}, false},
		{"oldest first among equally busy", Policy{}, conns(8), peers(8, 8, 8, 8, 0, 0, 0), false, 5, []uint64{1, 2}, false},
		{"bounded by the fraction", Policy{MaxFraction: 0.1, MaxPerRound: 10}, conns(20), peers(0, 0, 0), false, 5, []uint64{1, 2}, false},
		{"bounded by the per-round count", Policy{MaxFraction: 1, MaxPerRound: 3}, conns(20), peers(0, 0, 0), false, 5, []uint64{1, 2, 3}, false},
		{"at least one per round on a small pod", Policy{}, conns(3), peers(0, 0), false, 1, []uint64{1}, false},
		{"below share: never sheds, admits", Policy{}, conns(2), peers(8, 8, 8, 8, 8, 0, 6), false, 6, nil, true},
		{"the only connection on its pod is never shed", Policy{}, conns(1), peers(0), false, 1, nil, true},
		{"one connection, many empty pods", Policy{}, conns(1), peers(0, 0, 0, 0), false, 1, nil, true},
		{"leveled but outside tolerance (integers): nothing to shed", Policy{}, conns(2), peers(1), false, 2, nil, true},
		{"at share while another pod is hungry: keeps, refuses newcomers", Policy{}, conns(5), peers(7, 7, 6, 6, 5, 4, 0), false, 5, nil, false},
		{"young connections are not shed", Policy{MinAge: 5 * time.Second}, young, peers(8, 8, 8, 8, 0, 0, 0), false, 5, nil, false},
		{"no peers: alone, balanced", Policy{}, conns(4), nil, true, 4, nil, true},
		{"a peer named like me is ignored", Policy{}, conns(5), []Peer{{Name: "a", Conns: 100}, {Name: "b", Conns: 5}}, true, 5, nil, true},
		{"ties at the ceiling go to the pods holding most", Policy{}, conns(6), peers(6, 6, 1), false, 5, []uint64{1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.policy, Input{Self: "a", Own: tc.own, Peers: tc.peers, Now: t0})
			if d.Balanced != tc.balanced || d.Share != tc.share || !slices.Equal(d.Shed, tc.shed) || d.Admit(len(tc.own)) != tc.admit {
				t.Errorf("Decide = balanced %v share %d shed %v admit %v; want %v %d %v %v (%+v)",
					d.Balanced, d.Share, d.Shed, d.Admit(len(tc.own)), tc.balanced, tc.share, tc.shed, tc.admit, d)
			}
		})
	}
}

// TestDecideConverges plays rounds where every pod decides from the same counts and every shed
// connection lands on a random pod that admits it (as through a VIP): the fleet levels, the
// moves stay within 2× the minimum, and a balanced fleet then sheds nothing.
func TestDecideConverges(t *testing.T) {
	for _, start := range [][]int{{8, 8, 8, 8, 8, 0, 0, 0}, {12, 5, 9, 8, 6, 0, 0, 0}, {40, 0, 0, 0, 0, 0, 0, 0}, {6, 6, 6, 6, 6, 5, 5, 0}} {
		counts := slices.Clone(start)
		minMoves := movesNeeded(counts, 0.25)
		names := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
		seed := uint64(1)
		next := func(n int) int {
			seed = seed*6364136223846793005 + 1442695040888963407
			return int((seed >> 33) % uint64(n))
		}
		sheds, rounds := 0, 0
		for ; rounds < 200; rounds++ {
			var moving int
			ds := make([]Decision, len(counts))
			for i := range counts {
				var ps []Peer
				for j := range counts {
					if j != i {
						ps = append(ps, Peer{Name: names[j], Conns: counts[j]})
					}
				}
				ds[i] = Decide(Policy{MinAge: 0}, Input{Self: names[i], Own: conns(counts[i]), Peers: ps, Now: t0})
			}
			for i, d := range ds {
				counts[i] -= len(d.Shed)
				moving += len(d.Shed)
			}
			sheds += moving
			if moving == 0 && ds[0].Balanced {
				break
			}
			for range moving { // each lands at random; pods refuse while at their share and someone is hungry
				for tries := 0; ; tries++ {
					j := next(len(counts))
					if ds[j].Admit(counts[j]) || tries > 100 {
						counts[j]++
						break
					}
				}
			}
		}
		d := Decide(Policy{}, Input{Self: names[0], Own: conns(counts[0]), Peers: peers(counts[1:]...), Now: t0})
		if !d.Balanced {
			t.Errorf("%v: after %d rounds %v is not balanced", start, rounds, counts)
		}
		if sheds > 2*minMoves {
			t.Errorf("%v → %v: %d sheds, more than 2× the %d moves needed", start, counts, sheds, minMoves)
		}
		t.Logf("%v → %v in %d rounds, %d sheds (minimum %d)", start, counts, rounds, sheds, minMoves)
	}
}

// movesNeeded is the least number of connection moves that bring every count within
// [mean/(1+tol), mean×(1+tol)].
func movesNeeded(counts []int, tol float64) int {
	total := 0
	for _, c := range counts {
		total += c
	}
	mean := float64(total) / float64(len(counts))
	lo, hi := mean/(1+tol), mean*(1+tol)
	var over, under int
	for _, c := range counts {
		if f := float64(c); f > hi {
			over += c - int(hi)
		} else if f < lo {
			under += int(lo+0.999999) - c
		}
	}
	return max(over, under)
}
