package gobgp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unsafe"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	pkt "github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/metalfabric/fabric/bgp"
)

// This file holds the pure conversions between the project's bgp types and
// GoBGP's packet and API types. Nothing here talks to a server.

// routeFamily maps a bgp.Family to GoBGP's route family.
func routeFamily(f bgp.Family) (pkt.RouteFamily, error) {
	switch f {
	case bgp.IPv4Unicast:
		return pkt.RF_IPv4_UC, nil
	case bgp.IPv6Unicast:
		return pkt.RF_IPv6_UC, nil
	case bgp.EVPN:
		return pkt.RF_EVPN, nil
	}
	return 0, fmt.Errorf("unsupported family %q", f)
}

// ourFamily maps GoBGP's route family to a bgp.Family; VPN families map to
// their unicast family (VRF paths), vpn reports that.
func ourFamily(rf pkt.RouteFamily) (f bgp.Family, vpn bool, ok bool) {
	switch rf {
	case pkt.RF_IPv4_UC:
		return bgp.IPv4Unicast, false, true
	case pkt.RF_IPv6_UC:
		return bgp.IPv6Unicast, false, true
	case pkt.RF_IPv4_VPN:
		return bgp.IPv4Unicast, true, true
	case pkt.RF_IPv6_VPN:
		return bgp.IPv6Unicast, true, true
	case pkt.RF_EVPN:
		return bgp.EVPN, false, true
	}
	return "", false, false
}

func apiFamily(rf pkt.RouteFamily) *api.Family {
	afi, safi := pkt.RouteFamilyToAfiSafi(rf)
	return apiutil.ToApiFamily(afi, safi)
}

// parseRT parses a route target "<AS>:<local>" (or "<IPv4>:<local>").
// A two-octet AS takes a 32-bit local administrator (what bgp.RT produces
// for VNIs), a four-octet AS a 16-bit one.
func parseRT(s string) (pkt.ExtendedCommunityInterface, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || i == len(s)-1 {
		return nil, fmt.Errorf("route target %q: want <AS>:<local>", s)
	}
	global, local := s[:i], s[i+1:]
	if ip, err := netip.ParseAddr(global); err == nil {
		if !ip.Is4() {
			return nil, fmt.Errorf("route target %q: IPv6 global administrator not supported", s)
		}
		l, err := strconv.ParseUint(local, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("route target %q: local administrator: %w", s, err)
		}
		return pkt.NewIPv4AddressSpecificExtended(pkt.EC_SUBTYPE_ROUTE_TARGET, ip.String(), uint16(l), true), nil
	}
	as, err := strconv.ParseUint(global, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("route target %q: AS: %w", s, err)
	}
	l, err := strconv.ParseUint(local, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("route target %q: local administrator: %w", s, err)
	}
	if as <= 0xffff {
		return pkt.NewTwoOctetAsSpecificExtended(pkt.EC_SUBTYPE_ROUTE_TARGET, uint16(as), uint32(l), true), nil
	}
	if l > 0xffff {
		return nil, fmt.Errorf("route target %q: a four-octet AS leaves 16 bits for the local administrator", s)
	}
	return pkt.NewFourOctetAsSpecificExtended(pkt.EC_SUBTYPE_ROUTE_TARGET, uint32(as), uint16(l), true), nil
}

func parseRTs(l []string) ([]pkt.ExtendedCommunityInterface, error) {
	out := make([]pkt.ExtendedCommunityInterface, 0, len(l))
	for _, s := range l {
		rt, err := parseRT(s)
		if err != nil {
			return nil, err
		}
		out = append(out, rt)
	}
	return out, nil
}

// formatRT formats a route-target extended community; ok is false for any
// other extended community.
func formatRT(ec pkt.ExtendedCommunityInterface) (string, bool) {
	_, sub := ec.GetTypes()
	if sub != pkt.EC_SUBTYPE_ROUTE_TARGET {
		return "", false
	}
	switch e := ec.(type) {
	case *pkt.TwoOctetAsSpecificExtended:
		return fmt.Sprintf("%d:%d", e.AS, e.LocalAdmin), true
	case *pkt.FourOctetAsSpecificExtended:
		return fmt.Sprintf("%d:%d", e.AS, e.LocalAdmin), true
	case *pkt.IPv4AddressSpecificExtended:
		return fmt.Sprintf("%s:%d", e.IPv4, e.LocalAdmin), true
	}
	return "", false
}

// nativePath builds the NLRI and attributes of a path we originate.
// The next hop's zero value means "self": GoBGP replaces an unspecified next
// hop with the session's local address when it sends the path.
func nativePath(p bgp.Path) (pkt.AddrPrefixInterface, []pkt.PathAttributeInterface, error) {
	nlri, attrs, err := nativePathAttrs(p)
	if err == nil && p.LocalPref != 0 {
		// Only best-path selection on this speaker looks at it (eBGP
		// drops LOCAL_PREF): an originated path that must lose against a
		// received one.
		attrs = append(attrs, pkt.NewPathAttributeLocalPref(p.LocalPref))
	}
	return nlri, attrs, err
}

func nativePathAttrs(p bgp.Path) (pkt.AddrPrefixInterface, []pkt.PathAttributeInterface, error) {
	if !p.Prefix.IsValid() {
		return nil, nil, errors.New("invalid prefix")
	}
	pfx := p.Prefix.Masked()
	origin := pkt.NewPathAttributeOrigin(pkt.BGP_ORIGIN_ATTR_TYPE_IGP)
	switch p.Family {
	case bgp.IPv4Unicast:
		if !pfx.Addr().Is4() {
			return nil, nil, fmt.Errorf("prefix %s is not IPv4", pfx)
		}
		nlri := pkt.NewIPAddrPrefix(uint8(pfx.Bits()), pfx.Addr().String())
		switch {
		case !p.NextHop.IsValid():
			return nlri, []pkt.PathAttributeInterface{origin, pkt.NewPathAttributeNextHop("0.0.0.0")}, nil
		case p.NextHop.Is4():
			return nlri, []pkt.PathAttributeInterface{origin, pkt.NewPathAttributeNextHop(p.NextHop.String())}, nil
		default: // RFC 5549: IPv4 NLRI with an IPv6 next hop.
			return nlri, []pkt.PathAttributeInterface{origin, pkt.NewPathAttributeMpReachNLRI(p.NextHop.WithZone("").String(), []pkt.AddrPrefixInterface{nlri})}, nil
		}
	case bgp.IPv6Unicast:
		if !pfx.Addr().Is6() || pfx.Addr().Is4In6() {
			return nil, nil, fmt.Errorf("prefix %s is not IPv6", pfx)
		}
		nlri := pkt.NewIPv6AddrPrefix(uint8(pfx.Bits()), pfx.Addr().String())
		nh := "::"
		if p.NextHop.IsValid() {
			nh = p.NextHop.WithZone("").String()
		}
		return nlri, []pkt.PathAttributeInterface{origin, pkt.NewPathAttributeMpReachNLRI(nh, []pkt.AddrPrefixInterface{nlri})}, nil
	case bgp.EVPN:
		return nativeType5(p, pfx, origin)
	}
	return nil, nil, fmt.Errorf("unsupported family %q", p.Family)
}

// nativeType5 builds an EVPN IP prefix route (RFC 9136) the way FRR does:
// RD, ESI 0, Ethernet tag 0, gateway 0, label = VNI, route targets, VXLAN
// encapsulation and router MAC extended communities, next hop = VTEP.
func nativeType5(p bgp.Path, pfx netip.Prefix, origin pkt.PathAttributeInterface) (pkt.AddrPrefixInterface, []pkt.PathAttributeInterface, error) {
	if p.RD == "" {
		return nil, nil, errors.New("EVPN type-5 path without RD")
	}
	rd, err := parseRD(p.RD)
	if err != nil {
		return nil, nil, err
	}
	if !p.NextHop.IsValid() {
		return nil, nil, errors.New("EVPN type-5 path without VTEP next hop")
	}
	if p.VNI == 0 || p.VNI > 0xffffff {
		return nil, nil, fmt.Errorf("VNI %d out of range", p.VNI)
	}
	if len(p.RouterMAC) != 6 {
		return nil, nil, fmt.Errorf("router MAC %q: want 6 bytes", p.RouterMAC)
	}
	gw := "0.0.0.0"
	if pfx.Addr().Is6() {
		gw = "::"
	}
	nlri := pkt.NewEVPNIPPrefixRoute(rd, pkt.EthernetSegmentIdentifier{}, 0, uint8(pfx.Bits()), pfx.Addr().String(), gw, p.VNI)
	ecs, err := parseRTs(p.RouteTargets)
	if err != nil {
		return nil, nil, err
	}
	ecs = append(ecs, pkt.NewEncapExtended(pkt.TUNNEL_TYPE_VXLAN), pkt.NewRoutersMacExtended(p.RouterMAC.String()))
	attrs := []pkt.PathAttributeInterface{
		origin,
		pkt.NewPathAttributeMpReachNLRI(p.NextHop.WithZone("").String(), []pkt.AddrPrefixInterface{nlri}),
		pkt.NewPathAttributeExtendedCommunities(ecs),
	}
	return nlri, attrs, nil
}

// parseRD parses a route distinguisher, refusing values GoBGP would
// silently truncate: an IPv4 or four-octet AS administrator leaves 16 bits
// for the assigned number, a two-octet AS 32 bits.
func parseRD(s string) (pkt.RouteDistinguisherInterface, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || i == len(s)-1 {
		return nil, fmt.Errorf("RD %q: want <admin>:<number>", s)
	}
	admin, num := s[:i], s[i+1:]
	n, err := strconv.ParseUint(num, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("RD %q: assigned number: %w", s, err)
	}
	if ip, err := netip.ParseAddr(admin); err == nil {
		if !ip.Is4() {
			return nil, fmt.Errorf("RD %q: IPv6 administrator", s)
		}
		if n > 0xffff {
			return nil, fmt.Errorf("RD %q: an IPv4 administrator leaves 16 bits for the assigned number", s)
		}
		return pkt.NewRouteDistinguisherIPAddressAS(ip.String(), uint16(n)), nil
	}
	as, err := strconv.ParseUint(admin, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("RD %q: administrator: %w", s, err)
	}
	if as <= 0xffff {
		return pkt.NewRouteDistinguisherTwoOctetAS(uint16(as), uint32(n)), nil
	}
	if n > 0xffff {
		return nil, fmt.Errorf("RD %q: a four-octet AS administrator leaves 16 bits for the assigned number", s)
	}
	return pkt.NewRouteDistinguisherFourOctetAS(uint32(as), uint16(n)), nil
}

// apiPath converts a path we originate to GoBGP's API path.
func apiPath(p bgp.Path) (*api.Path, error) {
	nlri, attrs, err := nativePath(p)
	if err != nil {
		return nil, err
	}
	return apiutil.NewPath(nlri, false, attrs, time.Now())
}

// decoded is a GoBGP path in the project's terms, before peer and VRF lookup.
type decoded struct {
	Family   bgp.Family
	VPN      bool   // an L3VPN path of a VRF RIB
	RD       string // VPN and EVPN
	Prefix   netip.Prefix
	NextHop  netip.Addr
	ASPath   []uint32
	RTs      []string
	MAC      net.HardwareAddr
	VNI      uint32
	Neighbor netip.Addr // invalid for local paths
	Local    bool
	Withdraw bool
}

// key identifies the destination of a decoded path.
func (d decoded) key() destKey {
	return destKey{Family: d.Family, VPN: d.VPN, RD: d.RD, Prefix: d.Prefix}
}

type destKey struct {
	Family bgp.Family
	VPN    bool
	RD     string
	Prefix netip.Prefix
}

// errSkip marks paths the fabric does not use (e.g. EVPN types 2 and 3).
var errSkip = errors.New("path not used by the fabric")

// decodePath converts a GoBGP API path (as WatchEvent and ListPath return
// them); it returns errSkip for families and route types the fabric ignores.
//
// Paths in GoBGP's anypb form (what WatchEvent sends) are read straight
// from their protobuf wire bytes (see decodeWire): only the NLRI, next hop,
// AS path and (EVPN) the route targets and router MAC, without building
// GoBGP's packet types. Paths in binary form go through apiutil.
func decodePath(p *api.Path) (decoded, error) {
	var d decoded
	if len(p.NlriBinary) == 0 && len(p.PattrsBinary) == 0 {
		err := decodeWire(p, &d, nil)
		return d, err
	}
	return decodePathNative(p)
}

// decodePathNative is decodePath through GoBGP's packet types.
func decodePathNative(p *api.Path) (decoded, error) {
	var d decoded
	if p.Family == nil {
		return d, errors.New("path without family")
	}
	f, vpn, ok := ourFamily(apiutil.ToRouteFamily(p.Family))
	if !ok {
		return d, errSkip
	}
	d.Family, d.VPN, d.Withdraw = f, vpn, p.IsWithdraw
	nlri, err := apiutil.GetNativeNlri(p)
	if err != nil {
		return d, fmt.Errorf("decoding NLRI: %w", err)
	}
	switch n := nlri.(type) {
	case *pkt.IPAddrPrefix:
		d.Prefix, err = toPrefix(n.Prefix, n.Length)
	case *pkt.IPv6AddrPrefix:
		d.Prefix, err = toPrefix(n.Prefix, n.Length)
	case *pkt.LabeledVPNIPAddrPrefix:
		d.RD = formatRD(n.RD)
		d.Prefix, err = toPrefix(n.Prefix, uint8(int(n.Length)-n.Labels.Len()*8-n.RD.Len()*8))
	case *pkt.LabeledVPNIPv6AddrPrefix:
		d.RD = formatRD(n.RD)
		d.Prefix, err = toPrefix(n.Prefix, uint8(int(n.Length)-n.Labels.Len()*8-n.RD.Len()*8))
	case *pkt.EVPNNLRI:
		r, ok := n.RouteTypeData.(*pkt.EVPNIPPrefixRoute)
		if !ok {
			return d, errSkip
		}
		d.RD = formatRD(r.RD)
		d.VNI = r.Label
		d.Prefix, err = toPrefix(r.IPPrefix, r.IPPrefixLength)
	default:
		return d, errSkip
	}
	if err != nil {
		return d, err
	}
	if ip, err := netip.ParseAddr(p.NeighborIp); err == nil && !ip.IsUnspecified() {
		d.Neighbor = ip.Unmap()
	} else {
		d.Local = true
	}
	attrs, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		return d, fmt.Errorf("decoding attributes: %w", err)
	}
	for _, a := range attrs {
		switch a := a.(type) {
		case *pkt.PathAttributeNextHop:
			d.NextHop = addrOf(a.Value)
		case *pkt.PathAttributeMpReachNLRI:
			d.NextHop = addrOf(a.Nexthop)
			if ll := addrOf(a.LinkLocalNexthop); ll.IsValid() && (!d.NextHop.IsValid() || d.NextHop.IsUnspecified()) {
				d.NextHop = ll
			}
		case *pkt.PathAttributeAsPath:
			for _, seg := range a.Value {
				d.ASPath = append(d.ASPath, seg.GetAS()...)
			}
		case *pkt.PathAttributeExtendedCommunities:
			for _, ec := range a.Value {
				if rt, ok := formatRT(ec); ok {
					d.RTs = append(d.RTs, rt)
					continue
				}
				if m, ok := ec.(*pkt.RouterMacExtended); ok {
					d.MAC = m.Mac
				}
			}
		}
	}
	return d, nil
}

func toPrefix(ip net.IP, bits uint8) (netip.Prefix, error) {
	a := addrOf(ip)
	if !a.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid prefix address %v", ip)
	}
	pfx, err := a.Prefix(int(bits))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("prefix %v/%d: %w", ip, bits, err)
	}
	return pfx, nil
}

// addrOf converts a net.IP; IPv4 (also 4-in-6) comes out as IPv4.
func addrOf(ip net.IP) netip.Addr {
	if v4 := ip.To4(); v4 != nil {
		a, _ := netip.AddrFromSlice(v4)
		return a
	}
	a, _ := netip.AddrFromSlice(ip)
	return a
}

// formatRD formats a route distinguisher as "<admin>:<number>" with a plain
// (not asdot) AS, the form parseRD reads and bgp.RD produces.
func formatRD(rd pkt.RouteDistinguisherInterface) string {
	switch r := rd.(type) {
	case *pkt.RouteDistinguisherTwoOctetAS:
		return fmt.Sprintf("%d:%d", r.Admin, r.Assigned)
	case *pkt.RouteDistinguisherIPAddressAS:
		return fmt.Sprintf("%s:%d", r.Admin, r.Assigned)
	case *pkt.RouteDistinguisherFourOctetAS:
		return fmt.Sprintf("%d:%d", r.Admin, r.Assigned)
	}
	return rd.String()
}

// Full names of the GoBGP API messages decodeWire reads.
var (
	msgIPAddressPrefix       = msgName(&api.IPAddressPrefix{})
	msgLabeledVPNPrefix      = msgName(&api.LabeledVPNIPAddressPrefix{})
	msgEVPNIPPrefixRoute     = msgName(&api.EVPNIPPrefixRoute{})
	msgRDTwoOctetASN         = msgName(&api.RouteDistinguisherTwoOctetASN{})
	msgRDIPAddress           = msgName(&api.RouteDistinguisherIPAddress{})
	msgRDFourOctetASN        = msgName(&api.RouteDistinguisherFourOctetASN{})
	msgNextHopAttribute      = msgName(&api.NextHopAttribute{})
	msgMpReachNLRIAttribute  = msgName(&api.MpReachNLRIAttribute{})
	msgAsPathAttribute       = msgName(&api.AsPathAttribute{})
	msgExtCommunities        = msgName(&api.ExtendedCommunitiesAttribute{})
	msgTwoOctetAsSpecificExt = msgName(&api.TwoOctetAsSpecificExtended{})
	msgFourOctetAsSpecificEx = msgName(&api.FourOctetAsSpecificExtended{})
	msgIPv4AddrSpecificExt   = msgName(&api.IPv4AddressSpecificExtended{})
	msgRouterMacExtended     = msgName(&api.RouterMacExtended{})
)

func msgName(m proto.Message) string { return string(m.ProtoReflect().Descriptor().FullName()) }

// anyName is the full message name of an Any's type URL ("" for nil).
func anyName(a *anypb.Any) string {
	u := a.GetTypeUrl()
	if i := strings.LastIndexByte(u, '/'); i >= 0 {
		return u[i+1:]
	}
	return u
}

// decodeBuf is scratch space shared by the paths of one batch.
type decodeBuf struct {
	// as is a slab the AS paths of decoded paths are cut from (one
	// allocation for many paths instead of one per path).
	as []uint32
}

// asSlabSize is the number of AS numbers per decodeBuf slab.
const asSlabSize = 4096

// decodeWire is decodePath for paths in anypb form. It reads the protobuf
// wire bytes of the NLRI and of the attributes it needs, skipping the rest
// unparsed; the results are the ones decodePathNative gives. buf may be nil.
func decodeWire(p *api.Path, d *decoded, buf *decodeBuf) error {
	if p.Family == nil {
		return errors.New("path without family")
	}
	rf := apiutil.ToRouteFamily(p.Family)
	f, vpn, ok := ourFamily(rf)
	if !ok {
		return errSkip
	}
	d.Family, d.VPN, d.Withdraw = f, vpn, p.IsWithdraw
	if err := decodeWireNLRI(p.Nlri, rf, d); err != nil {
		return err
	}
	if ip, err := netip.ParseAddr(p.NeighborIp); err == nil && !ip.IsUnspecified() {
		d.Neighbor = ip.Unmap()
	} else {
		d.Local = true
	}
	var as []uint32
	start := 0
	if buf != nil {
		if cap(buf.as)-len(buf.as) < 64 {
			buf.as = make([]uint32, 0, asSlabSize)
		}
		as, start = buf.as, len(buf.as)
	}
	for _, a := range p.Pattrs {
		var err error
		switch anyName(a) {
		case msgNextHopAttribute:
			err = decodeWireNextHop(a.Value, d)
		case msgMpReachNLRIAttribute:
			err = decodeWireMpReach(a.Value, d)
		case msgAsPathAttribute:
			as, err = decodeWireASPath(a.Value, as)
		case msgExtCommunities:
			err = decodeWireExtCommunities(a.Value, d)
		}
		if err != nil {
			return fmt.Errorf("decoding attributes: %w", err)
		}
	}
	if len(as) > start {
		d.ASPath = as[start:len(as):len(as)]
	}
	if buf != nil {
		buf.as = as
	}
	return nil
}

func decodeWireNLRI(a *anypb.Any, rf pkt.RouteFamily, d *decoded) error {
	if a == nil {
		return errors.New("decoding NLRI: missing")
	}
	var (
		r      = wireReader{b: a.Value}
		bits   uint64
		prefix []byte
		err    error
	)
	switch anyName(a) {
	case msgIPAddressPrefix:
		for r.next() {
			switch r.num {
			case 1:
				bits = r.v
			case 2:
				prefix = r.s
			}
		}
	case msgLabeledVPNPrefix:
		for r.next() {
			switch r.num {
			case 2:
				d.RD, err = decodeWireRD(r.s)
			case 3:
				bits = r.v
			case 4:
				prefix = r.s
			}
		}
	case msgEVPNIPPrefixRoute:
		if rf != pkt.RF_EVPN {
			return errSkip
		}
		for r.next() {
			switch r.num {
			case 1:
				d.RD, err = decodeWireRD(r.s)
			case 4:
				prefix = r.s
			case 5:
				bits = r.v
			case 7:
				d.VNI = uint32(r.v)
			}
		}
	default:
		// Other EVPN route types, other NLRI kinds.
		return errSkip
	}
	if r.err != nil {
		return fmt.Errorf("decoding NLRI: %w", r.err)
	}
	if err != nil {
		return fmt.Errorf("decoding NLRI: %w", err)
	}
	ip, err := parseAddrBytes(prefix)
	if err != nil || (rf == pkt.RF_IPv4_UC || rf == pkt.RF_IPv4_VPN) && !ip.Is4() {
		return fmt.Errorf("invalid prefix address %q", prefix)
	}
	if bits > 0xff {
		return fmt.Errorf("prefix %s/%d: invalid length", ip, bits)
	}
	if d.Prefix, err = ip.Prefix(int(bits)); err != nil {
		return fmt.Errorf("prefix %s/%d: %w", ip, bits, err)
	}
	return nil
}

// decodeWireRD formats a route distinguisher (an Any) as formatRD does the
// one apiutil.UnmarshalRD makes of it.
func decodeWireRD(b []byte) (string, error) {
	var (
		name, value []byte
		r           = wireReader{b: b}
	)
	for r.next() {
		switch r.num {
		case 1:
			name = r.s
		case 2:
			value = r.s
		}
	}
	if r.err != nil {
		return "", r.err
	}
	if i := bytes.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	var (
		admin, assigned uint64
		ipAdmin         []byte
	)
	r = wireReader{b: value}
	for r.next() {
		switch r.num {
		case 1:
			admin, ipAdmin = r.v, r.s
		case 2:
			assigned = r.v
		}
	}
	if r.err != nil {
		return "", r.err
	}
	var s [64]byte
	out := s[:0]
	switch string(name) {
	case msgRDTwoOctetASN:
		out = strconv.AppendUint(out, uint64(uint16(admin)), 10)
		out = append(out, ':')
		out = strconv.AppendUint(out, uint64(uint32(assigned)), 10)
	case msgRDIPAddress:
		ip, err := parseAddrBytes(ipAdmin)
		if err != nil || !ip.Is4() {
			return "", fmt.Errorf("RD: invalid administrator %q", ipAdmin)
		}
		out = ip.AppendTo(out)
		out = append(out, ':')
		out = strconv.AppendUint(out, uint64(uint16(assigned)), 10)
	case msgRDFourOctetASN:
		out = strconv.AppendUint(out, uint64(uint32(admin)), 10)
		out = append(out, ':')
		out = strconv.AppendUint(out, uint64(uint16(assigned)), 10)
	default:
		return "", fmt.Errorf("RD: unknown type %q", name)
	}
	return string(out), nil
}

func decodeWireNextHop(b []byte, d *decoded) error {
	r := wireReader{b: b}
	var nh []byte
	for r.next() {
		if r.num == 1 {
			nh = r.s
		}
	}
	if r.err != nil {
		return r.err
	}
	ip, err := parseAddrBytes(nh)
	if err != nil {
		return fmt.Errorf("invalid nexthop %q", nh)
	}
	d.NextHop = ip
	return nil
}

// decodeWireMpReach takes the next hop of MP_REACH_NLRI as apiutil does:
// the first next hop (0.0.0.0 or :: if none), for IPv6 the link-local
// second one when the first is unspecified.
func decodeWireMpReach(b []byte, d *decoded) error {
	var (
		r         = wireReader{b: b}
		family    []byte
		hasFamily bool
		nhs       [2][]byte
		n         int
	)
	for r.next() {
		switch r.num {
		case 1:
			family, hasFamily = r.s, true
		case 2:
			if n < len(nhs) {
				nhs[n] = r.s
			}
			n++
		}
	}
	if r.err != nil {
		return r.err
	}
	if !hasFamily {
		return errors.New("empty family")
	}
	var afi, safi uint64
	r = wireReader{b: family}
	for r.next() {
		switch r.num {
		case 1:
			afi = r.v
		case 2:
			safi = r.v
		}
	}
	if r.err != nil {
		return r.err
	}
	var nh, ll netip.Addr
	switch {
	case safi == pkt.SAFI_FLOW_SPEC_UNICAST || safi == pkt.SAFI_FLOW_SPEC_VPN:
	case n > 0:
		ip, err := parseAddrBytes(nhs[0])
		if err != nil {
			return fmt.Errorf("invalid nexthop: %s", nhs[0])
		}
		nh = ip
	case afi == pkt.AFI_IP6:
		nh = netip.IPv6Unspecified()
	default:
		nh = netip.IPv4Unspecified()
	}
	if afi == pkt.AFI_IP6 && n > 1 {
		ip, err := parseAddrBytes(nhs[1])
		if err != nil {
			return fmt.Errorf("invalid nexthop: %s", nhs[1])
		}
		ll = ip
	}
	d.NextHop = nh
	if ll.IsValid() && (!nh.IsValid() || nh.IsUnspecified()) {
		d.NextHop = ll
	}
	return nil
}

// decodeWireASPath appends the AS numbers of all segments to as.
func decodeWireASPath(b []byte, as []uint32) ([]uint32, error) {
	r := wireReader{b: b}
	for r.next() {
		if r.num != 1 || r.typ != protowire.BytesType {
			continue
		}
		seg := wireReader{b: r.s}
		for seg.next() {
			if seg.num != 2 {
				continue
			}
			switch seg.typ {
			case protowire.VarintType: // unpacked
				as = append(as, uint32(seg.v))
			case protowire.BytesType: // packed
				for p := seg.s; len(p) > 0; {
					v, n := protowire.ConsumeVarint(p)
					if n < 0 {
						return as, protowire.ParseError(n)
					}
					as = append(as, uint32(v))
					p = p[n:]
				}
			}
		}
		if seg.err != nil {
			return as, seg.err
		}
	}
	return as, r.err
}

// decodeWireExtCommunities takes the route targets and the router MAC.
func decodeWireExtCommunities(b []byte, d *decoded) error {
	r := wireReader{b: b}
	for r.next() {
		if r.num != 1 || r.typ != protowire.BytesType {
			continue
		}
		var name, value []byte
		c := wireReader{b: r.s}
		for c.next() {
			switch c.num {
			case 1:
				name = c.s
			case 2:
				value = c.s
			}
		}
		if c.err != nil {
			return c.err
		}
		if i := bytes.LastIndexByte(name, '/'); i >= 0 {
			name = name[i+1:]
		}
		var (
			sub, asn, local uint64
			str             []byte
		)
		c = wireReader{b: value}
		for c.next() {
			switch c.num {
			case 1:
				str = c.s // RouterMacExtended.mac
			case 2:
				sub = c.v
			case 3:
				asn, str = c.v, c.s // asn, or IPv4AddressSpecificExtended.address
			case 4:
				local = c.v
			}
		}
		if c.err != nil {
			return c.err
		}
		var s [64]byte
		out := s[:0]
		switch string(name) {
		case msgTwoOctetAsSpecificExt:
			if pkt.ExtendedCommunityAttrSubType(sub) != pkt.EC_SUBTYPE_ROUTE_TARGET {
				continue
			}
			out = strconv.AppendUint(out, uint64(uint16(asn)), 10)
			out = append(out, ':')
			out = strconv.AppendUint(out, uint64(uint32(local)), 10)
		case msgFourOctetAsSpecificEx:
			if pkt.ExtendedCommunityAttrSubType(sub) != pkt.EC_SUBTYPE_ROUTE_TARGET {
				continue
			}
			out = strconv.AppendUint(out, uint64(uint32(asn)), 10)
			out = append(out, ':')
			out = strconv.AppendUint(out, uint64(uint16(local)), 10)
		case msgIPv4AddrSpecificExt:
			if pkt.ExtendedCommunityAttrSubType(sub) != pkt.EC_SUBTYPE_ROUTE_TARGET {
				continue
			}
			ip, err := parseAddrBytes(str)
			if err != nil || !ip.Is4() {
				return fmt.Errorf("invalid IPv4 address specific extended community address %q", str)
			}
			out = ip.AppendTo(out)
			out = append(out, ':')
			out = strconv.AppendUint(out, uint64(uint16(local)), 10)
		case msgRouterMacExtended:
			mac, err := net.ParseMAC(string(str))
			if err != nil {
				return err
			}
			d.MAC = mac
			continue
		default:
			continue
		}
		d.RTs = append(d.RTs, string(out))
	}
	return r.err
}

// parseAddrBytes parses an address held in protobuf wire bytes (IPv4-mapped
// IPv6 comes out as IPv4, as addrOf does), without copying it to a string:
// netip.ParseAddr keeps no reference to its input on success (a zone is
// interned by copy), and the bytes are never modified.
func parseAddrBytes(b []byte) (netip.Addr, error) {
	if len(b) == 0 {
		return netip.Addr{}, errors.New("empty address")
	}
	ip, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(b), len(b)))
	if err != nil {
		return netip.Addr{}, errors.New("invalid address")
	}
	return ip.Unmap(), nil
}

// wireReader steps through the fields of a protobuf message's wire bytes.
type wireReader struct {
	b   []byte
	err error
	num protowire.Number
	typ protowire.Type
	v   uint64 // a varint field's value
	s   []byte // a length-delimited field's bytes
}

func (r *wireReader) next() bool {
	if len(r.b) == 0 || r.err != nil {
		return false
	}
	num, typ, n := protowire.ConsumeTag(r.b)
	if n < 0 {
		r.err = protowire.ParseError(n)
		return false
	}
	r.b = r.b[n:]
	r.num, r.typ, r.v, r.s = num, typ, 0, nil
	switch typ {
	case protowire.VarintType:
		r.v, n = protowire.ConsumeVarint(r.b)
	case protowire.BytesType:
		r.s, n = protowire.ConsumeBytes(r.b)
	default:
		n = protowire.ConsumeFieldValue(num, typ, r.b)
	}
	if n < 0 {
		r.err = protowire.ParseError(n)
		return false
	}
	r.b = r.b[n:]
	return true
}
