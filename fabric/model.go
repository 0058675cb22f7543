package fabric

import (
	"net"
	"net/netip"
)

// Marker is written to IFLA_IFALIAS of every link the reconciler creates (VRFs,
// the bridge, VXLAN devices, SVIs). A link without it is foreign and is never
// changed or deleted, unless it is a port named in [Desired.Ports].
const Marker = "fabric-agent"

// AddrLabelSuffix marks IPv4 addresses the reconciler adds to foreign links
// (ports, lo): their IFA_LABEL is "<dev>:fab" (see the package doc).
const AddrLabelSuffix = ":fab"

// Link kinds as the kernel reports them (IFLA_INFO_KIND). Links without a kind
// (physical NICs, lo) have kind KindDevice.
const (
	KindDevice = "device"
	KindVeth   = "veth"
	KindVRF    = "vrf"
	KindBridge = "bridge"
	KindVXLAN  = "vxlan"
	KindVLAN   = "vlan"
)

// Defaults of the desired state.
const (
	// DefaultBridgeName is the bridge's name when [Bridge.Name] is empty.
	DefaultBridgeName = "bridge"
	// VXLANPort is the UDP destination port of every VXLAN device.
	VXLANPort = 4789
)

// DefaultVLANRange is the range L3VNI VLANs are picked from when
// [Desired.VLANRange] is zero.
var DefaultVLANRange = VLANRange{Min: 1000, Max: 4000}

// Desired is the desired state of the part of a device's kernel this package
// owns. The zero value means "nothing of ours": every marked link is removed,
// ports keep their attributes but leave marked masters, and the addresses the
// reconciler added are removed.
type Desired struct {
	// Loopback holds the addresses on lo (e.g. the router id / VTEP /32).
	Loopback Loopback
	// VTEP is the local VTEP address of every VXLAN device. Required when a
	// VRF has an L3VNI. It is not added to lo by itself: list it in
	// Loopback.Addrs.
	VTEP netip.Addr
	// Bridge is the VLAN-aware bridge. When nil and an L3VNI, an access
	// port or a bridge VLAN needs one, a bridge named DefaultBridgeName with
	// default attributes is used; when nil and nothing needs one, a marked
	// bridge is removed.
	Bridge *Bridge
	// VLANRange is the range VLANs for L3VNIs are picked from (zero:
	// DefaultVLANRange). The VLAN of an L3VNI is not part of the desired
	// state: it is read back from the kernel (the PVID of vxlan<VNI> on the
	// bridge), so it stays stable across restarts; a new L3VNI gets the
	// lowest VLAN of the range not in use on the bridge.
	VLANRange VLANRange
	// Ports are the ports the controller hands to the agent. Only these
	// ports are changed; a port not listed is left alone except that it is
	// released from a marked master (it is never set down by omission).
	Ports []Port
	// VRFs are the tenant VRFs.
	VRFs []VRF
}

// Loopback is the agent's part of lo.
type Loopback struct {
	// Addrs are added to lo; addresses on lo the agent did not add are
	// never removed.
	Addrs []netip.Prefix
}

// Bridge is the VLAN-aware bridge (vlan_filtering 1, vlan_default_pvid 0)
// that holds the VXLAN devices of the L3VNIs and the access ports.
type Bridge struct {
	// Name is the device name (default DefaultBridgeName).
	Name string
	// MTU of the bridge; 0 leaves the kernel's choice.
	MTU int
	// VLANs are extra VLANs configured on the bridge itself (bridge vlan
	// ... self), besides the ones L3VNIs and access ports need.
	VLANs []uint16
}

// VLANRange is an inclusive range of VLAN ids, 1..4094.
type VLANRange struct {
	Min, Max uint16
}

// Port is one port handed over by the controller (a front-panel NIC; a veth
// in the lab). A port is either a routed port (VRF set, or neither VRF nor an
// access VLAN: a routed port in the default VRF) or an access port (AccessVLAN
// or AccessVNI set: enslaved to the bridge, untagged in that VLAN).
type Port struct {
	Name string
	// AdminUp is the desired administrative state: the port is set up or
	// down accordingly.
	AdminUp bool
	// MTU is the desired MTU; 0 leaves it as it is.
	MTU int
	// Description is written to IFLA_IFALIAS; "" leaves the alias as it is.
	Description string
	// VRF makes the port a routed port enslaved to that desired VRF; ""
	// (and no access VLAN) means a routed port in the default VRF (no
	// master).
	VRF string
	// AccessVLAN makes the port an access port in this VLAN (1..4094).
	AccessVLAN uint16
	// AccessVNI makes the port an access port in the VLAN of the L3VNI with
	// this VNI (the SVI's VLAN).
	AccessVNI uint32
	// Addrs are added to the port (routed ports only).
	Addrs []netip.Prefix
}

// VRF is one tenant VRF device, optionally with an L3VNI.
type VRF struct {
	// Name is the kernel device name, e.g. "vrf10010".
	Name string
	// Table is the kernel routing table id.
	Table uint32
	// L3VNI, when set, gives the VRF a VXLAN device vxlan<VNI> on the
	// bridge, a VLAN from the range and an SVI vlan<VLAN> in the VRF.
	L3VNI *L3VNI
	// Addrs are added to the SVI when the VRF has an L3VNI, else to the VRF
	// device itself.
	Addrs []netip.Prefix
	// Ports is a shorthand for routed ports of this VRF that are named only:
	// each is enslaved to the VRF and its admin state, MTU and description
	// are left as they are. A port must not be listed here and in
	// Desired.Ports.
	Ports []string
}

// L3VNI is the layer-3 VNI of a tenant VRF (EVPN symmetric routing).
type L3VNI struct {
	// VNI is the VXLAN network identifier, 1..16777215.
	VNI uint32
	// RouterMAC is the SVI's MAC address; nil leaves the kernel's choice.
	RouterMAC net.HardwareAddr
}

// VXLANName is the name of the VXLAN device of an L3VNI.
func VXLANName(vni uint32) string { return "vxlan" + itoa(uint64(vni)) }

// SVIName is the name of the SVI (802.1Q device on the bridge) of a VLAN.
func SVIName(vlan uint16) string { return "vlan" + itoa(uint64(vlan)) }

func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// Link is one kernel link as read from the kernel.
type Link struct {
	Name  string
	Index int
	// Kind is the link kind, see KindDevice and friends.
	Kind string
	// Master is the name of the link's master device, "" when it has none.
	Master string
	// Alias is IFLA_IFALIAS; Marker on links this package created.
	Alias string
	// VRFTable is the routing table of a VRF; 0 for other kinds.
	VRFTable uint32
	// AdminUp tells whether IFF_UP is set.
	AdminUp bool
	// OperState is the kernel's operational state: "up", "down",
	// "lowerlayerdown", "unknown", ...
	OperState string
	// Loopback tells whether IFF_LOOPBACK is set.
	Loopback bool
	MAC      string
	MTU      int

	// VNI, VXLANLocal (the local address, "" when unset), VXLANPort and
	// VXLANLearning describe a VXLAN device.
	VNI           uint32
	VXLANLocal    string
	VXLANPort     int
	VXLANLearning bool
	// VLANID and Parent describe an 802.1Q device (its id and lower link).
	VLANID uint16
	Parent string
	// VLANFiltering tells whether a bridge filters VLANs.
	VLANFiltering bool
}

// Owned tells whether the link was created by this package.
func (l Link) Owned() bool {
	switch l.Kind {
	case KindVRF, KindBridge, KindVXLAN, KindVLAN:
		return l.Alias == Marker
	}
	return false
}

// OperUp tells whether the link is operationally up.
func (l Link) OperUp() bool { return l.OperState == "up" }

// IsPort tells whether the link counts as a switch port: a physical-ish link
// (a NIC, or a veth in the lab) that is not a loopback.
func (l Link) IsPort() bool {
	return (l.Kind == KindDevice || l.Kind == KindVeth) && !l.Loopback && l.Name != "lo"
}

// Addr is one interface address as read from the kernel.
type Addr struct {
	// Link is the name of the link the address is on.
	Link   string
	Prefix netip.Prefix
	// Label is IFA_LABEL (IPv4 only).
	Label string
}

// BridgeVLAN is one VLAN of one bridge port, or of the bridge itself (Link is
// then the bridge, "self").
type BridgeVLAN struct {
	Link     string
	VID      uint16
	PVID     bool
	Untagged bool
}

// Actual is the kernel state as read by [Kernel.Read].
type Actual struct {
	Links []Link
	// Addrs are all addresses, IPv6 link-local ones included.
	Addrs []Addr
	// VLANs are the bridge VLAN entries of every bridge and bridge port.
	VLANs []BridgeVLAN
	// OwnedAddrs are addresses on foreign links (ports, lo) that carry no
	// label but were added by the agent (IPv6). The kernel cannot mark
	// them, so [Reconciler.Read] fills this from the reconciler's memory;
	// a fresh reconciler knows none and so never deletes them.
	OwnedAddrs []Addr
}
