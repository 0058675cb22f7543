package fib

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Protocol is the rtm_protocol (and NDA_PROTOCOL) of everything this package
// installs; name it "fabric" in /etc/iproute2/rt_protos.d.
const Protocol = 200

// ProtocolName is the iproute2 name of [Protocol].
const ProtocolName = "fabric"

// DefaultMetric is the route priority used unless [WithMetric] says
// otherwise (FRR's zebra uses 20 for BGP routes).
const DefaultMetric = 20

// TableMain is the kernel's main table; a Route with Table 0 goes there.
const TableMain = 254

// Route is one kernel route we want: a prefix in a table with one next hop,
// or several (ECMP, RTA_MULTIPATH).
type Route struct {
	Table    uint32 // 0 means the main table (254)
	Prefix   netip.Prefix
	NextHops []NextHop
}

// NextHop is one path of a route. An IPv4 route with an IPv6 next hop
// (RFC 5549) is installed with RTA_VIA. A next hop without Addr is a
// directly connected route on Interface.
type NextHop struct {
	Addr      netip.Addr
	Interface string
	OnLink    bool // RTNH_F_ONLINK: the gateway is on the link even without a matching address (needs Interface)
}

// Remote is an EVPN remote VTEP for symmetric IRB: routes of a tenant VRF go
// "via VTEP dev SVI onlink", the neighbour entry turns the VTEP into the
// remote router MAC, and the FDB entries send that MAC into the VXLAN tunnel
// towards the VTEP.
type Remote struct {
	VTEP      netip.Addr
	RouterMAC net.HardwareAddr
	SVI       string // the L3VNI's SVI (a VLAN device or bridge)
	VXLAN     string // the L3VNI's VXLAN device (a bridge port)
	VLAN      uint16 // VLAN of the bridge FDB entry; 0: none (bridge without vlan filtering)
}

// Batch is an incremental change: routes to install or change, routes to
// withdraw (only Table and Prefix matter), and remotes to add or remove.
type Batch struct {
	Set           []Route
	Delete        []Route
	SetRemotes    []Remote
	DeleteRemotes []Remote
}

// RouteFailure is a route that could not be installed or withdrawn.
type RouteFailure struct {
	Route  Route
	Delete bool // the failed step was the withdrawal
	Err    error
}

// RemoteFailure is a remote whose neighbour or FDB entries could not be
// installed or removed.
type RemoteFailure struct {
	Remote Remote
	Delete bool
	Err    error
}

// Result is what a Sync or Apply reached.
type Result struct {
	Installed        int // routes added or replaced
	Deleted          int // routes withdrawn
	Unchanged        int // desired routes already installed as wanted
	RemotesInstalled int // neighbour/FDB entries added or replaced
	RemotesDeleted   int // neighbour/FDB entries removed
	Failures         []RouteFailure
	RemoteFailures   []RemoteFailure
}

// Failed reports whether any route or remote step failed.
func (r Result) Failed() bool { return len(r.Failures)+len(r.RemoteFailures) > 0 }

// ErrSomeFailed is wrapped by the error that Sync and Apply return when some
// routes or remotes failed while the others were programmed; the details are
// in Result.Failures and Result.RemoteFailures.
var ErrSomeFailed = errors.New("some FIB changes failed")

// ErrAckLost marks a route whose outcome is unknown because the kernel's
// answer was dropped (ENOBUFS on the netlink socket).
var ErrAckLost = errors.New("netlink answer lost (ENOBUFS), outcome unknown")

// ErrInvalid is wrapped by errors about a route or remote that cannot be
// expressed (e.g. an IPv6 prefix with an IPv4 next hop).
var ErrInvalid = errors.New("invalid route")

// ErrNotSupported is returned by New on systems other than Linux.
var ErrNotSupported = errors.New("fib: only supported on Linux")

func (r Result) err() error {
	n := len(r.Failures) + len(r.RemoteFailures)
	if n == 0 {
		return nil
	}
	var first error
	if len(r.Failures) > 0 {
		first = r.Failures[0].Err
	} else {
		first = r.RemoteFailures[0].Err
	}
	return fmt.Errorf("%w: %d failed, first: %w", ErrSomeFailed, n, first)
}

// String formats a route like iproute2 does, e.g.
// "10.255.0.2/32 via inet6 fe80::1 dev swp31 table 10".
func (r Route) String() string {
	var b strings.Builder
	b.WriteString(r.Prefix.String())
	if len(r.NextHops) > 1 {
		b.WriteString(" multipath")
	}
	for _, nh := range r.NextHops {
		if nh.Addr.IsValid() {
			b.WriteString(" via ")
			if nh.Addr.Is6() != r.Prefix.Addr().Is6() {
				b.WriteString("inet6 ")
			}
			b.WriteString(nh.Addr.String())
		}
		if nh.Interface != "" {
			b.WriteString(" dev ")
			b.WriteString(nh.Interface)
		}
		if nh.OnLink {
			b.WriteString(" onlink")
		}
	}
	fmt.Fprintf(&b, " table %d", r.table())
	return b.String()
}

func (r Route) table() uint32 {
	if r.Table == 0 {
		return TableMain
	}
	return r.Table
}

// where names a route for errors: "10.0.0.1/32 in table 10".
func (r Route) where() string { return fmt.Sprintf("%s in table %d", r.Prefix, r.table()) }

func (r Remote) String() string {
	return fmt.Sprintf("VTEP %s router-mac %s svi %s vxlan %s vlan %d", r.VTEP, r.RouterMAC, r.SVI, r.VXLAN, r.VLAN)
}

// routeKey is a route's identity in our tables (the kernel adds tos and
// metric; both are fixed for our routes). It holds no pointer, so that maps
// of 100k keys hash fast and cost the garbage collector nothing.
type routeKey struct {
	table uint32
	bits  uint8
	v6    bool
	addr  [16]byte
}

func (r Route) key() routeKey {
	p := r.Prefix.Masked()
	return routeKey{table: r.table(), bits: uint8(p.Bits()), v6: p.Addr().Is6(), addr: p.Addr().As16()}
}

// normalize returns the canonical form of r: table 0 -> main, the prefix
// masked, next hops without zones, sorted and deduplicated, IPv4-mapped
// IPv6 next hops unmapped. The next hops never alias r's; single next hops
// are shared through in (may be nil), as most routes of a table have one of
// a few next hops. Normalised routes are never modified.
func (r Route) normalize(in *hopInterner) Route {
	n := Route{Table: r.table(), Prefix: r.Prefix.Masked()}
	switch len(r.NextHops) {
	case 0:
	case 1:
		nh := r.NextHops[0]
		nh.Addr = nh.Addr.WithZone("").Unmap()
		n.NextHops = in.get(nh)
	default:
		n.NextHops = make([]NextHop, len(r.NextHops))
		for i, nh := range r.NextHops {
			nh.Addr = nh.Addr.WithZone("").Unmap()
			n.NextHops[i] = nh
		}
		slices.SortFunc(n.NextHops, compareNextHop)
		n.NextHops = slices.CompactFunc(n.NextHops, func(a, b NextHop) bool { return compareNextHop(a, b) == 0 })
	}
	return n
}

// hopInterner shares the next-hop slices of single-path routes. A nil
// interner shares nothing.
type hopInterner struct {
	m    map[NextHop][]NextHop
	last []NextHop // consecutive routes mostly have the same next hop
}

func newHopInterner() *hopInterner { return &hopInterner{m: map[NextHop][]NextHop{}} }

func (in *hopInterner) get(nh NextHop) []NextHop {
	if in == nil {
		return []NextHop{nh}
	}
	if in.last != nil && in.last[0] == nh {
		return in.last
	}
	s, ok := in.m[nh]
	if !ok {
		if len(in.m) >= 1<<16 {
			clear(in.m) // bounded: next hops come and go
		}
		s = []NextHop{nh}
		in.m[nh] = s
	}
	in.last = s
	return s
}

func compareNextHop(a, b NextHop) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Interface, b.Interface); c != 0 {
		return c
	}
	switch {
	case a.OnLink == b.OnLink:
		return 0
	case !a.OnLink:
		return -1
	default:
		return 1
	}
}

// equal compares two normalised routes.
func (r Route) equal(o Route) bool {
	return r.key() == o.key() && slices.Equal(r.NextHops, o.NextHops)
}

// validate checks what the kernel would reject or misread.
func (r Route) validate() error {
	if !r.Prefix.IsValid() {
		return fmt.Errorf("%w: no prefix", ErrInvalid)
	}
	if len(r.NextHops) == 0 {
		return fmt.Errorf("%w: no next hop", ErrInvalid)
	}
	if len(r.NextHops) > 255 {
		return fmt.Errorf("%w: %d next hops (at most 255)", ErrInvalid, len(r.NextHops))
	}
	for _, nh := range r.NextHops {
		if !nh.Addr.IsValid() && nh.Interface == "" {
			return fmt.Errorf("%w: next hop without address or interface", ErrInvalid)
		}
		if nh.OnLink && nh.Interface == "" {
			return fmt.Errorf("%w: onlink next hop %s without interface", ErrInvalid, nh.Addr)
		}
		if r.Prefix.Addr().Is6() && nh.Addr.IsValid() && nh.Addr.Is4() {
			return fmt.Errorf("%w: IPv6 prefix with IPv4 next hop %s", ErrInvalid, nh.Addr)
		}
	}
	return nil
}

// remoteKey identifies a remote; two remotes with the same key are the same
// entry set.
type remoteKey struct {
	vtep       netip.Addr
	mac        string
	svi, vxlan string
	vlan       uint16
}

func (r Remote) key() remoteKey {
	return remoteKey{r.VTEP.WithZone("").Unmap(), string(r.RouterMAC), r.SVI, r.VXLAN, r.VLAN}
}

func (r Remote) validate() error {
	switch {
	case !r.VTEP.IsValid():
		return fmt.Errorf("%w: remote without VTEP address", ErrInvalid)
	case len(r.RouterMAC) != 6 || bytes.Equal(r.RouterMAC, make([]byte, 6)):
		return fmt.Errorf("%w: remote %s: router MAC %q is not a unicast Ethernet address", ErrInvalid, r.VTEP, r.RouterMAC)
	case r.SVI == "" || r.VXLAN == "":
		return fmt.Errorf("%w: remote %s: SVI and VXLAN devices are required", ErrInvalid, r.VTEP)
	case r.VLAN >= 4095:
		return fmt.Errorf("%w: remote %s: VLAN %d", ErrInvalid, r.VTEP, r.VLAN)
	}
	return nil
}
