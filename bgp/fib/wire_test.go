package fib

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func littleEndian() bool { return ne.Uint16([]byte{1, 0}) == 1 }

// unhex reads bytes written as hex with spaces, newlines and # comments.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	var clean strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "#")
		clean.WriteString(strings.ReplaceAll(strings.ReplaceAll(line, " ", ""), "\t", ""))
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAppendRouteMsgGolden pins the bytes of the forms that are easy to get
// wrong: RTA_VIA (RFC 5549), RTA_TABLE above 255, onlink, RTA_MULTIPATH.
func TestAppendRouteMsgGolden(t *testing.T) {
	if !littleEndian() {
		t.Skip("golden bytes are little-endian")
	}
	for _, tc := range []struct {
		name  string
		typ   uint16
		flags uint16
		r     kRoute
		want  string
	}{{
		name: "10.255.0.2/32 via inet6 fe80::1 dev 7 table 10000", typ: rtmNewRoute, flags: nlmFRequest | nlmFCreate | nlmFExcl,
		r: kRoute{Table: 10000, Prefix: netip.MustParsePrefix("10.255.0.2/32"), Protocol: Protocol, Type: rtnUnicast, Metric: 20,
			Hops: []kHop{{Gateway: netip.MustParseAddr("fe80::1"), Ifindex: 7}}},
		want: `
		54000000 1800 0106 05000000 00000000 # nlmsghdr: len 84, RTM_NEWROUTE, REQUEST|EXCL|CREATE, seq 5
		02 20 00 00 00 c8 00 01 00000000     # rtmsg: AF_INET /32, table UNSPEC (>255), proto 200, universe, unicast
		0800 0100 0aff0002                   # RTA_DST
		0800 0f00 10270000                   # RTA_TABLE 10000
		0800 0600 14000000                   # RTA_PRIORITY 20
		0800 0400 07000000                   # RTA_OIF 7
		1600 1200 0a00 fe800000000000000000000000000001 0000 # RTA_VIA inet6 fe80::1, padded
		`,
	}, {
		name: "10.0.0.5/32 via 10.255.0.2 dev 9 onlink table 10", typ: rtmNewRoute, flags: nlmFRequest | nlmFCreate | nlmFReplace,
		r: kRoute{Table: 10, Prefix: netip.MustParsePrefix("10.0.0.5/32"), Protocol: Protocol, Type: rtnUnicast, Metric: 20,
			Hops: []kHop{{Gateway: netip.MustParseAddr("10.255.0.2"), Ifindex: 9, Flags: rtnhFOnlink}}},
		want: `
		44000000 1800 0105 05000000 00000000
		02 20 00 00 0a c8 00 01 04000000     # table 10 in rtm_table too; rtm_flags RTNH_F_ONLINK
		0800 0100 0a000005
		0800 0f00 0a000000
		0800 0600 14000000
		0800 0400 09000000
		0800 0500 0aff0002                   # RTA_GATEWAY
		`,
	}, {
		name: "10.1.0.0/16 multipath via 10.0.0.1 dev 2, via inet6 fe80::2 dev 3", typ: rtmNewRoute, flags: nlmFRequest,
		r: kRoute{Table: 254, Prefix: netip.MustParsePrefix("10.1.0.0/16"), Protocol: Protocol, Type: rtnUnicast, Metric: 20,
			Hops: []kHop{{Gateway: netip.MustParseAddr("10.0.0.1"), Ifindex: 2}, {Gateway: netip.MustParseAddr("fe80::2"), Ifindex: 3}}},
		want: `
		68000000 1800 0100 05000000 00000000
		02 10 00 00 fe c8 00 01 00000000
		0800 0100 0a010000
		0800 0f00 fe000000
		0800 0600 14000000
		3400 0900                            # RTA_MULTIPATH, 52 bytes
		1000 00 00 02000000 0800 0500 0a000001 # rtnexthop dev 2, RTA_GATEWAY
		2000 00 00 03000000 1600 1200 0a00 fe800000000000000000000000000002 0000 # rtnexthop dev 3, RTA_VIA
		`,
	}, {
		name: "delete 2001:db8::/64 table 300", typ: rtmDelRoute, flags: nlmFRequest,
		r: kRoute{Table: 300, Prefix: netip.MustParsePrefix("2001:db8::/64"), Protocol: Protocol, Scope: rtScopeNowhere, Metric: 20},
		want: `
		40000000 1900 0100 05000000 00000000
		0a 40 00 00 00 c8 ff 00 00000000
		1400 0100 20010db8000000000000000000000000
		0800 0f00 2c010000
		0800 0600 14000000
		`,
	}} {
		got := appendRouteMsg(nil, tc.typ, tc.flags, 5, &tc.r)
		if want := unhex(t, tc.want); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %x\nwant %x", tc.name, got, want)
		}
	}
}

func TestRouteRoundTrip(t *testing.T) {
	for _, r := range []kRoute{
		{Table: 10, Prefix: netip.MustParsePrefix("10.0.0.1/32"), Protocol: Protocol, Type: rtnUnicast, Metric: 20, Hops: []kHop{{Gateway: netip.MustParseAddr("10.255.0.1"), Ifindex: 4}}},
		{Table: 1 << 20, Prefix: netip.MustParsePrefix("10.255.0.2/32"), Protocol: Protocol, Type: rtnUnicast, Metric: 20, Hops: []kHop{{Gateway: netip.MustParseAddr("fe80::1"), Ifindex: 4, Flags: rtnhFOnlink}}},
		{Table: 254, Prefix: netip.MustParsePrefix("0.0.0.0/0"), Protocol: Protocol, Type: rtnUnicast, Scope: rtScopeLink, Hops: []kHop{{Ifindex: 9}}},
		{Table: 20, Prefix: netip.MustParsePrefix("2001:db8::/48"), Protocol: 2, Type: rtnUnicast, Flags: rtmFCloned, Metric: 1024, Hops: []kHop{
			{Gateway: netip.MustParseAddr("fe80::1"), Ifindex: 4, Weight: 3}, {Gateway: netip.MustParseAddr("fe80::2"), Ifindex: 5, Flags: rtnhFOnlink}}},
		{Table: 7, Prefix: netip.MustParsePrefix("10.9.0.0/16"), Protocol: Protocol, Scope: rtScopeNowhere},
	} {
		b := appendRouteMsg(nil, rtmNewRoute, nlmFRequest, 1, &r)
		h, payload, rest, err := parseHeader(b)
		if err != nil || len(rest) != 0 || h.Type != rtmNewRoute || int(h.Len) != len(b) {
			t.Fatalf("parseHeader: %+v, %d left, %v", h, len(rest), err)
		}
		got, err := parseRouteMsg(payload)
		if err != nil {
			t.Fatalf("parseRouteMsg: %v", err)
		}
		if diff := cmp.Diff(r, got, netipCmp); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestParseRouteMsgErrors(t *testing.T) {
	good := appendRouteMsg(nil, rtmNewRoute, 0, 1, &kRoute{Table: 1, Prefix: netip.MustParsePrefix("10.0.0.0/8"),
		Hops: []kHop{{Gateway: netip.MustParseAddr("10.0.0.1")}, {Gateway: netip.MustParseAddr("10.0.0.2")}}})
	for i := nlmsgHdrLen; i < len(good); i++ {
		// Every truncation either decodes or fails; none panics.
		parseRouteMsg(good[nlmsgHdrLen:i])
	}
	if _, err := parseRouteMsg([]byte{7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}); err == nil {
		t.Errorf("family 7 accepted")
	}
}

func TestParseError(t *testing.T) {
	req := appendRouteMsg(nil, rtmNewRoute, nlmFRequest, 42, &kRoute{Table: 1, Prefix: netip.MustParsePrefix("10.0.0.0/8")})
	for _, tc := range []struct {
		name string
		msg  []byte
		want nlError
	}{
		{"capped with message", appendErrorMsg(nil, req, -101, true, "Nexthop has invalid gateway"), nlError{Seq: 42, Errno: 101, Msg: "Nexthop has invalid gateway"}},
		{"full request, no TLVs", appendErrorMsg(nil, req, -17, false, ""), nlError{Seq: 42, Errno: 17}},
		{"ack", appendErrorMsg(nil, req, 0, true, ""), nlError{Seq: 42}},
	} {
		h, payload, _, err := parseHeader(tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseError(h, payload)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// appendErrorMsg builds an NLMSG_ERROR like the kernel's netlink_ack:
// capped (NETLINK_CAP_ACK) or with the whole request, and an extended ack
// message when msg is set.
func appendErrorMsg(b, req []byte, errno int32, capped bool, msg string) []byte {
	flags := uint16(0)
	if capped {
		flags |= nlmFCapped
	}
	if msg != "" {
		flags |= nlmFAckTLVs
	}
	b, off := beginMsg(b, nlmsgError, flags, ne.Uint32(req[8:]))
	b = ne.AppendUint32(b, uint32(errno))
	if capped {
		b = append(b, req[:nlmsgHdrLen]...)
	} else {
		b = append(b, req...)
	}
	if msg != "" {
		b = appendAttr(b, nlmsgerrAttrMsg, append([]byte(msg), 0))
	}
	return endMsg(b, off)
}

func TestNeighRoundTrip(t *testing.T) {
	for _, n := range []kNeigh{
		{Family: afInet, Ifindex: 5, State: nudPermanent, Dst: netip.MustParseAddr("10.255.0.2"), LLAddr: []byte{2, 0, 10, 255, 0, 2}, Protocol: Protocol},
		{Family: afBridge, Ifindex: 6, State: nudPermanent, Flags: ntfSelf, Dst: netip.MustParseAddr("2001:db8::2"), LLAddr: []byte{2, 0, 10, 255, 0, 2}},
		{Family: afBridge, Ifindex: 6, State: nudNoarp, Flags: ntfMaster, LLAddr: []byte{2, 0, 10, 255, 0, 2}, Vlan: 1000, Master: 4},
	} {
		b := appendNeighMsg(nil, rtmNewNeigh, nlmFRequest, 1, &n)
		_, payload, _, err := parseHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseNeighMsg(payload)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(n, got, netipCmp); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

// Fuzz targets: whatever the decoders accept must survive an encode and a
// second decode unchanged.

func FuzzRouteMsg(f *testing.F) {
	for _, r := range []kRoute{
		{Table: 10000, Prefix: netip.MustParsePrefix("10.255.0.2/32"), Protocol: Protocol, Type: rtnUnicast, Metric: 20, Hops: []kHop{{Gateway: netip.MustParseAddr("fe80::1"), Ifindex: 7}}},
		{Table: 20, Prefix: netip.MustParsePrefix("2001:db8::/48"), Hops: []kHop{{Gateway: netip.MustParseAddr("fe80::1"), Ifindex: 4}, {Gateway: netip.MustParseAddr("10.0.0.1"), Ifindex: 5, Flags: rtnhFOnlink}}},
	} {
		_, payload, _, _ := parseHeader(appendRouteMsg(nil, rtmNewRoute, 0, 1, &r))
		f.Add(payload)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseRouteMsg(data)
		if err != nil {
			return
		}
		_, payload, _, err := parseHeader(appendRouteMsg(nil, rtmNewRoute, 0, 1, &r))
		if err != nil {
			t.Fatalf("re-encoded message: %v", err)
		}
		got, err := parseRouteMsg(payload)
		if err != nil {
			t.Fatalf("decoding the re-encoded %+v: %v", r, err)
		}
		if diff := cmp.Diff(r, got, netipCmp); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	})
}

func FuzzNeighMsg(f *testing.F) {
	n := kNeigh{Family: afBridge, Ifindex: 6, State: nudNoarp, Flags: ntfMaster, LLAddr: []byte{2, 0, 10, 255, 0, 2}, Vlan: 1000, Master: 4, Protocol: Protocol, Dst: netip.MustParseAddr("10.0.0.1")}
	_, payload, _, _ := parseHeader(appendNeighMsg(nil, rtmNewNeigh, 0, 1, &n))
	f.Add(payload)
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := parseNeighMsg(data)
		if err != nil {
			return
		}
		_, payload, _, err := parseHeader(appendNeighMsg(nil, rtmNewNeigh, 0, 1, &n))
		if err != nil {
			t.Fatalf("re-encoded message: %v", err)
		}
		got, err := parseNeighMsg(payload)
		if err != nil {
			t.Fatalf("decoding the re-encoded %+v: %v", n, err)
		}
		if diff := cmp.Diff(n, got, netipCmp); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	})
}

func FuzzErrorMsg(f *testing.F) {
	req := appendRouteMsg(nil, rtmNewRoute, nlmFRequest, 42, &kRoute{Table: 1, Prefix: netip.MustParsePrefix("10.0.0.0/8")})
	f.Add(appendErrorMsg(nil, req, -101, true, "Nexthop has invalid gateway"))
	f.Add(appendErrorMsg(nil, req, -17, false, ""))
	f.Fuzz(func(t *testing.T, data []byte) {
		// A stream of messages: headers and errors decode or fail, never
		// panic; a decoded capped error re-encodes to the same error.
		for len(data) > 0 {
			h, payload, rest, err := parseHeader(data)
			if err != nil {
				return
			}
			data = rest
			e, err := parseError(h, payload)
			if err != nil || strings.IndexByte(e.Msg, 0) >= 0 {
				continue
			}
			orig := make([]byte, nlmsgHdrLen)
			ne.PutUint32(orig[8:], e.Seq)
			ne.PutUint32(orig, nlmsgHdrLen)
			_, p2, _, err := parseHeader(appendErrorMsg(nil, orig, -e.Errno, true, e.Msg))
			if err != nil {
				t.Fatal(err)
			}
			h.Flags = nlmFCapped
			if e.Msg != "" {
				h.Flags |= nlmFAckTLVs
			}
			got, err := parseError(h, p2)
			if err != nil {
				t.Fatalf("decoding the re-encoded %+v: %v", e, err)
			}
			if diff := cmp.Diff(e, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		}
	})
}
