package gobgp

import (
	"fmt"
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v3/api"
)

// The import allowance.
//
// GoBGP v3 evaluates import policies only for route-server clients per
// neighbour: for every other peer, propagateUpdate applies the policies
// assigned to the global RIB ("global" table id), whatever is assigned to the
// neighbour (pkg/server/server.go, propagateUpdate). So the allowance is one
// global import policy, importPolicyName, with per-peer statements:
//
//	neighbour N and prefix in N's IPv4 allowance -> accept
//	neighbour N and prefix in N's IPv6 allowance -> accept
//	neighbour N                                  -> reject
//
// and default action accept (peers without an allowance). Prefix sets use
// masklength ranges <len>..32 (or ..128): "equal or more specific". Paths of
// VRF peers are evaluated after GoBGP converted them to L3VPN; GoBGP's prefix
// condition matches VPN prefixes by their IP prefix, so the same statements
// work. EVPN routes from a peer with an allowance are rejected (a prefix
// condition never matches them): the allowance is meant for IP unicast
// sessions (machines, tenant routers).

const importPolicyName = "fabric-import"

// allowance is one peer's import allowance, keyed by its transport address.
type allowance struct {
	Neighbor netip.Addr
	Allowed  []netip.Prefix
}

// importPolicy builds the defined sets and the global import policy for the
// given allowances (pure; order-independent).
func importPolicy(as []allowance) ([]*api.DefinedSet, *api.Policy) {
	as = slices.Clone(as)
	slices.SortFunc(as, func(a, b allowance) int { return a.Neighbor.Compare(b.Neighbor) })
	var sets []*api.DefinedSet
	pol := &api.Policy{Name: importPolicyName}
	for _, a := range as {
		id := a.Neighbor.WithZone("").String()
		nset := "nbr-" + id
		sets = append(sets, &api.DefinedSet{
			DefinedType: api.DefinedType_NEIGHBOR,
			Name:        nset,
			List:        []string{netip.PrefixFrom(a.Neighbor.WithZone(""), a.Neighbor.BitLen()).String()},
		})
		var v4, v6 []*api.Prefix
		for _, p := range a.Allowed {
			p = p.Masked()
			if p.Addr().Is4() {
				v4 = append(v4, &api.Prefix{IpPrefix: p.String(), MaskLengthMin: uint32(p.Bits()), MaskLengthMax: 32})
			} else {
				v6 = append(v6, &api.Prefix{IpPrefix: p.String(), MaskLengthMin: uint32(p.Bits()), MaskLengthMax: 128})
			}
		}
		for _, fam := range []struct {
			name     string
			prefixes []*api.Prefix
		}{{"allow4-" + id, v4}, {"allow6-" + id, v6}} {
			if len(fam.prefixes) == 0 {
				continue
			}
			sets = append(sets, &api.DefinedSet{DefinedType: api.DefinedType_PREFIX, Name: fam.name, Prefixes: fam.prefixes})
			pol.Statements = append(pol.Statements, &api.Statement{
				Name: "accept-" + fam.name,
				Conditions: &api.Conditions{
					NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: nset},
					PrefixSet:   &api.MatchSet{Type: api.MatchSet_ANY, Name: fam.name},
				},
				Actions: &api.Actions{RouteAction: api.RouteAction_ACCEPT},
			})
		}
		pol.Statements = append(pol.Statements, &api.Statement{
			Name:       "reject-" + id,
			Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: nset}},
			Actions:    &api.Actions{RouteAction: api.RouteAction_REJECT},
		})
	}
	return sets, pol
}

// The global export policy, exportPolicyName, has two statements:
//
//   - valley-free: a path learned from an upstream peer (the AS after our
//     own in its AS path is an upstream peer's) is not passed on to an upstream
//     peer. A leaf does not carry one spine's routes to another spine, and
//     a firewall (whose upstreams are the leaves) is not a transit between
//     leaves. Without it, path hunting after a withdrawal left stale EVPN
//     routes in the fabric for good: GoBGP drops a path whose AS path holds
//     the receiving peer's AS before the export policy (isASLoop in
//     filterpath) and then withdraws nothing, so a peer keeps the path it
//     was sent before (seen in the lab: a firewall's default route stayed on
//     both leaves after the firewall withdrew it). A path rejected by the
//     export policy, by contrast, makes GoBGP withdraw what it sent before.
//   - EVPN next hop unchanged: GoBGP sets itself as next hop towards eBGP
//     peers; for EVPN the next hop is the VTEP the traffic is tunnelled to,
//     so a spine passing a leaf's type-5 route on must keep it (as FRR does
//     for EVPN).
const exportPolicyName = "fabric-export"

// upstream is an upstream underlay peer: its transport address and AS.
type upstream struct {
	Neighbor netip.Addr
	ASN      uint32
}

// exportPolicy builds the defined sets and the global export policy for the
// given upstream peers (pure; order-independent). Without upstream peers
// there is no valley-free statement (GoBGP matches an empty set as "any").
func exportPolicy(up []upstream) ([]*api.DefinedSet, *api.Policy) {
	pol := &api.Policy{Name: exportPolicyName}
	var sets []*api.DefinedSet
	if len(up) > 0 {
		var nbrs, paths []string
		for _, u := range up {
			nbrs = append(nbrs, netip.PrefixFrom(u.Neighbor.WithZone(""), u.Neighbor.BitLen()).String())
			// GoBGP applies the export policy after prepending our own
			// AS: the AS the path was learned from is the second one.
			paths = append(paths, fmt.Sprintf("^[0-9]+_%d_", u.ASN))
		}
		slices.Sort(nbrs)
		slices.Sort(paths)
		sets = []*api.DefinedSet{
			{DefinedType: api.DefinedType_NEIGHBOR, Name: "fabric-upstream", List: slices.Compact(nbrs)},
			{DefinedType: api.DefinedType_AS_PATH, Name: "fabric-from-upstream", List: slices.Compact(paths)},
		}
		pol.Statements = append(pol.Statements, &api.Statement{
			Name: "valley-free",
			Conditions: &api.Conditions{
				NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: "fabric-upstream"},
				AsPathSet:   &api.MatchSet{Type: api.MatchSet_ANY, Name: "fabric-from-upstream"},
			},
			Actions: &api.Actions{RouteAction: api.RouteAction_REJECT},
		})
	}
	pol.Statements = append(pol.Statements, &api.Statement{
		Name: "evpn-nexthop-unchanged",
		Conditions: &api.Conditions{
			AfiSafiIn: []*api.Family{{Afi: api.Family_AFI_L2VPN, Safi: api.Family_SAFI_EVPN}},
		},
		Actions: &api.Actions{
			RouteAction: api.RouteAction_NONE,
			Nexthop:     &api.NexthopAction{Unchanged: true},
		},
	})
	return sets, pol
}
