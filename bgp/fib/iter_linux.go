package fib

import (
	"cmp"
	"iter"
	"maps"
	"slices"
)

// Deterministic iteration over the fact maps, so that requests go out in a
// stable order.

func cmpMAC(a, b mac) int { return slices.Compare(a[:], b[:]) }

func sortedNeigh[V any](m map[neighKey]V) iter.Seq2[neighKey, V] {
	return sortedBy(m, func(a, b neighKey) int {
		return cmp.Or(cmp.Compare(a.ifindex, b.ifindex), a.ip.Compare(b.ip))
	})
}

func sortedSelf[V any](m map[fdbKey]V) iter.Seq2[fdbKey, V] {
	return sortedBy(m, func(a, b fdbKey) int {
		return cmp.Or(cmp.Compare(a.ifindex, b.ifindex), cmpMAC(a.mac, b.mac))
	})
}

func sortedKeys(m map[masterKey]struct{}) iter.Seq2[masterKey, struct{}] {
	return sortedBy(m, func(a, b masterKey) int {
		return cmp.Or(cmp.Compare(a.ifindex, b.ifindex), cmpMAC(a.mac, b.mac), cmp.Compare(a.vlan, b.vlan))
	})
}

func sortedBy[K comparable, V any](m map[K]V, less func(a, b K) int) iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for _, k := range slices.SortedFunc(maps.Keys(m), less) {
			if !yield(k, m[k]) {
				return
			}
		}
	}
}
