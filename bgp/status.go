package bgp

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Status is the routing state an agent reports.
type Status struct {
	Sessions []SessionStatus
	// RoutesInstalled counts kernel routes the reconciler installed.
	RoutesInstalled int
	// Failed lists routes that failed to install ("10.0.0.1/32 table 10:
	// reason"), sorted, at most maxFailedListed.
	Failed      []string
	FailedCount int
	// EVPNExported and EVPNImported count type-5 routes originated, and
	// VRF destinations installed from type-5 imports.
	EVPNExported int
	EVPNImported int
}

// SessionStatus is a session's state plus the routes it got into the
// kernel.
type SessionStatus struct {
	PeerState
	Installed int
}

const maxFailedListed = 10

// Status returns the sessions' states and the FIB counters.
func (r *Reconciler) Status(ctx context.Context) (Status, error) {
	r.mu.Lock()
	started := r.started
	installedBy := make(map[PeerKey]int)
	count := func(paths []Path) {
		seen := make(map[PeerKey]bool)
		for _, p := range paths {
			if !seen[p.Peer] {
				seen[p.Peer] = true
				installedBy[p.Peer]++
			}
		}
	}
	for p := range r.rib.global {
		if _, ok := r.installed[RouteKey{Table: MainTable, Prefix: p}]; ok {
			count(r.rib.global[p])
		}
	}
	imported := 0
	for k, paths := range r.rib.vrf {
		if v, ok := r.vrfs[k.VRF]; ok {
			if _, ok := r.installed[RouteKey{Table: v.Table, Prefix: k.Prefix}]; ok {
				count(paths)
			}
		}
	}
	for k := range r.injects {
		if v, ok := r.vrfs[k.VRF]; ok {
			if _, ok := r.installed[RouteKey{Table: v.Table, Prefix: k.Prefix}]; ok {
				imported++
			}
		}
	}
	st := Status{RoutesInstalled: len(r.installed), FailedCount: len(r.failed), EVPNExported: len(r.exports), EVPNImported: imported}
	for _, k := range slices.SortedFunc(maps.Keys(r.failed), func(a, b RouteKey) int {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	}) {
		if len(st.Failed) == maxFailedListed {
			break
		}
		st.Failed = append(st.Failed, fmt.Sprintf("%s table %d: %v", k.Prefix, k.Table, r.failed[k]))
	}
	r.mu.Unlock()
	if !started {
		return st, nil
	}
	peers, err := r.sp.Peers(ctx)
	if err != nil {
		return st, fmt.Errorf("reading BGP sessions: %w", err)
	}
	for _, p := range peers {
		st.Sessions = append(st.Sessions, SessionStatus{PeerState: p, Installed: installedBy[p.Key]})
	}
	slices.SortFunc(st.Sessions, func(a, b SessionStatus) int { return comparePeerKey(a.Key, b.Key) })
	return st, nil
}
