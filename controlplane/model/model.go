// Package model holds the controller's own record types: what the inventory
// stores (JSON-encoded) and what the compiler produces. It owns the types and
// their invariants only; it must not do I/O, and it must not import protobuf
// or gRPC (conversion to the API types happens in the server package).
package model

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Role is what a device is in the fabric.
type Role string

// Device roles.
const (
	RoleLeaf     Role = "leaf"
	RoleSpine    Role = "spine"
	RoleFirewall Role = "firewall"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool {
	switch r {
	case RoleLeaf, RoleSpine, RoleFirewall:
		return true
	}
	return false
}

// Network is a tenant network: one prefix, one VNI (and so one VRF per
// device it is present on).
type Network struct {
	Name   string       `json:"name"`
	Prefix netip.Prefix `json:"prefix"`
	VNI    uint32       `json:"vni"`
	// Parent is the network whose prefix this child network's prefix was
	// carved from; empty for a top-level network.
	Parent string `json:"parent,omitempty"`
	// External marks an external (internet) network: firewalls hold its
	// VRF and leak the tenant VRFs' default route into it.
	External bool `json:"external,omitempty"`
}

// Connection is one machine NIC cabled to one switch port.
type Connection struct {
	Device string `json:"device"`
	Port   string `json:"port"`
}

// Allocation puts a machine into a network.
type Allocation struct {
	Network string     `json:"network"`
	IP      netip.Addr `json:"ip"`
	// Revision at which the allocation was made.
	Revision uint64 `json:"revision"`
	// Announce are extra prefixes the machine may announce over BGP
	// besides its own address (e.g. service or egress CIDRs; 0.0.0.0/0 for
	// an exit router).
	Announce []netip.Prefix `json:"announce,omitempty"`
}

// Allowed returns the prefixes the machine may announce: its address as a
// host prefix, then Announce.
func (a Allocation) Allowed() []netip.Prefix {
	out := make([]netip.Prefix, 0, 1+len(a.Announce))
	if a.IP.IsValid() {
		out = append(out, netip.PrefixFrom(a.IP, a.IP.BitLen()))
	}
	return append(out, a.Announce...)
}

// Machine is a bare-metal server and where it is cabled.
type Machine struct {
	Name string `json:"name"`
	// Connections is the effective wiring, sorted by device, then port: the
	// manual cabling when Manual is set, else Learned.
	Connections []Connection `json:"connections,omitempty"`
	// Learned is where LLDP currently sees the machine (leaf ports whose
	// neighbour announces the machine's name), sorted.
	Learned []Connection `json:"learned,omitempty"`
	// Manual tells that Connections is an operator override (CableMachine)
	// rather than Learned.
	Manual bool `json:"manual,omitempty"`
	// ChassisID is the LLDP chassis id the machine last announced.
	ChassisID string `json:"chassisID,omitempty"`
	// LastSeen is the newest LLDP last-seen time of the machine on any
	// switch port; zero when never seen.
	LastSeen time.Time `json:"lastSeen,omitzero"`
	// AllocateRequest and FreeRequest remember the request id of the
	// machine's last allocate and free, so that a retry returns the first
	// result instead of an error.
	AllocateRequest *AllocateRequest `json:"allocateRequest,omitempty"`
	FreeRequest     string           `json:"freeRequest,omitempty"`
	// Allocation is nil while the machine is free.
	Allocation *Allocation `json:"allocation,omitempty"`
	// Revision of the machine's last change that affects device configs:
	// allocate, free, or recabling while allocated. A device has converged
	// for the machine once it applied a version >= Revision.
	Revision uint64 `json:"revision,omitempty"`
}

// Attachment is what one allocated machine contributes to one device's
// config: its network and the device's ports it is cabled to. The inventory
// keeps one per (device, machine) so that a device's config can be compiled
// without reading every machine.
type Attachment struct {
	Machine string `json:"machine"`
	Network string `json:"network"`
	// Ports sorted.
	Ports []string `json:"ports"`
	// Allowed are the prefixes the machine may announce (Allocation.Allowed).
	Allowed []netip.Prefix `json:"allowed,omitempty"`
}

// AllocateRequest is an allocation made under a client request id.
type AllocateRequest struct {
	ID         string     `json:"id"`
	Network    string     `json:"network"`
	Allocation Allocation `json:"allocation"`
}

// Liveness of a machine from its LLDP frames.
type Liveness string

// Liveness states.
const (
	// LivenessAlive: seen within the alive threshold.
	LivenessAlive Liveness = "alive"
	// LivenessUnknown: not seen within the alive threshold (but within the
	// dead threshold), or never seen.
	LivenessUnknown Liveness = "unknown"
	// LivenessDead: not seen for longer than the dead threshold.
	LivenessDead Liveness = "dead"
)

// LivenessAt classifies a last-seen time at now: alive when seen at most
// alive ago, dead when seen more than dead ago, unknown in between and when
// never seen (zero lastSeen). A last-seen time in the future counts as now.
func LivenessAt(lastSeen, now time.Time, alive, dead time.Duration) Liveness {
	if lastSeen.IsZero() {
		return LivenessUnknown
	}
	age := now.Sub(lastSeen)
	switch {
	case age <= alive:
		return LivenessAlive
	case age > dead:
		return LivenessDead
	}
	return LivenessUnknown
}

// Neighbor is one LLDP neighbour an agent sees on one of its ports.
type Neighbor struct {
	// Port is the device's own port the frames arrive on.
	Port              string    `json:"port"`
	ChassisID         string    `json:"chassisID"`
	PortID            string    `json:"portID,omitempty"`
	PortDescription   string    `json:"portDescription,omitempty"`
	SystemName        string    `json:"systemName,omitempty"`
	SystemDescription string    `json:"systemDescription,omitempty"`
	MgmtAddrs         []string  `json:"mgmtAddrs,omitempty"`
	TTLSeconds        uint32    `json:"ttlSeconds,omitempty"`
	LastSeen          time.Time `json:"lastSeen,omitzero"`
}

// Identity is the name the neighbour goes by: its system name, or its
// chassis id when it announces none.
func (n Neighbor) Identity() string {
	if n.SystemName != "" {
		return n.SystemName
	}
	return n.ChassisID
}

// PlannedPort is one port's expected neighbour in a cabling plan.
type PlannedPort struct {
	Port     string `json:"port"`
	Neighbor string `json:"neighbor"`
}

// CablingPlan is the expected neighbours of a device's ports, sorted by port.
type CablingPlan struct {
	Device string        `json:"device"`
	Ports  []PlannedPort `json:"ports"`
}

// Finding kinds.
const (
	FindingMissing   = "missing"
	FindingMismatch  = "mismatch"
	FindingUnplanned = "unplanned"
)

// Finding is one difference between a cabling plan and what LLDP sees.
type Finding struct {
	Device   string `json:"device"`
	Port     string `json:"port"`
	Kind     string `json:"kind"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
}

// Port is a device port as the agent reported it.
type Port struct {
	Name   string `json:"name"`
	MAC    string `json:"mac,omitempty"`
	MTU    uint32 `json:"mtu,omitempty"`
	OperUp bool   `json:"operUp,omitempty"`
}

// StepError is one failed reconcile step reported by an agent.
type StepError struct {
	Step    string `json:"step"`
	Message string `json:"message"`
}

// Device is a switch or firewall running fabric-agent.
type Device struct {
	Hostname   string `json:"hostname"`
	Role       Role   `json:"role"`
	ChassisMAC string `json:"chassisMAC,omitempty"`
	// Ports sorted by name.
	Ports []Port `json:"ports,omitempty"`
	// AppliedVersion is the config version the agent last reported, and
	// Errors the steps that failed applying it.
	AppliedVersion uint64      `json:"appliedVersion,omitempty"`
	Errors         []StepError `json:"errors,omitempty"`
	// LastSeen is when the device last registered or reported status.
	LastSeen time.Time `json:"lastSeen"`
	// Loopback is the device's loopback address from the controller's
	// pool, assigned at first registration and kept for the device's life.
	Loopback netip.Addr `json:"loopback,omitzero"`
	// ASN is the device's BGP AS number from the controller's pool,
	// assigned at first registration and kept for the device's life.
	ASN uint32 `json:"asn,omitempty"`
	// Drift is the agent's last drift report (informational).
	Drift Drift `json:"drift,omitzero"`
	// Routing is the agent's last BGP and FIB report.
	Routing *Routing `json:"routing,omitempty"`
}

// Routing is an agent's BGP sessions and FIB state.
type Routing struct {
	Sessions []BGPSession `json:"sessions,omitempty"`
	// RoutesInstalled counts the kernel routes the agent installed.
	RoutesInstalled uint64 `json:"routesInstalled,omitempty"`
	// InstallFailures counts routes that failed to install; FailedRoutes
	// names a few of them with the reason.
	InstallFailures uint64   `json:"installFailures,omitempty"`
	FailedRoutes    []string `json:"failedRoutes,omitempty"`
	EVPNExported    uint64   `json:"evpnExported,omitempty"`
	EVPNImported    uint64   `json:"evpnImported,omitempty"`
}

// BGPSession is one BGP session's state as an agent reports it.
type BGPSession struct {
	Peer        string        `json:"peer"`
	VRF         string        `json:"vrf,omitempty"`
	Description string        `json:"description,omitempty"`
	Address     string        `json:"address,omitempty"`
	ASN         uint32        `json:"asn,omitempty"`
	State       string        `json:"state"`
	Uptime      time.Duration `json:"uptime,omitempty"`
	Received    uint64        `json:"received,omitempty"`
	Accepted    uint64        `json:"accepted,omitempty"`
	Rejected    uint64        `json:"rejected,omitempty"`
	Installed   uint64        `json:"installed,omitempty"`
}

// Drift counts kernel changes behind an agent's back: repairs of managed
// objects and changes to unmanaged ones (reported, never reverted).
type Drift struct {
	Repairs          uint64 `json:"repairs,omitempty"`
	UnmanagedChanges uint64 `json:"unmanagedChanges,omitempty"`
	LastUnmanaged    string `json:"lastUnmanaged,omitempty"`
}

// HasPort reports whether the device reported a port of that name.
func (d Device) HasPort(name string) bool {
	for _, p := range d.Ports {
		if p.Name == name {
			return true
		}
	}
	return false
}

// VRF is one tenant VRF on a device.
type VRF struct {
	// Name is the kernel device name, vrf<VNI>.
	Name string `json:"name"`
	VNI  uint32 `json:"vni"`
	// Table is the kernel routing table id.
	Table   uint32 `json:"table"`
	Network string `json:"network"`
	// Ports are the machine-facing ports in the VRF, sorted.
	Ports []string `json:"ports"`
	// L3VNI tells whether the VRF has an L3VNI (VXLAN device with VNI, a
	// VLAN on the bridge, an SVI in the VRF).
	L3VNI bool `json:"l3vni,omitempty"`
	// MachinePeers are the BGP sessions with the machines on Ports, sorted
	// by port.
	MachinePeers []MachinePeer `json:"machinePeers,omitempty"`
	// External is set, on firewalls, on the VRF of an external network.
	External bool `json:"external,omitempty"`
}

// MachinePeer is a BGP session (eBGP unnumbered, inside the tenant VRF) with
// a machine on one port. Only prefixes inside Allowed are accepted.
type MachinePeer struct {
	Port    string         `json:"port"`
	Machine string         `json:"machine"`
	Allowed []netip.Prefix `json:"allowed"`
	// MaxPrefixes is the max-prefix guard of the session.
	MaxPrefixes uint32 `json:"maxPrefixes,omitempty"`
}

// UnderlayPeer is an underlay BGP session on a fabric link to another
// switch, as LLDP sees the link: eBGP unnumbered over IPv6 link-local, or
// numbered over a /31 when Address is set.
type UnderlayPeer struct {
	Port string `json:"port"`
	// Peer is the neighbour switch's hostname, PeerASN its AS number.
	Peer    string `json:"peer"`
	PeerASN uint32 `json:"peerASN"`
	// Passive: this end listens, the neighbour dials (exactly one end of
	// every link dials; see compile.Underlay).
	Passive bool `json:"passive,omitempty"`
	// Address is this end's address on the port, a /31 (numbered
	// underlay); PeerAddress the neighbour's address in the same /31, the
	// session's peer. Both invalid: unnumbered.
	Address     netip.Prefix `json:"address,omitzero"`
	PeerAddress netip.Addr   `json:"peerAddress,omitzero"`
}

// PortConfig is a port the controller hands to the agent.
type PortConfig struct {
	Name string `json:"name"`
	// Description goes to the port's alias (the machine's name).
	Description string `json:"description,omitempty"`
	AdminUp     bool   `json:"adminUp,omitempty"`
}

// DeviceConfig is a device's compiled desired config.
type DeviceConfig struct {
	Hostname string `json:"hostname"`
	// Version is the controller revision at which this config last
	// changed. The compiler leaves it zero; the inventory sets it.
	Version uint64 `json:"version"`
	Role    Role   `json:"role"`
	// VRFs sorted by VNI.
	VRFs []VRF `json:"vrfs,omitempty"`
	// Loopback is the device's loopback address as a host prefix.
	Loopback netip.Prefix `json:"loopback,omitzero"`
	// VTEP is the local VXLAN tunnel endpoint; invalid on devices without
	// VXLAN.
	VTEP netip.Addr `json:"vtep,omitzero"`
	// RouterMAC is the MAC of the L3VNI SVIs.
	RouterMAC string `json:"routerMAC,omitempty"`
	// Ports handed to the agent, sorted by name.
	Ports []PortConfig `json:"ports,omitempty"`
	// ASN is the device's BGP AS number.
	ASN uint32 `json:"asn,omitempty"`
	// Underlay are the device's underlay BGP sessions, sorted by port.
	Underlay []UnderlayPeer `json:"underlay,omitempty"`
	// Firewall holds, on firewalls, the policy of every tenant network
	// that has one, sorted by network.
	Firewall []FirewallTenant `json:"firewall,omitempty"`
}

// DeviceConvergence tells whether one device has applied a machine's last
// change.
type DeviceConvergence struct {
	Hostname        string
	RequiredVersion uint64
	AppliedVersion  uint64
	Converged       bool
	Errors          []StepError
}

// Convergence tells whether every device a machine is cabled to has applied
// the machine's last change.
type Convergence struct {
	Machine   string
	Revision  uint64
	Devices   []DeviceConvergence
	Converged bool
}

// PortRange is an inclusive range of destination ports.
type PortRange struct {
	From uint16 `json:"from"`
	To   uint16 `json:"to"`
}

// FirewallRule is one ingress or egress rule of a tenant network's
// firewall policy: the remote side's CIDRs (destination for egress, source
// for ingress; empty = any, one address family per rule), protocol (tcp,
// udp, icmp, any), destination ports (tcp/udp only; empty = any), accept or
// drop.
type FirewallRule struct {
	Action   string         `json:"action"`
	Protocol string         `json:"protocol,omitempty"`
	CIDRs    []netip.Prefix `json:"cidrs,omitempty"`
	Ports    []PortRange    `json:"ports,omitempty"`
	Comment  string         `json:"comment,omitempty"`
}

// FirewallPolicy is the firewall policy of one tenant network: its traffic
// to the outside (egress) and from the outside (ingress), first match in
// order, default drop; source NAT of its egress traffic (masquerade, or
// SNAT to EgressIPs hashed by source address when there are some).
type FirewallPolicy struct {
	Network   string         `json:"network"`
	Ingress   []FirewallRule `json:"ingress,omitempty"`
	Egress    []FirewallRule `json:"egress,omitempty"`
	NAT       bool           `json:"nat,omitempty"`
	EgressIPs []netip.Addr   `json:"egressIPs,omitempty"`
	// Public are the tenant's public prefixes (inside an external
	// network): firewalls route them from the external network to the
	// tenant, through the ingress rules.
	Public []netip.Prefix `json:"public,omitempty"`
}

// FirewallTenant is one tenant network's policy as a firewall device gets
// it: with the network's prefix, VNI and VRF, which identify its traffic.
type FirewallTenant struct {
	FirewallPolicy
	Prefix netip.Prefix `json:"prefix"`
	VNI    uint32       `json:"vni"`
	// VRF is the tenant VRF's kernel name on the firewall (vrf<VNI>).
	VRF string `json:"vrf"`
}

// String returns "80" or "8000-8100".
func (r PortRange) String() string {
	if r.From == r.To {
		return strconv.Itoa(int(r.From))
	}
	return strconv.Itoa(int(r.From)) + "-" + strconv.Itoa(int(r.To))
}

// ParsePortRange parses "80" or "8000-8100" (ports 1-65535, from <= to).
func ParsePortRange(s string) (PortRange, error) {
	port := func(p string) (uint16, error) {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 || strconv.FormatUint(n, 10) != p {
			return 0, fmt.Errorf("port %q is not a number from 1 to 65535", p)
		}
		return uint16(n), nil
	}
	from, to, isRange := strings.Cut(s, "-")
	a, err := port(from)
	if err != nil {
		return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
	}
	if !isRange {
		return PortRange{From: a, To: a}, nil
	}
	b, err := port(to)
	if err != nil {
		return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
	}
	if a >= b {
		return PortRange{}, fmt.Errorf("port range %q: the first port must be below the second", s)
	}
	return PortRange{From: a, To: b}, nil
}
