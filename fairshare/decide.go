package fairshare

import (
	"cmp"
	"slices"
	"time"
)

// Conn is one of this backend's connections, as the decision sees it.
type Conn struct {
	// ID identifies the connection within this backend.
	ID uint64
	// Opened is when the connection was accepted.
	Opened time.Time
	// Calls counts the calls started on it since the previous round: how busy it is.
	Calls uint64
}

// Peer is another backend of the same Service and how many connections it holds.
type Peer struct {
	Name  string `json:"pod"`
	Conns int    `json:"conns"`
}

// Policy bounds the decision. Zero fields take the defaults of DefaultPolicy.
type Policy struct {
	// Tolerance: the fleet is balanced, and nothing is shed, while every pod holds between
	// mean/(1+Tolerance) and mean×(1+Tolerance) connections (0.25: 0.8× to 1.25×).
	Tolerance float64
	// MaxFraction bounds the connections shed in one round to max(1, ⌊MaxFraction × own⌋).
	MaxFraction float64
	// MaxPerRound bounds the connections shed in one round ("a few at a time").
	MaxPerRound int
	// MinAge: connections younger than this are never shed (a connection that just moved
	// here is not moved again at once). Unlike the other fields, zero means no minimum.
	MinAge time.Duration
}

// DefaultPolicy is the policy of a zero Policy.
func DefaultPolicy() Policy {
	return Policy{Tolerance: 0.25, MaxFraction: 0.25, MaxPerRound: 2, MinAge: 5 * time.Second}
}

func (p Policy) withDefaults() Policy {
	d := DefaultPolicy()
	if p.Tolerance <= 0 {
		p.Tolerance = d.Tolerance
	}
	if p.MaxFraction <= 0 {
		p.MaxFraction = d.MaxFraction
	}
	if p.MaxPerRound <= 0 {
		p.MaxPerRound = d.MaxPerRound
	}
	if p.MinAge < 0 {
		p.MinAge = 0
	}
	return p
}

// Input is everything one decision depends on.
type Input struct {
	// Self names this backend (so its own entry can be told apart from the peers').
	Self string
	// Own lists this backend's connections (not those already draining).
	Own []Conn
	// Peers are the other ready backends of the Service, with their connection counts.
	// A peer named Self is ignored.
	Peers []Peer
	// Now is the decision's time (for connection ages).
	Now time.Time
	// MinTotal, if above the counted total, is used as the fleet's total instead: clients
	// that were just shed or turned away are between pods and counted nowhere, and a total
	// that forgets them would set every share too low and shed too much. The Server passes
	// the largest total of the last rounds.
	MinTotal int
}

// Decision is what one backend should do now.
type Decision struct {
	// Pods and Total describe the fleet as seen: backends (this one included) and their
	// connections (at least Input.MinTotal); Mean is Total/Pods.
	Pods, Total int
	Mean        float64
	// Balanced reports that every pod is within tolerance of the mean: nothing is shed and
	// every new connection is welcome.
	Balanced bool
	// Share is this backend's fair share: its connection count once the fleet is leveled
	// (⌊Mean⌋ or ⌈Mean⌉; the pods holding the most keep the ⌈Mean⌉ places, so that leveling
	// moves as few connections as possible).
	Share int
	// Excess is how many connections this backend holds above its share.
	Excess int
	// Hungry reports that some pod holds fewer connections than its share.
	Hungry bool
	// Shed lists the connections to close gracefully now, busiest (then oldest) first, at
	// most the round's bound.
	Shed []uint64
}

// Admit reports whether a new connection should be kept when own connections are held now:
// always while the fleet is balanced or no pod is below its share; otherwise only if this
// backend is below its share. A refused connection is told to go away before it carries a
// call, so that its client reconnects through the Service again and lands elsewhere.
func (d Decision) Admit(own int) bool {
	return d.Balanced || !d.Hungry || own < d.Share
}

// Decide is the whole balancing policy, a pure function of this backend's connections, its
// peers' counts and the time.
//
// Every backend computes the same leveled plan from the same counts (pods sorted by count,
// then name), so without talking to each other they agree on who sheds and who receives:
// only backends above their share shed, and never below it. Nothing is shed while every pod
// is within tolerance, nor the last connection of a pod. A round sheds at most
// max(1, ⌊MaxFraction × own⌋) and MaxPerRound connections, none younger than MinAge.
func Decide(p Policy, in Input) Decision {
	p = p.withDefaults()
	type pod struct {
		name  string
		conns int
		self  bool
	}
	pods := []pod{{name: in.Self, conns: len(in.Own), self: true}}
	for _, peer := range in.Peers {
		if peer.Name == in.Self {
			continue
		}
		pods = append(pods, pod{name: peer.Name, conns: max(peer.Conns, 0)})
	}
	var d Decision
	d.Pods = len(pods)
	for _, pd := range pods {
		d.Total += pd.conns
	}
	d.Total = max(d.Total, in.MinTotal)
	d.Mean = float64(d.Total) / float64(d.Pods)
	lo, hi := d.Mean/(1+p.Tolerance), d.Mean*(1+p.Tolerance)
	d.Balanced = true
	for _, pd := range pods {
		if c := float64(pd.conns); c < lo || c > hi {
			d.Balanced = false
		}
	}
	// Leveled shares: ⌊T/n⌋ each, one more for the T mod n pods holding the most.
	slices.SortFunc(pods, func(a, b pod) int {
		if c := cmp.Compare(b.conns, a.conns); c != 0 {
			return c
		}
		return cmp.Compare(a.name, b.name)
	})
	base, extra := d.Total/d.Pods, d.Total%d.Pods
	own := len(in.Own)
	for i, pd := range pods {
		share := base
		if i < extra {
			share++
		}
		if pd.conns < share {
			d.Hungry = true
		}
		if pd.self {
			d.Share = share
			d.Excess = max(own-share, 0)
		}
	}
	if d.Balanced || d.Excess == 0 {
		return d
	}
	n := min(d.Excess, p.MaxPerRound, max(1, int(p.MaxFraction*float64(own))), own-1)
	cands := make([]Conn, 0, own)
	for _, c := range in.Own {
		if in.Now.Sub(c.Opened) >= p.MinAge {
			cands = append(cands, c)
		}
	}
	slices.SortFunc(cands, func(a, b Conn) int {
		if c := cmp.Compare(b.Calls, a.Calls); c != 0 {
			return c
		}
		if c := a.Opened.Compare(b.Opened); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	for _, c := range cands[:min(n, len(cands))] {
		d.Shed = append(d.Shed, c.ID)
	}
	return d
}
