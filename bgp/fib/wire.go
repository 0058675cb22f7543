package fib

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Netlink and rtnetlink numbers (include/uapi/linux/{netlink,rtnetlink,
// neighbour}.h), spelled out here so that the encoder and decoder are
// portable and testable anywhere.
const (
	nlmsgHdrLen = 16

	nlmsgNoop  = 0x1
	nlmsgError = 0x2
	nlmsgDone  = 0x3

	nlmFRequest  = 0x1
	nlmFMulti    = 0x2
	nlmFAck      = 0x4
	nlmFDumpIntr = 0x10
	nlmFDump     = 0x300
	nlmFReplace  = 0x100
	nlmFExcl     = 0x200
	nlmFCreate   = 0x400
	nlmFCapped   = 0x100 // in NLMSG_ERROR: the original message is cut to its header
	nlmFAckTLVs  = 0x200 // in NLMSG_ERROR: extended ack attributes follow

	nlmsgerrAttrMsg = 1

	rtmNewRoute = 24
	rtmDelRoute = 25
	rtmGetRoute = 26
	rtmNewNeigh = 28
	rtmDelNeigh = 29
	rtmGetNeigh = 30

	rtmsgLen     = 12
	rtaDst       = 1
	rtaOif       = 4
	rtaGateway   = 5
	rtaPriority  = 6
	rtaMultipath = 9
	rtaTable     = 15
	rtaVia       = 18

	rtnhLen     = 8
	rtnhFOnlink = 0x4
	rtmFCloned  = 0x200

	afInet   = 2
	afBridge = 7
	afInet6  = 10

	rtnUnicast      = 1
	rtScopeUniverse = 0
	rtScopeLink     = 253
	rtScopeNowhere  = 255

	ndmsgLen    = 12
	ndaDst      = 1
	ndaLLAddr   = 2
	ndaVlan     = 5
	ndaMaster   = 9
	ndaProtocol = 12

	nudNoarp     = 0x40
	nudPermanent = 0x80
	ntfSelf      = 0x02
	ntfMaster    = 0x04
)

var ne = binary.NativeEndian

func align4(n int) int { return (n + 3) &^ 3 }

// nlHeader is struct nlmsghdr.
type nlHeader struct {
	Len   uint32
	Type  uint16
	Flags uint16
	Seq   uint32
	Pid   uint32
}

// beginMsg appends a header with a length to be fixed by endMsg and returns
// the new buffer and the offset of the message.
func beginMsg(b []byte, typ, flags uint16, seq uint32) ([]byte, int) {
	off := len(b)
	b = ne.AppendUint32(b, 0)
	b = ne.AppendUint16(b, typ)
	b = ne.AppendUint16(b, flags)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0)
	return b, off
}

func endMsg(b []byte, off int) []byte {
	ne.PutUint32(b[off:], uint32(len(b)-off))
	return b
}

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = ne.AppendUint16(b, uint16(4+len(data)))
	b = ne.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func appendAttrU32(b []byte, typ uint16, v uint32) []byte {
	b = ne.AppendUint16(b, 8)
	b = ne.AppendUint16(b, typ)
	return ne.AppendUint32(b, v)
}

func appendAttrAddr(b []byte, typ uint16, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return appendAttr(b, typ, v[:])
	}
	v := a.As16()
	return appendAttr(b, typ, v[:])
}

// appendVia appends RTA_VIA: struct rtvia { __kernel_sa_family_t; u8 addr[]; }.
func appendVia(b []byte, a netip.Addr) []byte {
	b = ne.AppendUint16(b, uint16(4+2+a.BitLen()/8))
	b = ne.AppendUint16(b, rtaVia)
	b = ne.AppendUint16(b, familyOf(a))
	b = append(b, a.AsSlice()...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func familyOf(a netip.Addr) uint16 {
	if a.Is4() {
		return afInet
	}
	return afInet6
}

// kRoute is a route in the kernel's terms: next hops by ifindex, with the
// header fields we set or read.
type kRoute struct {
	Table    uint32
	Prefix   netip.Prefix
	Protocol uint8
	Scope    uint8
	Type     uint8
	Flags    uint32 // rtm_flags without the next-hop flags of a single path (low byte)
	Metric   uint32
	Hops     []kHop
}

// kHop is one next hop: struct rtnexthop plus its gateway.
type kHop struct {
	Gateway netip.Addr
	Ifindex int32
	Flags   uint8 // RTNH_F_*
	Weight  uint8 // rtnh_hops (weight - 1)
}

func (r *kRoute) family() uint8 {
	if r.Prefix.Addr().Is4() {
		return afInet
	}
	return afInet6
}

// appendGateway appends RTA_GATEWAY when the next hop is of the route's
// family, RTA_VIA otherwise (RFC 5549: IPv4 route, IPv6 next hop).
func appendGateway(b []byte, fam uint8, gw netip.Addr) []byte {
	if !gw.IsValid() {
		return b
	}
	if uint16(fam) == familyOf(gw) {
		return appendAttrAddr(b, rtaGateway, gw)
	}
	return appendVia(b, gw)
}

// appendRouteMsg appends one RTM_NEWROUTE/RTM_DELROUTE/RTM_GETROUTE message.
// Table > 255 goes into RTA_TABLE (rtm_table is RT_TABLE_UNSPEC then, as
// iproute2 does); RTA_TABLE is always present. One next hop is encoded in
// the top-level attributes (RTA_OIF, RTA_GATEWAY or RTA_VIA, rtm_flags),
// several in RTA_MULTIPATH.
func appendRouteMsg(b []byte, typ, flags uint16, seq uint32, r *kRoute) []byte {
	b, off := beginMsg(b, typ, flags, seq)
	fam := r.family()
	tbl := uint8(0)
	if r.Table < 256 {
		tbl = uint8(r.Table)
	}
	rflags := r.Flags &^ 0xff
	if len(r.Hops) == 1 {
		rflags |= uint32(r.Hops[0].Flags)
	}
	b = append(b, fam, uint8(r.Prefix.Bits()), 0, 0, tbl, r.Protocol, r.Scope, r.Type)
	b = ne.AppendUint32(b, rflags)
	if r.Prefix.IsValid() && r.Prefix.Bits() > 0 {
		b = appendAttrAddr(b, rtaDst, r.Prefix.Addr())
	}
	b = appendAttrU32(b, rtaTable, r.Table)
	b = appendAttrU32(b, rtaPriority, r.Metric)
	switch len(r.Hops) {
	case 0:
	case 1:
		h := r.Hops[0]
		if h.Ifindex != 0 {
			b = appendAttrU32(b, rtaOif, uint32(h.Ifindex))
		}
		b = appendGateway(b, fam, h.Gateway)
	default:
		mp := len(b)
		b = ne.AppendUint16(b, 0)
		b = ne.AppendUint16(b, rtaMultipath)
		for _, h := range r.Hops {
			nh := len(b)
			b = ne.AppendUint16(b, 0)
			b = append(b, h.Flags, h.Weight)
			b = ne.AppendUint32(b, uint32(h.Ifindex))
			b = appendGateway(b, fam, h.Gateway)
			ne.PutUint16(b[nh:], uint16(len(b)-nh))
		}
		ne.PutUint16(b[mp:], uint16(len(b)-mp))
	}
	return endMsg(b, off)
}

// appendNoop appends an NLMSG_NOOP request that asks for an ack: the fence
// at the end of a window.
func appendNoop(b []byte, seq uint32) []byte {
	b, off := beginMsg(b, nlmsgNoop, nlmFRequest|nlmFAck, seq)
	return endMsg(b, off)
}

// appendDumpRoutes appends an RTM_GETROUTE dump request for one family,
// filtered (with NETLINK_GET_STRICT_CHK) by protocol, all tables.
func appendDumpRoutes(b []byte, seq uint32, fam, proto uint8) []byte {
	b, off := beginMsg(b, rtmGetRoute, nlmFRequest|nlmFDump, seq)
	b = append(b, fam, 0, 0, 0, 0, proto, 0, 0)
	b = ne.AppendUint32(b, 0)
	return endMsg(b, off)
}

// appendDumpNeigh appends an RTM_GETNEIGH dump request for one family
// (AF_BRIDGE: the FDB).
func appendDumpNeigh(b []byte, seq uint32, fam uint8) []byte {
	b, off := beginMsg(b, rtmGetNeigh, nlmFRequest|nlmFDump, seq)
	b = append(b, fam, 0, 0, 0)
	b = ne.AppendUint32(b, 0)
	b = append(b, 0, 0, 0, 0)
	return endMsg(b, off)
}

var errShort = errors.New("message too short")

// parseHeader reads a netlink header and returns the message's payload and
// the rest of the buffer.
func parseHeader(b []byte) (h nlHeader, payload, rest []byte, err error) {
	if len(b) < nlmsgHdrLen {
		return h, nil, nil, errShort
	}
	h = nlHeader{ne.Uint32(b), ne.Uint16(b[4:]), ne.Uint16(b[6:]), ne.Uint32(b[8:]), ne.Uint32(b[12:])}
	if h.Len < nlmsgHdrLen || int(h.Len) > len(b) {
		return h, nil, nil, fmt.Errorf("bad netlink message length %d (buffer %d)", h.Len, len(b))
	}
	next := min(align4(int(h.Len)), len(b))
	return h, b[nlmsgHdrLen:h.Len], b[next:], nil
}

// attr is one rtattr.
type attr struct {
	Type uint16
	Data []byte
}

// parseAttrs splits a run of rtattrs.
func parseAttrs(b []byte) ([]attr, error) {
	var out []attr
	for len(b) >= 4 {
		l := int(ne.Uint16(b))
		if l < 4 || l > len(b) {
			return nil, fmt.Errorf("bad attribute length %d (%d left)", l, len(b))
		}
		out = append(out, attr{ne.Uint16(b[2:]) &^ 0xc000, b[4:l]})
		b = b[min(align4(l), len(b)):]
	}
	return out, nil
}

func parseAddr(b []byte) (netip.Addr, error) {
	a, ok := netip.AddrFromSlice(b)
	if !ok {
		return netip.Addr{}, fmt.Errorf("bad address length %d", len(b))
	}
	return a, nil
}

func parseVia(b []byte) (netip.Addr, error) {
	if len(b) < 2 {
		return netip.Addr{}, errShort
	}
	fam := ne.Uint16(b)
	a, err := parseAddr(b[2:])
	if err != nil {
		return a, err
	}
	if (fam == afInet) != a.Is4() || (fam != afInet && fam != afInet6) {
		return netip.Addr{}, fmt.Errorf("RTA_VIA family %d with a %d-byte address", fam, len(b)-2)
	}
	return a, nil
}

func parseU32(b []byte) (uint32, error) {
	if len(b) != 4 {
		return 0, fmt.Errorf("bad u32 attribute length %d", len(b))
	}
	return ne.Uint32(b), nil
}

// parseGateway reads RTA_GATEWAY/RTA_VIA of one next hop.
func parseGateway(fam uint8, a attr) (netip.Addr, error) {
	if a.Type == rtaVia {
		return parseVia(a.Data)
	}
	gw, err := parseAddr(a.Data)
	if err == nil && gw.Is4() != (fam == afInet) {
		err = fmt.Errorf("RTA_GATEWAY of %d bytes in a family %d route", len(a.Data), fam)
	}
	return gw, err
}

// parseRouteMsg decodes the payload of an RTM_NEWROUTE message (rtmsg and
// attributes). Attributes it does not know are skipped.
func parseRouteMsg(b []byte) (kRoute, error) {
	var r kRoute
	if len(b) < rtmsgLen {
		return r, errShort
	}
	fam, dstLen := b[0], int(b[1])
	if fam != afInet && fam != afInet6 {
		return r, fmt.Errorf("route family %d", fam)
	}
	r.Table, r.Protocol, r.Scope, r.Type = uint32(b[4]), b[5], b[6], b[7]
	flags := ne.Uint32(b[8:])
	r.Flags = flags &^ 0xff
	attrs, err := parseAttrs(b[rtmsgLen:])
	if err != nil {
		return r, err
	}
	dst := netip.IPv4Unspecified()
	if fam == afInet6 {
		dst = netip.IPv6Unspecified()
	}
	var single kHop
	single.Flags = uint8(flags)
	haveSingle := false
	for _, a := range attrs {
		switch a.Type {
		case rtaDst:
			if dst, err = parseAddr(a.Data); err != nil {
				return r, fmt.Errorf("RTA_DST: %w", err)
			}
			if dst.Is4() != (fam == afInet) {
				return r, fmt.Errorf("RTA_DST of %d bytes in a family %d route", len(a.Data), fam)
			}
		case rtaTable:
			if r.Table, err = parseU32(a.Data); err != nil {
				return r, fmt.Errorf("RTA_TABLE: %w", err)
			}
		case rtaPriority:
			if r.Metric, err = parseU32(a.Data); err != nil {
				return r, fmt.Errorf("RTA_PRIORITY: %w", err)
			}
		case rtaOif:
			v, err := parseU32(a.Data)
			if err != nil {
				return r, fmt.Errorf("RTA_OIF: %w", err)
			}
			single.Ifindex, haveSingle = int32(v), true
		case rtaGateway, rtaVia:
			if single.Gateway, err = parseGateway(fam, a); err != nil {
				return r, err
			}
			haveSingle = true
		case rtaMultipath:
			if r.Hops, err = parseMultipath(fam, a.Data); err != nil {
				return r, fmt.Errorf("RTA_MULTIPATH: %w", err)
			}
		}
	}
	if dstLen > dst.BitLen() {
		return r, fmt.Errorf("prefix length %d", dstLen)
	}
	r.Prefix = netip.PrefixFrom(dst, dstLen).Masked()
	if haveSingle && len(r.Hops) == 0 && (single.Ifindex != 0 || single.Gateway.IsValid()) {
		r.Hops = []kHop{single}
	}
	return r, nil
}

func parseMultipath(fam uint8, b []byte) ([]kHop, error) {
	var hops []kHop
	for len(b) >= rtnhLen {
		l := int(ne.Uint16(b))
		if l < rtnhLen || l > len(b) {
			return nil, fmt.Errorf("bad rtnexthop length %d", l)
		}
		h := kHop{Flags: b[2], Weight: b[3], Ifindex: int32(ne.Uint32(b[4:]))}
		attrs, err := parseAttrs(b[rtnhLen:l])
		if err != nil {
			return nil, err
		}
		for _, a := range attrs {
			if a.Type == rtaGateway || a.Type == rtaVia {
				if h.Gateway, err = parseGateway(fam, a); err != nil {
					return nil, err
				}
			}
		}
		hops = append(hops, h)
		b = b[min(align4(l), len(b)):]
	}
	if len(hops) == 1 {
		// The kernel dumps a route with one next hop as a single path; a
		// multipath of one would not survive a round trip.
		return nil, errors.New("one next hop in RTA_MULTIPATH")
	}
	return hops, nil
}

// nlError is an NLMSG_ERROR message: an ack (Errno 0) or a failure.
type nlError struct {
	Seq   uint32 // of the request it answers
	Errno int32  // positive errno, 0 for an ack
	Msg   string // extended ack message, if any
}

// parseError decodes the payload of NLMSG_ERROR: struct nlmsgerr (error and
// the request's header, or the whole request when not capped), then
// extended ack attributes when NLM_F_ACK_TLVS.
func parseError(h nlHeader, b []byte) (nlError, error) {
	if len(b) < 4+nlmsgHdrLen {
		return nlError{}, errShort
	}
	e := nlError{Errno: -int32(ne.Uint32(b)), Seq: ne.Uint32(b[4+8:])}
	rest := b[4+nlmsgHdrLen:]
	if h.Flags&nlmFCapped == 0 {
		// The original request follows in full.
		l := int(ne.Uint32(b[4:]))
		if l < nlmsgHdrLen || l-nlmsgHdrLen > len(rest) {
			return e, fmt.Errorf("bad original message length %d", l)
		}
		rest = rest[min(align4(l-nlmsgHdrLen), len(rest)):]
	}
	if h.Flags&nlmFAckTLVs != 0 {
		attrs, err := parseAttrs(rest)
		if err != nil {
			return e, err
		}
		for _, a := range attrs {
			if a.Type == nlmsgerrAttrMsg {
				m := a.Data
				for len(m) > 0 && m[len(m)-1] == 0 {
					m = m[:len(m)-1]
				}
				e.Msg = string(m)
			}
		}
	}
	return e, nil
}

// kNeigh is a neighbour or FDB entry (struct ndmsg and the attributes we use).
type kNeigh struct {
	Family   uint8
	Ifindex  int32
	State    uint16
	Flags    uint8
	Type     uint8
	Dst      netip.Addr
	LLAddr   []byte
	Vlan     uint16
	Master   int32
	Protocol uint8
}

// appendNeighMsg appends an RTM_NEWNEIGH/RTM_DELNEIGH message.
func appendNeighMsg(b []byte, typ, flags uint16, seq uint32, n *kNeigh) []byte {
	b, off := beginMsg(b, typ, flags, seq)
	b = append(b, n.Family, 0, 0, 0)
	b = ne.AppendUint32(b, uint32(n.Ifindex))
	b = ne.AppendUint16(b, n.State)
	b = append(b, n.Flags, n.Type)
	if n.Dst.IsValid() {
		b = appendAttrAddr(b, ndaDst, n.Dst)
	}
	if n.LLAddr != nil {
		b = appendAttr(b, ndaLLAddr, n.LLAddr)
	}
	if n.Vlan != 0 {
		b = appendAttr(b, ndaVlan, ne.AppendUint16(nil, n.Vlan))
	}
	if n.Master != 0 {
		b = appendAttrU32(b, ndaMaster, uint32(n.Master))
	}
	if n.Protocol != 0 {
		b = appendAttr(b, ndaProtocol, []byte{n.Protocol})
	}
	return endMsg(b, off)
}

// parseNeighMsg decodes the payload of an RTM_NEWNEIGH message.
func parseNeighMsg(b []byte) (kNeigh, error) {
	var n kNeigh
	if len(b) < ndmsgLen {
		return n, errShort
	}
	n.Family, n.Ifindex = b[0], int32(ne.Uint32(b[4:]))
	n.State, n.Flags, n.Type = ne.Uint16(b[8:]), b[10], b[11]
	attrs, err := parseAttrs(b[ndmsgLen:])
	if err != nil {
		return n, err
	}
	for _, a := range attrs {
		switch a.Type {
		case ndaDst:
			if n.Dst, err = parseAddr(a.Data); err != nil {
				return n, fmt.Errorf("NDA_DST: %w", err)
			}
		case ndaLLAddr:
			n.LLAddr = append([]byte{}, a.Data...)
		case ndaVlan:
			if len(a.Data) != 2 {
				return n, fmt.Errorf("NDA_VLAN of %d bytes", len(a.Data))
			}
			n.Vlan = ne.Uint16(a.Data)
		case ndaMaster:
			v, err := parseU32(a.Data)
			if err != nil {
				return n, fmt.Errorf("NDA_MASTER: %w", err)
			}
			n.Master = int32(v)
		case ndaProtocol:
			if len(a.Data) != 1 {
				return n, fmt.Errorf("NDA_PROTOCOL of %d bytes", len(a.Data))
			}
			n.Protocol = a.Data[0]
		}
	}
	return n, nil
}
