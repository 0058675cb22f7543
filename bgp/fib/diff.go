package fib

import (
	"cmp"
	"fmt"
	"slices"
)

// routePlan is the difference between the routes we want and the routes of
// ours that the kernel has. It is computed by a pure function and applied
// adds first: set, then del.
type routePlan struct {
	set       []Route // to add (key absent from installed) or replace (key present)
	del       []Route // installed and not desired
	unchanged int
	invalid   []RouteFailure // desired routes that cannot be expressed
}

// diffRoutes compares desired routes with the installed ones (normalised,
// keyed by table and prefix). When desired names one table and prefix more
// than once, the last one wins. The result is sorted by table and prefix so
// that it is deterministic.
func diffRoutes(desired []Route, installed map[routeKey]Route) routePlan {
	var p routePlan
	want := make(map[routeKey]Route, len(desired))
	for _, r := range desired {
		if err := r.validate(); err != nil {
			p.invalid = append(p.invalid, RouteFailure{Route: r, Err: fmt.Errorf("installing %s: %w", r.where(), err)})
			continue
		}
		n := r.normalize()
		want[n.key()] = n
	}
	for k, r := range want {
		if cur, ok := installed[k]; ok && cur.equal(r) {
			p.unchanged++
			continue
		}
		p.set = append(p.set, r)
	}
	for k, r := range installed {
		if _, ok := want[k]; !ok {
			p.del = append(p.del, r)
		}
	}
	sortRoutes(p.set)
	sortRoutes(p.del)
	return p
}

func sortRoutes(rs []Route) {
	slices.SortFunc(rs, func(a, b Route) int {
		if c := cmp.Compare(a.table(), b.table()); c != 0 {
			return c
		}
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
	})
}

// diffBatch is the plan of an incremental change: the routes of set that
// differ from what is installed, and the installed routes named by del
// (unless set names them too; set wins, and within set the last one wins).
func diffBatch(set, del []Route, installed map[routeKey]Route) routePlan {
	var p routePlan
	want := make(map[routeKey]Route, len(set))
	for _, r := range set {
		if err := r.validate(); err != nil {
			p.invalid = append(p.invalid, RouteFailure{Route: r, Err: fmt.Errorf("installing %s: %w", r.where(), err)})
			continue
		}
		n := r.normalize()
		want[n.key()] = n
	}
	for k, r := range want {
		if cur, ok := installed[k]; ok && cur.equal(r) {
			p.unchanged++
			continue
		}
		p.set = append(p.set, r)
	}
	seen := make(map[routeKey]bool, len(del))
	for _, r := range del {
		k := r.key()
		if _, ok := want[k]; ok || seen[k] {
			continue
		}
		seen[k] = true
		if cur, ok := installed[k]; ok {
			p.del = append(p.del, cur)
		}
	}
	sortRoutes(p.set)
	sortRoutes(p.del)
	return p
}
