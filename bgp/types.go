package bgp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Family is an address family / subsequent address family pair.
type Family string

// The families the fabric uses.
const (
	IPv4Unicast Family = "ipv4-unicast"
	IPv6Unicast Family = "ipv6-unicast"
	// EVPN is l2vpn-evpn; the fabric only originates and imports type-5
	// (IP prefix) routes.
	EVPN Family = "l2vpn-evpn"
)

// Global is the speaker's global configuration.
type Global struct {
	ASN      uint32
	RouterID netip.Addr
	// ListenPort is the TCP port to listen on: 0 means 179, -1 means no
	// listener (tests).
	ListenPort int32
	// ListenAddrs restricts the listener (default: all addresses).
	ListenAddrs []string
	// Multipath enables ECMP: every best-path update carries all equal-cost
	// paths.
	Multipath bool
	// GracefulRestart enables graceful restart (RFC 4724) with this restart
	// time on every peer that sets Peer.GracefulRestart; 0 disables it.
	GracefulRestart time.Duration
	// Restarting tells that the kernel still forwards with the routes of a
	// previous run (the agent restarted, the machine did not): the sessions
	// configured within SelectionDeferral of the start announce the restart
	// state (RFC 4724 4.1), and the speaker sends nothing, End-of-RIB
	// included, until every peer sent its End-of-RIB or SelectionDeferral
	// passed, so peers keep our stale routes until ours are complete.
	Restarting        bool
	SelectionDeferral time.Duration
}

// Peer is one BGP session's configuration.
//
// A peer is either unnumbered (Interface set, Address zero: the session goes
// to the IPv6 link-local neighbour on that interface, IPv4 routes carry IPv6
// next hops per RFC 5549) or numbered (Address set).
type Peer struct {
	// Interface names the link of an unnumbered peer.
	Interface string
	// Address is a numbered peer's address.
	Address netip.Addr
	// ASN is the peer's AS; 0 accepts any AS other than ours (eBGP,
	// "remote-as external").
	ASN uint32
	// VRF puts the session into that VRF's RIB; "" is the global RIB.
	VRF string
	// Families the session negotiates (default: IPv4Unicast).
	Families []Family
	// Allowed, when not nil, is the import allowance: a received prefix is
	// accepted only when it lies inside one of these prefixes (equal or more
	// specific); everything else is rejected and counted. nil accepts all.
	// An empty non-nil slice rejects everything.
	Allowed []netip.Prefix
	// MaxPrefixes limits the prefixes accepted per family; 0 is no limit.
	MaxPrefixes uint32
	// HoldTime and KeepaliveInterval of the session; 0 leaves the defaults
	// (9 s and 3 s, data-centre timers).
	HoldTime          time.Duration
	KeepaliveInterval time.Duration
	// ConnectRetry is the connect retry timer; 0 means 1 s.
	ConnectRetry time.Duration
	// GracefulRestart enables graceful restart on this session (with the
	// restart time of Global.GracefulRestart).
	GracefulRestart bool
	// Description is free text (e.g. the neighbour's hostname).
	Description string
	// Passive makes the session wait for the neighbour to connect; it
	// never dials.
	Passive bool
	// Upstream marks a neighbour of a higher tier (a leaf's spines, a
	// firewall's leaves): paths learned from one upstream neighbour are
	// not passed on to another (valley-free; needs ASN).
	Upstream bool
}

// Key identifies a peer: VRF plus interface or address.
func (p Peer) Key() PeerKey {
	if p.Interface != "" {
		return PeerKey{VRF: p.VRF, Name: p.Interface}
	}
	return PeerKey{VRF: p.VRF, Name: p.Address.String()}
}

// PeerKey identifies a peer.
type PeerKey struct {
	VRF string
	// Name is the interface of an unnumbered peer, the address of a
	// numbered one.
	Name string
}

func (k PeerKey) String() string {
	if k.VRF == "" {
		return k.Name
	}
	return k.VRF + "/" + k.Name
}

// VRF is a BGP VRF instance (a tenant VRF's RIB). Its routes are exchanged
// with the peers that have Peer.VRF set to its name. Type-5 routes are not
// handled by the speaker's VRFs (GoBGP does not convert them): the reconciler
// originates and imports them in the global RIB.
type VRF struct {
	Name string
	// RD is the route distinguisher, "<router-id>:<VNI>".
	RD string
	// ImportRTs and ExportRTs are route targets, "<ASN>:<VNI>".
	ImportRTs []string
	ExportRTs []string
	// ID is a small unique number (the VNI serves well).
	ID uint32
}

// Path is one route as the speaker sees it: an advertisement we originate, or
// a path received from a peer.
type Path struct {
	Family Family
	// VRF is set for IPv4/IPv6 unicast paths in a VRF RIB.
	VRF    string
	Prefix netip.Prefix
	// NextHop is the BGP next hop. For paths received over an unnumbered
	// session it is the peer's IPv6 link-local address, and Interface names
	// the link. For origination, the zero value means "self".
	NextHop   netip.Addr
	Interface string
	// ASPath of a received path (leftmost first).
	ASPath []uint32
	// Peer that sent the path; zero for paths we originated.
	Peer PeerKey
	// Local is true for paths this speaker originated.
	Local bool
	// LocalPref of an originated path; 0 leaves the default (100). The
	// reconciler originates the EVPN imports it hands to machines with a
	// lower preference, so a machine's own announcement stays the best path.
	LocalPref uint32

	// EVPN type-5 attributes (Family EVPN only).
	RD           string
	RouteTargets []string
	RouterMAC    net.HardwareAddr
	// VNI is the type-5 label (the L3VNI).
	VNI uint32
}

// Update is a change of the best path(s) of one destination.
type Update struct {
	Family Family
	VRF    string
	Prefix netip.Prefix
	// RD distinguishes EVPN destinations with the same prefix.
	RD string
	// Paths are the best path and, with multipath, every equal-cost path.
	// Empty: the destination was withdrawn.
	Paths []Path
}

// SessionState is a BGP FSM state.
type SessionState string

// The FSM states.
const (
	StateIdle        SessionState = "idle"
	StateConnect     SessionState = "connect"
	StateActive      SessionState = "active"
	StateOpenSent    SessionState = "opensent"
	StateOpenConfirm SessionState = "openconfirm"
	StateEstablished SessionState = "established"
)

// PeerState is a peer's session and prefix counters.
type PeerState struct {
	Key         PeerKey
	Description string
	// Address is the peer's transport address (the resolved link-local
	// address of an unnumbered peer).
	Address  string
	ASN      uint32
	State    SessionState
	Uptime   time.Duration
	Families []FamilyState
}

// FamilyState counts a session's prefixes in one family.
type FamilyState struct {
	Family   Family
	Received uint64
	Accepted uint64
	// Rejected = Received - Accepted: refused by the import allowance or
	// the max-prefix limit.
	Rejected uint64
}

// Speaker is the embedded BGP speaker, the only thing this package asks of
// GoBGP (bgp/gobgp implements it; no GoBGP type crosses it).
type Speaker interface {
	// Start starts the speaker with its global configuration.
	Start(ctx context.Context, g Global) error
	// Stop stops the speaker. With graceful restart configured, sessions
	// are closed without a NOTIFICATION so peers keep our routes for the
	// restart time.
	Stop(ctx context.Context) error

	// AddVRF and DeleteVRF manage VRF RIBs.
	AddVRF(ctx context.Context, v VRF) error
	DeleteVRF(ctx context.Context, name string) error

	// AddPeer adds a session; UpdatePeer changes one in place (allowance,
	// max prefixes, timers) without resetting it where GoBGP allows;
	// DeletePeer removes it.
	AddPeer(ctx context.Context, p Peer) error
	UpdatePeer(ctx context.Context, p Peer) error
	DeletePeer(ctx context.Context, k PeerKey) error
	// ResetPeer hard-resets a session now (e.g. its link lost carrier).
	ResetPeer(ctx context.Context, k PeerKey) error

	// Advertise originates paths (global, VRF or EVPN type-5); Withdraw
	// withdraws paths that Advertise originated (matched by family, VRF,
	// RD and prefix).
	Advertise(ctx context.Context, paths []Path) error
	Withdraw(ctx context.Context, paths []Path) error

	// WatchBest calls fn with batches of best-path changes, first the whole
	// current table (every family, global and VRF RIBs), then changes as
	// they happen, until ctx is done. fn is called from one goroutine.
	WatchBest(ctx context.Context, fn func([]Update)) error
	// Peers returns every session's state.
	Peers(ctx context.Context) ([]PeerState, error)
}

// RD returns the route distinguisher of a tenant VRF: "<router-id>:<VNI>",
// a type-1 RD. Its assigned number has 16 bits, so a VNI above 65535
// contributes its low 16 bits; Desired.Validate refuses two VRFs of one
// device whose RDs collide that way.
func RD(routerID netip.Addr, vni uint32) string {
	return fmt.Sprintf("%s:%d", routerID, vni&0xffff)
}

// RT returns the auto-derived route target of a tenant VRF, "<ASN>:<VNI>"
// as a two-octet-AS-specific extended community (the VNI needs the four-octet
// local administrator). A four-octet ASN contributes its low 16 bits, as RFC
// 8365 section 5.1.2.1 (and FRR's auto RT) do. Imports match on the VNI
// (MatchRT), because with one ASN per switch every leaf exports another RT.
func RT(asn, vni uint32) string {
	return fmt.Sprintf("%d:%d", asn&0xffff, vni)
}

// MatchRT reports whether the route target rt ("<AS>:<local>") carries the
// VNI vni in its local administrator, whatever the AS.
func MatchRT(rt string, vni uint32) bool {
	i := strings.LastIndexByte(rt, ':')
	return i >= 0 && rt[i+1:] == strconv.FormatUint(uint64(vni), 10)
}
