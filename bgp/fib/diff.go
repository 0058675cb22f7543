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
	set       []Route // to add (key absent from installed) or replace (key present), in the order given
	del       []Route // installed and not wanted, sorted by table and prefix
	unchanged int
	invalid   []RouteFailure // wanted routes that cannot be expressed
}

// wanted validates and normalises routes, and drops all but the last of
// those that name the same table and prefix (keeping the first's place).
func wanted(routes []Route, in *hopInterner) (norm []Route, keys []routeKey, index map[routeKey]int, invalid []RouteFailure) {
	norm = make([]Route, 0, len(routes))
	keys = make([]routeKey, 0, len(routes))
	index = make(map[routeKey]int, len(routes))
	for _, r := range routes {
		if err := r.validate(); err != nil {
			invalid = append(invalid, RouteFailure{Route: r, Err: fmt.Errorf("installing %s: %w", r.where(), err)})
			continue
		}
		n := r.normalize(in)
		k := n.key()
		if i, ok := index[k]; ok {
			norm[i] = n
			continue
		}
		index[k] = len(norm)
		norm, keys = append(norm, n), append(keys, k)
	}
	return norm, keys, index, invalid
}

// diffRoutes compares the wanted routes with the installed ones (normalised,
// keyed by table and prefix): a full resync. When routes names one table
// and prefix more than once, the last one wins.
func diffRoutes(routes []Route, installed map[routeKey]Route, in *hopInterner) routePlan {
	var p routePlan
	norm, keys, index, invalid := wanted(routes, in)
	p.invalid = invalid
	p.set = norm[:0] // compacted in place
	for i, n := range norm {
		if cur, ok := installed[keys[i]]; ok && cur.equal(n) {
			p.unchanged++
			continue
		}
		p.set = append(p.set, n)
	}
	for k, r := range installed {
		if _, ok := index[k]; !ok {
			p.del = append(p.del, r)
		}
	}
	sortRoutes(p.del)
	return p
}

// diffBatch is the plan of an incremental change: the routes of set that
// differ from what is installed, and the installed routes named by del
// (unless set names them too: set wins; within set the last one wins).
func diffBatch(set, del []Route, installed map[routeKey]Route, in *hopInterner) routePlan {
	var p routePlan
	norm, keys, index, invalid := wanted(set, in)
	p.invalid = invalid
	p.set = norm[:0] // compacted in place
	for i, n := range norm {
		if cur, ok := installed[keys[i]]; ok && cur.equal(n) {
			p.unchanged++
			continue
		}
		p.set = append(p.set, n)
	}
	seen := make(map[routeKey]bool)
	for _, r := range del {
		k := r.key()
		if _, ok := index[k]; ok || seen[k] {
			continue
		}
		if cur, ok := installed[k]; ok {
			seen[k] = true
			p.del = append(p.del, cur)
		}
	}
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
