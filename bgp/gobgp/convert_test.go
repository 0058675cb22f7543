package gobgp

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	pkt "github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/metalfabric/fabric/bgp"
)

func TestParseRT(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		err     bool
	}{
		{in: "65001:100", out: "65001:100"},
		{in: bgp.RT(4200000001, 100010), out: "59905:100010"}, // 32-bit local administrator
		{in: "4200000001:100", out: "4200000001:100"},
		{in: "10.0.0.1:7", out: "10.0.0.1:7"},
		{in: "4200000001:100010", err: true},
		{in: "65001", err: true},
		{in: "x:1", err: true},
	} {
		ec, err := parseRT(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("parseRT(%q) error %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		if got, ok := formatRT(ec); !ok || got != tc.out {
			t.Errorf("parseRT(%q) formats as %q (%v), want %q", tc.in, got, ok, tc.out)
		}
	}
}

func TestParseRD(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		err     bool
	}{
		{in: "10.255.0.1:100", out: "10.255.0.1:100"},
		{in: "65001:100010", out: "65001:100010"},
		{in: "4200000001:7", out: "4200000001:7"},
		// bgp.RD keeps a VNI above 65535 to its low 16 bits, so it fits a
		// type-1 RD; a longer assigned number would be truncated by
		// GoBGP silently and is refused.
		{in: bgp.RD(netip.MustParseAddr("10.255.0.1"), 100010), out: "10.255.0.1:34474"},
		{in: "10.255.0.1:100010", err: true},
		{in: "4200000001:100010", err: true},
		{in: "nonsense", err: true},
	} {
		rd, err := parseRD(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("parseRD(%q) error %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if err == nil && formatRD(rd) != tc.out {
			t.Errorf("parseRD(%q) = %s, want %s", tc.in, rd, tc.out)
		}
	}
}

// roundTrip converts an originated path to GoBGP's API form, as a peer
// would receive it, and decodes it back.
func roundTrip(t *testing.T, p bgp.Path, neighbor string) decoded {
	t.Helper()
	ap, err := apiPath(p)
	if err != nil {
		t.Fatalf("apiPath(%+v): %v", p, err)
	}
	ap.NeighborIp = neighbor
	d, err := decodePath(ap)
	if err != nil {
		t.Fatalf("decodePath: %v", err)
	}
	return d
}

func TestPathRoundTrip(t *testing.T) {
	mac, _ := net.ParseMAC("02:aa:bb:cc:dd:01")
	for _, tc := range []struct {
		name     string
		in       bgp.Path
		neighbor string
		want     decoded
	}{{
		name: "ipv4 self",
		in:   bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.1/32")},
		want: decoded{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.1/32"), NextHop: addr("0.0.0.0"), Local: true},
	}, {
		name:     "ipv4 with IPv6 next hop (RFC 5549)",
		in:       bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.0/24"), NextHop: addr("fe80::1")},
		neighbor: "fe80::1",
		want:     decoded{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.0/24"), NextHop: addr("fe80::1"), Neighbor: addr("fe80::1")},
	}, {
		name: "ipv6 masks the prefix",
		in:   bgp.Path{Family: bgp.IPv6Unicast, Prefix: pfx("2001:db8::1/64"), NextHop: addr("2001:db8::ff")},
		want: decoded{Family: bgp.IPv6Unicast, Prefix: pfx("2001:db8::/64"), NextHop: addr("2001:db8::ff"), Local: true},
	}, {
		name: "evpn type-5",
		in: bgp.Path{Family: bgp.EVPN, Prefix: pfx("192.168.10.0/24"), NextHop: addr("10.255.0.1"), RD: "10.255.0.1:10",
			RouteTargets: []string{"59905:100010"}, RouterMAC: mac, VNI: 100010},
		neighbor: "10.0.0.1",
		want: decoded{Family: bgp.EVPN, RD: "10.255.0.1:10", Prefix: pfx("192.168.10.0/24"), NextHop: addr("10.255.0.1"),
			RTs: []string{"59905:100010"}, MAC: mac, VNI: 100010, Neighbor: addr("10.0.0.1")},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, roundTrip(t, tc.in, tc.neighbor), pathOpts); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

// TestType5Encoding checks the wire attributes FRR expects for a type-5
// route: ESI 0, Ethernet tag 0, gateway 0, label = VNI, RT + VXLAN encap
// (tunnel type 8) + router MAC extended communities, next hop = VTEP.
func TestType5Encoding(t *testing.T) {
	mac, _ := net.ParseMAC("02:aa:bb:cc:dd:01")
	nlri, attrs, err := nativePath(bgp.Path{Family: bgp.EVPN, Prefix: pfx("192.168.10.0/24"), NextHop: addr("10.255.0.2"),
		RD: "10.255.0.2:10", RouteTargets: []string{"65002:100010"}, RouterMAC: mac, VNI: 100010})
	if err != nil {
		t.Fatal(err)
	}
	r := nlri.(*pkt.EVPNNLRI).RouteTypeData.(*pkt.EVPNIPPrefixRoute)
	type t5 struct {
		RD, ESI, GW, Prefix string
		Tag, Label          uint32
		NextHop             string
		ECs                 []string
	}
	got := t5{RD: formatRD(r.RD), ESI: r.ESI.String(), GW: r.GWIPAddress.String(), Prefix: r.IPPrefix.String(), Tag: r.ETag, Label: r.Label}
	for _, a := range attrs {
		switch a := a.(type) {
		case *pkt.PathAttributeMpReachNLRI:
			got.NextHop = a.Nexthop.String()
		case *pkt.PathAttributeExtendedCommunities:
			for _, ec := range a.Value {
				got.ECs = append(got.ECs, ec.String())
			}
		}
	}
	want := t5{RD: "10.255.0.2:10", ESI: "single-homed", GW: "0.0.0.0", Prefix: "192.168.10.0", Label: 100010,
		NextHop: "10.255.0.2", ECs: []string{"65002:100010", "VXLAN", "router's mac: 02:aa:bb:cc:dd:01"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
}

func TestNativePathErrors(t *testing.T) {
	mac, _ := net.ParseMAC("02:aa:bb:cc:dd:01")
	good := bgp.Path{Family: bgp.EVPN, Prefix: pfx("192.168.10.0/24"), NextHop: addr("10.255.0.2"), RD: "10.255.0.2:10", RouteTargets: []string{"65002:1"}, RouterMAC: mac, VNI: 1}
	for name, mut := range map[string]func(*bgp.Path){
		"no RD":        func(p *bgp.Path) { p.RD = "" },
		"no VTEP":      func(p *bgp.Path) { p.NextHop = netip.Addr{} },
		"VNI 0":        func(p *bgp.Path) { p.VNI = 0 },
		"VNI too big":  func(p *bgp.Path) { p.VNI = 1 << 24 },
		"no MAC":       func(p *bgp.Path) { p.RouterMAC = nil },
		"bad RT":       func(p *bgp.Path) { p.RouteTargets = []string{"x"} },
		"v6 in v4":     func(p *bgp.Path) { p.Family, p.Prefix = bgp.IPv4Unicast, pfx("2001:db8::/64") },
		"bad family":   func(p *bgp.Path) { p.Family = "ipv4-flowspec" },
		"invalid pfx":  func(p *bgp.Path) { p.Prefix = netip.Prefix{} },
		"v4 in v6 fam": func(p *bgp.Path) { p.Family, p.Prefix = bgp.IPv6Unicast, pfx("10.0.0.0/8") },
	} {
		p := good
		mut(&p)
		if _, _, err := nativePath(p); err == nil {
			t.Errorf("%s: nativePath accepted %+v", name, p)
		}
	}
	if _, _, err := nativePath(good); err != nil {
		t.Errorf("good path: %v", err)
	}
}

func TestImportPolicy(t *testing.T) {
	sets, pol := importPolicy([]allowance{
		{Neighbor: addr("fe80::2"), Allowed: []netip.Prefix{}},
		{Neighbor: addr("10.0.0.1"), Allowed: []netip.Prefix{pfx("10.2.0.1/24"), pfx("2001:db8:2::/48")}},
	})
	match := func(n string) *api.MatchSet { return &api.MatchSet{Type: api.MatchSet_ANY, Name: n} }
	wantSets := []*api.DefinedSet{
		{DefinedType: api.DefinedType_NEIGHBOR, Name: "nbr-10.0.0.1", List: []string{"10.0.0.1/32"}},
		{DefinedType: api.DefinedType_PREFIX, Name: "allow4-10.0.0.1", Prefixes: []*api.Prefix{{IpPrefix: "10.2.0.0/24", MaskLengthMin: 24, MaskLengthMax: 32}}},
		{DefinedType: api.DefinedType_PREFIX, Name: "allow6-10.0.0.1", Prefixes: []*api.Prefix{{IpPrefix: "2001:db8:2::/48", MaskLengthMin: 48, MaskLengthMax: 128}}},
		{DefinedType: api.DefinedType_NEIGHBOR, Name: "nbr-fe80::2", List: []string{"fe80::2/128"}},
	}
	wantPol := &api.Policy{Name: importPolicyName, Statements: []*api.Statement{
		{Name: "accept-allow4-10.0.0.1", Conditions: &api.Conditions{NeighborSet: match("nbr-10.0.0.1"), PrefixSet: match("allow4-10.0.0.1")}, Actions: &api.Actions{RouteAction: api.RouteAction_ACCEPT}},
		{Name: "accept-allow6-10.0.0.1", Conditions: &api.Conditions{NeighborSet: match("nbr-10.0.0.1"), PrefixSet: match("allow6-10.0.0.1")}, Actions: &api.Actions{RouteAction: api.RouteAction_ACCEPT}},
		{Name: "reject-10.0.0.1", Conditions: &api.Conditions{NeighborSet: match("nbr-10.0.0.1")}, Actions: &api.Actions{RouteAction: api.RouteAction_REJECT}},
		{Name: "reject-fe80::2", Conditions: &api.Conditions{NeighborSet: match("nbr-fe80::2")}, Actions: &api.Actions{RouteAction: api.RouteAction_REJECT}},
	}}
	opts := cmp.Comparer(func(a, b *api.DefinedSet) bool { return a.String() == b.String() })
	if d := cmp.Diff(wantSets, sets, opts); d != "" {
		t.Errorf("defined sets (-want +got)\n%s", d)
	}
	if d := cmp.Diff(wantPol.String(), pol.String()); d != "" {
		t.Errorf("policy (-want +got)\n%s", d)
	}
}

// TestToUpdates checks grouping (a multipath set per destination),
// withdrawals, VRF mapping by RD, unnumbered next hops and coalescing.
func TestToUpdates(t *testing.T) {
	mk := func(p bgp.Path, neighbor string, withdraw bool, asPath ...uint32) *api.Path {
		t.Helper()
		nlri, attrs, err := nativePath(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(asPath) > 0 {
			attrs = append(attrs, pkt.NewPathAttributeAsPath([]pkt.AsPathParamInterface{pkt.NewAs4PathParam(pkt.BGP_ASPATH_ATTR_TYPE_SEQ, asPath)}))
		}
		ap, err := apiutil.NewPath(nlri, withdraw, attrs, timeZero)
		if err != nil {
			t.Fatal(err)
		}
		ap.NeighborIp = neighbor
		return ap
	}
	vpn := func(prefix, rd, nh, neighbor string) *api.Path {
		t.Helper()
		r, _ := parseRD(rd)
		p := pfx(prefix)
		nlri := pkt.NewLabeledVPNIPAddrPrefix(uint8(p.Bits()), p.Addr().String(), *pkt.NewMPLSLabelStack(), r)
		ap, err := apiutil.NewPath(nlri, false, []pkt.PathAttributeInterface{
			pkt.NewPathAttributeOrigin(0), pkt.NewPathAttributeMpReachNLRI(nh, []pkt.AddrPrefixInterface{nlri})}, timeZero)
		if err != nil {
			t.Fatal(err)
		}
		ap.NeighborIp = neighbor
		return ap
	}
	v4 := func(p string) bgp.Path { return bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx(p)} }
	nh := func(p bgp.Path, a string) bgp.Path { p.NextHop = addr(a); return p }
	peers := map[netip.Addr]peerInfo{
		addr("fe80::a"):  {Key: bgp.PeerKey{Name: "swp1"}, Interface: "swp1"},
		addr("fe80::b"):  {Key: bgp.PeerKey{Name: "swp2"}, Interface: "swp2"},
		addr("10.9.0.1"): {Key: bgp.PeerKey{VRF: "red", Name: "10.9.0.1"}},
	}
	events := [][]*api.Path{
		{ // multipath set of 10.0.0.1/32, then a single path of 10.0.0.2/32
			mk(nh(v4("10.0.0.1/32"), "fe80::a"), "fe80::a", false, 65101),
			mk(nh(v4("10.0.0.1/32"), "fe80::b"), "fe80::b", false, 65102),
			mk(nh(v4("10.0.0.2/32"), "fe80::a"), "fe80::a", false, 65101),
		},
		{ // 10.0.0.2/32 withdrawn, a VRF path and one of an unknown RD
			mk(nh(v4("10.0.0.2/32"), "fe80::a"), "fe80::a", true),
			vpn("192.168.1.0/24", "10.255.0.1:100", "10.9.0.1", "10.9.0.1"),
			vpn("192.168.2.0/24", "10.255.0.9:100", "10.9.0.1", "10.9.0.1"),
		},
		{ // 10.0.0.1/32 loses one path
			mk(nh(v4("10.0.0.1/32"), "fe80::b"), "fe80::b", false, 65102),
		},
	}
	got := toUpdates(events, peers, map[string]string{"10.255.0.1:100": "red"}, func(err error) { t.Error(err) })
	want := []bgp.Update{
		{Family: bgp.IPv4Unicast, Prefix: pfx("10.0.0.1/32"), Paths: []bgp.Path{
			{Family: bgp.IPv4Unicast, Prefix: pfx("10.0.0.1/32"), NextHop: addr("fe80::b"), Interface: "swp2", ASPath: []uint32{65102}, Peer: bgp.PeerKey{Name: "swp2"}},
		}},
		{Family: bgp.IPv4Unicast, Prefix: pfx("10.0.0.2/32")},
		{Family: bgp.IPv4Unicast, VRF: "red", Prefix: pfx("192.168.1.0/24"), Paths: []bgp.Path{
			{Family: bgp.IPv4Unicast, VRF: "red", Prefix: pfx("192.168.1.0/24"), NextHop: addr("10.9.0.1"), Peer: bgp.PeerKey{VRF: "red", Name: "10.9.0.1"}},
		}},
	}
	if d := cmp.Diff(want, got, pathOpts); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
	// Without the last event, the multipath set has both paths.
	got = toUpdates(events[:1], peers, nil, func(err error) { t.Error(err) })
	if len(got) != 2 || len(got[0].Paths) != 2 || got[0].Paths[1].Interface != "swp2" {
		t.Errorf("multipath grouping: %+v", got)
	}
}

var timeZero = time.Unix(0, 0)

// wirePaths are API paths of every shape decodePath meets, in GoBGP's anypb
// form.
func wirePaths(t testing.TB) []*api.Path {
	t.Helper()
	mac, _ := net.ParseMAC("02:aa:bb:cc:dd:01")
	mk := func(nlri pkt.AddrPrefixInterface, withdraw bool, neighbor string, attrs ...pkt.PathAttributeInterface) *api.Path {
		t.Helper()
		ap, err := apiutil.NewPath(nlri, withdraw, append([]pkt.PathAttributeInterface{pkt.NewPathAttributeOrigin(0)}, attrs...), timeZero)
		if err != nil {
			t.Fatal(err)
		}
		ap.NeighborIp = neighbor
		return ap
	}
	asPath := pkt.NewPathAttributeAsPath([]pkt.AsPathParamInterface{
		pkt.NewAs4PathParam(pkt.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65101, 4200000001}),
		pkt.NewAs4PathParam(pkt.BGP_ASPATH_ATTR_TYPE_SET, []uint32{7, 300}),
	})
	v4 := pkt.NewIPAddrPrefix(32, "10.128.1.2")
	v6 := pkt.NewIPv6AddrPrefix(64, "2001:db8:1::")
	mpLL := pkt.NewPathAttributeMpReachNLRI("::", []pkt.AddrPrefixInterface{v6})
	mpLL.LinkLocalNexthop = net.ParseIP("fe80::7")
	mpGlobalLL := pkt.NewPathAttributeMpReachNLRI("2001:db8::9", []pkt.AddrPrefixInterface{v6})
	mpGlobalLL.LinkLocalNexthop = net.ParseIP("fe80::9")
	var out []*api.Path
	out = append(out,
		mk(v4, false, "fe80::a", pkt.NewPathAttributeMpReachNLRI("fe80::a", []pkt.AddrPrefixInterface{v4}), asPath),
		mk(v4, false, "10.0.0.1", pkt.NewPathAttributeNextHop("10.0.0.1"), asPath),
		mk(v4, true, "fe80::a"),
		mk(pkt.NewIPAddrPrefix(24, "10.1.0.0"), false, "", pkt.NewPathAttributeNextHop("0.0.0.0")),
		mk(pkt.NewIPAddrPrefix(0, "0.0.0.0"), false, "0.0.0.0", pkt.NewPathAttributeNextHop("192.0.2.1")),
		mk(v6, false, "fe80::7", mpLL, asPath),
		mk(v6, false, "2001:db8::9", mpGlobalLL),
		mk(v6, false, "::ffff:10.0.0.2", pkt.NewPathAttributeMpReachNLRI("::ffff:10.0.0.2", []pkt.AddrPrefixInterface{v6})),
	)
	for _, rd := range []string{"10.255.0.1:100", "65001:100010", "4200000001:7"} {
		r, err := parseRD(rd)
		if err != nil {
			t.Fatal(err)
		}
		vpn4 := pkt.NewLabeledVPNIPAddrPrefix(24, "192.168.1.0", *pkt.NewMPLSLabelStack(), r)
		vpn6 := pkt.NewLabeledVPNIPv6AddrPrefix(48, "2001:db8:5::", *pkt.NewMPLSLabelStack(100), r)
		out = append(out,
			mk(vpn4, false, "10.9.0.1", pkt.NewPathAttributeMpReachNLRI("10.9.0.1", []pkt.AddrPrefixInterface{vpn4}), asPath),
			mk(vpn6, false, "10.9.0.1", pkt.NewPathAttributeMpReachNLRI("2001:db8::1", []pkt.AddrPrefixInterface{vpn6})),
			mk(vpn4, true, "10.9.0.1"),
		)
		t5 := pkt.NewEVPNIPPrefixRoute(r, pkt.EthernetSegmentIdentifier{}, 0, 24, "192.168.10.0", "0.0.0.0", 100010)
		t5v6 := pkt.NewEVPNIPPrefixRoute(r, pkt.EthernetSegmentIdentifier{}, 0, 64, "2001:db8:10::", "::", 100011)
		rt4, _ := parseRT("10.0.0.1:7")
		ecs := pkt.NewPathAttributeExtendedCommunities([]pkt.ExtendedCommunityInterface{
			pkt.NewTwoOctetAsSpecificExtended(pkt.EC_SUBTYPE_ROUTE_TARGET, 65002, 100010, true),
			pkt.NewFourOctetAsSpecificExtended(pkt.EC_SUBTYPE_ROUTE_TARGET, 4200000001, 10, true),
			rt4,
			pkt.NewTwoOctetAsSpecificExtended(pkt.EC_SUBTYPE_ROUTE_ORIGIN, 65002, 1, true), // not a route target
			pkt.NewEncapExtended(pkt.TUNNEL_TYPE_VXLAN),
			pkt.NewRoutersMacExtended(mac.String()),
		})
		type2 := pkt.NewEVPNMacIPAdvertisementRoute(r, pkt.EthernetSegmentIdentifier{}, 0, "02:aa:bb:cc:dd:02", "192.168.10.5", []uint32{100})
		type3 := pkt.NewEVPNMulticastEthernetTagRoute(r, 0, "10.255.0.1")
		out = append(out,
			mk(t5, false, "10.0.0.1", pkt.NewPathAttributeMpReachNLRI("10.255.0.1", []pkt.AddrPrefixInterface{t5}), ecs, asPath),
			mk(t5v6, false, "", pkt.NewPathAttributeMpReachNLRI("10.255.0.1", []pkt.AddrPrefixInterface{t5v6}), ecs),
			mk(t5, true, "10.0.0.1"),
			mk(type2, false, "10.0.0.1", pkt.NewPathAttributeMpReachNLRI("10.255.0.1", []pkt.AddrPrefixInterface{type2}), ecs),
			mk(type3, false, "10.0.0.1", pkt.NewPathAttributeMpReachNLRI("10.255.0.1", []pkt.AddrPrefixInterface{type3})),
		)
	}
	// A family the fabric ignores.
	fs := pkt.NewFlowSpecIPv4Unicast([]pkt.FlowSpecComponentInterface{pkt.NewFlowSpecDestinationPrefix(pkt.NewIPAddrPrefix(24, "10.0.0.0"))})
	out = append(out, mk(fs, false, "10.0.0.1", pkt.NewPathAttributeMpReachNLRI("0.0.0.0", []pkt.AddrPrefixInterface{fs})))
	return out
}

// TestDecodeWire checks that reading the wire bytes gives what decoding
// through GoBGP's packet types gives.
func TestDecodeWire(t *testing.T) {
	for i, ap := range wirePaths(t) {
		want, wantErr := decodePathNative(ap)
		got, gotErr := decodePath(ap)
		var buf decodeBuf
		var slab decoded
		slabErr := decodeWire(ap, &slab, &buf)
		if (wantErr != nil) != (gotErr != nil) || errors.Is(wantErr, errSkip) != errors.Is(gotErr, errSkip) || (gotErr != nil) != (slabErr != nil) {
			t.Errorf("path %d (%v): error %v, native decoding error %v (with buffer %v)", i, ap.Nlri.GetTypeUrl(), gotErr, wantErr, slabErr)
			continue
		}
		if wantErr != nil {
			continue
		}
		if d := cmp.Diff(want, got, pathOpts); d != "" {
			t.Errorf("path %d (%v): (-native +wire)\n%s", i, ap.Nlri.GetTypeUrl(), d)
		}
		if d := cmp.Diff(want, slab, pathOpts); d != "" {
			t.Errorf("path %d (%v) with buffer: (-native +wire)\n%s", i, ap.Nlri.GetTypeUrl(), d)
		}
	}
}

// TestDecodeWireErrors checks that malformed paths are refused, not
// half-decoded.
func TestDecodeWireErrors(t *testing.T) {
	good := func() *api.Path {
		ap, err := apiutil.NewPath(pkt.NewIPAddrPrefix(32, "10.0.0.1"), false, []pkt.PathAttributeInterface{pkt.NewPathAttributeNextHop("10.0.0.2")}, timeZero)
		if err != nil {
			t.Fatal(err)
		}
		return ap
	}
	if _, err := decodePath(good()); err != nil {
		t.Fatalf("good path: %v", err)
	}
	for name, mut := range map[string]func(*api.Path){
		"no family":       func(p *api.Path) { p.Family = nil },
		"no NLRI":         func(p *api.Path) { p.Nlri = nil },
		"truncated NLRI":  func(p *api.Path) { p.Nlri.Value = p.Nlri.Value[:len(p.Nlri.Value)-1] },
		"bad next hop":    func(p *api.Path) { p.Pattrs[0], _ = anypb.New(&api.NextHopAttribute{NextHop: "x"}) },
		"v6 in v4 family": func(p *api.Path) { p.Nlri, _ = anypb.New(&api.IPAddressPrefix{PrefixLen: 64, Prefix: "2001:db8::"}) },
		"too long":        func(p *api.Path) { p.Nlri, _ = anypb.New(&api.IPAddressPrefix{PrefixLen: 33, Prefix: "10.0.0.1"}) },
		"bad MAC": func(p *api.Path) {
			mac, _ := anypb.New(&api.RouterMacExtended{Mac: "x"})
			p.Pattrs[0], _ = anypb.New(&api.ExtendedCommunitiesAttribute{Communities: []*anypb.Any{mac}})
		},
	} {
		p := good()
		mut(p)
		if d, err := decodePath(p); err == nil || errors.Is(err, errSkip) {
			t.Errorf("%s: decoded %+v, %v", name, d, err)
		}
	}
}

// TestToUpdatesRepeat checks a destination sent twice in one event (the
// later set wins and moves to the end) and across events (replaced in
// place).
func TestToUpdatesRepeat(t *testing.T) {
	mk := func(prefix, nh string) *api.Path {
		t.Helper()
		p := pfx(prefix)
		ap, err := apiutil.NewPath(pkt.NewIPAddrPrefix(uint8(p.Bits()), p.Addr().String()), false,
			[]pkt.PathAttributeInterface{pkt.NewPathAttributeNextHop(nh)}, timeZero)
		if err != nil {
			t.Fatal(err)
		}
		ap.NeighborIp = nh
		return ap
	}
	events := [][]*api.Path{
		{mk("10.0.0.1/32", "10.9.0.1"), mk("10.0.0.2/32", "10.9.0.1"), mk("10.0.0.1/32", "10.9.0.2"), mk("10.0.0.3/32", "10.9.0.1")},
		{mk("10.0.0.2/32", "10.9.0.3"), mk("10.0.0.4/32", "10.9.0.1")},
	}
	got := toUpdates(events, nil, nil, func(err error) { t.Error(err) })
	type pn struct{ Prefix, NextHop string }
	var gotPN []pn
	for _, u := range got {
		for _, p := range u.Paths {
			gotPN = append(gotPN, pn{u.Prefix.String(), p.NextHop.String()})
		}
	}
	want := []pn{{"10.0.0.2/32", "10.9.0.3"}, {"10.0.0.1/32", "10.9.0.2"}, {"10.0.0.3/32", "10.9.0.1"}, {"10.0.0.4/32", "10.9.0.1"}}
	if d := cmp.Diff(want, gotPN); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
}

// BenchmarkToUpdates decodes a batch of 1000 received /32s as GoBGP's
// watcher sends them.
func BenchmarkToUpdates(b *testing.B) {
	var ev []*api.Path
	for i := range 1000 {
		p := netip.AddrFrom4([4]byte{10, 128, byte(i >> 8), byte(i)})
		nlri := pkt.NewIPAddrPrefix(32, p.String())
		ap, err := apiutil.NewPath(nlri, false, []pkt.PathAttributeInterface{
			pkt.NewPathAttributeOrigin(0),
			pkt.NewPathAttributeAsPath([]pkt.AsPathParamInterface{pkt.NewAs4PathParam(pkt.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65000})}),
			pkt.NewPathAttributeMpReachNLRI("fe80::a", []pkt.AddrPrefixInterface{nlri}),
		}, timeZero)
		if err != nil {
			b.Fatal(err)
		}
		ap.NeighborIp = "fe80::a"
		ev = append(ev, ap)
	}
	peers := map[netip.Addr]peerInfo{addr("fe80::a"): {Key: bgp.PeerKey{Name: "swp1"}, Interface: "swp1"}}
	b.ReportAllocs()
	for b.Loop() {
		if us := toUpdates([][]*api.Path{ev}, peers, nil, func(err error) { b.Fatal(err) }); len(us) != len(ev) {
			b.Fatalf("%d updates", len(us))
		}
	}
}
