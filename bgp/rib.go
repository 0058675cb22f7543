package bgp

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"

	"github.com/metalfabric/fabric/bgp/fib"
)

// This file is the pure part of the reconciler: the view of the speaker's
// best paths, and what follows from it for one destination (kernel route,
// EVPN export, import handed to machines). No I/O.

type vrfPrefix struct {
	VRF    string
	Prefix netip.Prefix
}

type evpnKey struct {
	RD     string
	Prefix netip.Prefix
}

// RouteKey identifies a kernel route.
type RouteKey struct {
	Table  uint32
	Prefix netip.Prefix
}

// remoteKey identifies an EVPN remote VTEP entry (all of fib.Remote: an
// entry whose SVI or VLAN changed is another entry).
type remoteKey struct {
	VXLAN string
	VTEP  netip.Addr
	MAC   string
	SVI   string
	VLAN  uint16
}

// rib holds the received best paths (paths we originated are left out).
type rib struct {
	global       map[netip.Prefix][]Path
	vrf          map[vrfPrefix][]Path
	evpn         map[evpnKey][]Path
	evpnByPrefix map[netip.Prefix]map[string]struct{}
}

func newRIB() *rib {
	return &rib{
		global:       make(map[netip.Prefix][]Path),
		vrf:          make(map[vrfPrefix][]Path),
		evpn:         make(map[evpnKey][]Path),
		evpnByPrefix: make(map[netip.Prefix]map[string]struct{}),
	}
}

// scope is what one update can change: a kernel route in the main table, a
// VRF destination (route, export), or an EVPN prefix (routes and imports in
// every VRF whose VNI it carries).
type scope struct {
	global map[netip.Prefix]struct{}
	vrf    map[vrfPrefix]struct{}
	evpn   map[netip.Prefix]struct{}
}

func newScope() scope {
	return scope{global: map[netip.Prefix]struct{}{}, vrf: map[vrfPrefix]struct{}{}, evpn: map[netip.Prefix]struct{}{}}
}

func (s scope) empty() bool { return len(s.global)+len(s.vrf)+len(s.evpn) == 0 }

// apply records one update and adds what it touched to s.
func (r *rib) apply(u Update, s scope) {
	// Share the update's slice unless there are local paths to drop (the
	// RIB never modifies a stored slice, and updates are not reused).
	paths := u.Paths
	if slices.ContainsFunc(paths, func(p Path) bool { return p.Local }) {
		paths = slices.DeleteFunc(slices.Clone(paths), func(p Path) bool { return p.Local })
	}
	switch {
	case u.Family == EVPN:
		k := evpnKey{RD: u.RD, Prefix: u.Prefix}
		if len(paths) == 0 {
			delete(r.evpn, k)
			if rds := r.evpnByPrefix[u.Prefix]; rds != nil {
				delete(rds, u.RD)
				if len(rds) == 0 {
					delete(r.evpnByPrefix, u.Prefix)
				}
			}
		} else {
			r.evpn[k] = paths
			if r.evpnByPrefix[u.Prefix] == nil {
				r.evpnByPrefix[u.Prefix] = make(map[string]struct{})
			}
			r.evpnByPrefix[u.Prefix][u.RD] = struct{}{}
		}
		s.evpn[u.Prefix] = struct{}{}
	case u.VRF != "":
		k := vrfPrefix{VRF: u.VRF, Prefix: u.Prefix}
		if len(paths) == 0 {
			delete(r.vrf, k)
		} else {
			r.vrf[k] = paths
		}
		s.vrf[k] = struct{}{}
	default:
		if len(paths) == 0 {
			delete(r.global, u.Prefix)
		} else {
			r.global[u.Prefix] = paths
		}
		s.global[u.Prefix] = struct{}{}
	}
}

// nextHops turns received unicast paths into kernel next hops: the BGP next
// hop on the session's link (an IPv6 link-local next hop of an IPv4 route
// is RFC 5549), deduplicated and sorted.
func nextHops(paths []Path) []fib.NextHop {
	var out []fib.NextHop
	for _, p := range paths {
		if !p.NextHop.IsValid() || p.NextHop.IsUnspecified() {
			continue
		}
		nh := fib.NextHop{Addr: p.NextHop.WithZone(""), Interface: p.Interface}
		if !slices.Contains(out, nh) {
			out = append(out, nh)
		}
	}
	slices.SortFunc(out, compareNextHop)
	return out
}

func compareNextHop(a, b fib.NextHop) int {
	return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Interface, b.Interface))
}

// evpnImports returns the received type-5 paths of prefix that carry a
// route target of vni, skipping our own VTEP.
func (r *rib) evpnImports(prefix netip.Prefix, vni uint32, self netip.Addr) []Path {
	var out []Path
	for _, rd := range slices.Sorted(maps.Keys(r.evpnByPrefix[prefix])) {
		for _, p := range r.evpn[evpnKey{RD: rd, Prefix: prefix}] {
			if p.NextHop == self || !p.NextHop.Is4() || len(p.RouterMAC) != 6 {
				continue
			}
			if slices.ContainsFunc(p.RouteTargets, func(rt string) bool { return MatchRT(rt, vni) }) {
				out = append(out, p)
			}
		}
	}
	return out
}

// vrfOutcome is what one VRF destination asks for.
type vrfOutcome struct {
	route   *fib.Route
	remotes []fib.Remote
	// export is the type-5 route we originate for a machine's prefix.
	export *Path
	// inject is the VRF route we originate so the VRF's machines learn a
	// prefix imported over EVPN.
	inject *Path
}

// vrfDestination derives what a VRF destination asks for: the machines'
// own announcements win (kernel route via the machine, exported as type-5);
// otherwise type-5 imports give a symmetric-IRB route via the remote VTEPs
// on the L3VNI SVI (ECMP over several), and are handed to the machines.
func (r *rib) vrfDestination(d *Desired, v TenantVRF, prefix netip.Prefix) vrfOutcome {
	var out vrfOutcome
	if slices.Contains(v.Originate, prefix) {
		// Our own origination: exported, neither installed nor imported.
		if v.evpn() {
			out.export = d.export(v, prefix)
		}
		return out
	}
	if paths := r.vrf[vrfPrefix{VRF: v.Name, Prefix: prefix}]; len(paths) > 0 {
		if nhs := nextHops(paths); len(nhs) > 0 {
			out.route = &fib.Route{Table: v.Table, Prefix: prefix, NextHops: nhs}
		}
		if v.evpn() {
			out.export = d.export(v, prefix)
		}
	}
	if !v.evpn() {
		return out
	}
	imports := r.evpnImports(prefix, v.VNI, d.VTEP)
	if len(imports) == 0 {
		return out
	}
	out.inject = &Path{Family: IPv4Unicast, VRF: v.Name, Prefix: prefix, LocalPref: importLocalPref}
	if prefix.Addr().Is6() {
		out.inject.Family = IPv6Unicast
	}
	if out.route != nil {
		return out
	}
	route := fib.Route{Table: v.Table, Prefix: prefix}
	for _, p := range imports {
		nh := fib.NextHop{Addr: p.NextHop, Interface: v.SVI, OnLink: true}
		if slices.Contains(route.NextHops, nh) {
			continue
		}
		route.NextHops = append(route.NextHops, nh)
		out.remotes = append(out.remotes, fib.Remote{VTEP: p.NextHop, RouterMAC: p.RouterMAC, SVI: v.SVI, VXLAN: v.VXLAN, VLAN: v.VLAN})
	}
	slices.SortFunc(route.NextHops, compareNextHop)
	out.route = &route
	return out
}

// export is the type-5 route d originates for prefix in v.
func (d *Desired) export(v TenantVRF, prefix netip.Prefix) *Path {
	return &Path{
		Family: EVPN, Prefix: prefix, NextHop: d.VTEP, RD: RD(d.RouterID, v.VNI),
		RouteTargets: []string{RT(d.ASN, v.VNI)}, RouterMAC: v.RouterMAC, VNI: v.VNI,
	}
}

// globalRoute derives the main-table route of a global prefix.
func (r *rib) globalRoute(prefix netip.Prefix) *fib.Route {
	nhs := nextHops(r.global[prefix])
	if len(nhs) == 0 {
		return nil
	}
	return &fib.Route{Table: MainTable, Prefix: prefix, NextHops: nhs}
}

func (k remoteKey) of(rm fib.Remote) remoteKey {
	return remoteKey{VXLAN: rm.VXLAN, VTEP: rm.VTEP, MAC: rm.RouterMAC.String(), SVI: rm.SVI, VLAN: rm.VLAN}
}

func sameRoute(a, b fib.Route) bool {
	return a.Table == b.Table && a.Prefix == b.Prefix && slices.Equal(a.NextHops, b.NextHops)
}

// sameNLRI reports whether two originated paths are the same destination
// to the speaker (which matches by family, VRF, RD and prefix).
func sameNLRI(a, b Path) bool {
	return a.Family == b.Family && a.VRF == b.VRF && a.RD == b.RD && a.Prefix == b.Prefix
}

func samePath(a, b Path) bool {
	return a.Family == b.Family && a.VRF == b.VRF && a.Prefix == b.Prefix && a.NextHop == b.NextHop &&
		a.RD == b.RD && slices.Equal(a.RouteTargets, b.RouteTargets) && a.RouterMAC.String() == b.RouterMAC.String() &&
		a.VNI == b.VNI && a.LocalPref == b.LocalPref
}
