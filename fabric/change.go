package fabric

import (
	"fmt"
	"net/netip"
	"strconv"
)

// Op is the kind of one kernel change.
type Op int

// The operations. Diff emits them in phases (see [Diff]); the order of the
// constants is not the order of the phases.
const (
	// OpAddLink creates the marked link Link of Kind with the attributes
	// of the change (Table, VNI, Local, Parent, VLAN, MTU, MAC).
	OpAddLink Op = iota + 1
	// OpSetUp sets Link administratively up.
	OpSetUp
	// OpSetDown sets Link administratively down (desired ports only).
	OpSetDown
	// OpSetMTU sets the MTU of Link.
	OpSetMTU
	// OpSetAlias sets IFLA_IFALIAS of Link (a port's description).
	OpSetAlias
	// OpSetMAC sets the MAC address of Link (an SVI's router MAC).
	OpSetMAC
	// OpSetMaster enslaves Link to Master.
	OpSetMaster
	// OpSetNoMaster releases Link from its master (Master names it).
	OpSetNoMaster
	// OpAddBridgeVLAN adds VLANs VLAN..VLANEnd to bridge port Link, or to
	// the bridge itself when Self, with the PVID/Untagged flags.
	OpAddBridgeVLAN
	// OpDelBridgeVLAN deletes VLANs VLAN..VLANEnd from Link.
	OpDelBridgeVLAN
	// OpAddAddr adds Prefix to Link, with Label (IPv4 on foreign links).
	OpAddAddr
	// OpDelAddr deletes Prefix from Link.
	OpDelAddr
	// OpDeleteLink deletes the marked link Link of Kind.
	OpDeleteLink
)

// Change is one kernel change. String gives one line per change, e.g.
//
//	add vrf vrf10010 table 10010
//	add bridge bridge vlan_filtering mtu 9000
//	add vxlan vxlan10010 vni 10010 local 10.0.0.1 dstport 4789 nolearning
//	add vlan vlan1000 link bridge id 1000 address 02:00:00:00:00:01
//	set vlan1000 up
//	set swp1 down
//	set swp1 mtu 9000
//	set swp1 alias "to machine m1"
//	set vlan1000 address 02:00:00:00:00:02
//	set swp1 master vrf10010
//	set swp1 nomaster
//	add bridge vlan 1-999 dev bridge self
//	add bridge vlan 1000 dev vxlan10010 pvid untagged
//	delete bridge vlan 1000 dev swp3
//	add address 10.0.0.1/32 dev lo label lo:fab
//	delete address 10.1.0.1/24 dev vlan1000
//	delete vrf vrf10010
type Change struct {
	Op Op
	// Link is the link changed.
	Link string
	// Kind is the link kind of OpAddLink and OpDeleteLink.
	Kind string
	// Table is the routing table of a VRF (OpAddLink).
	Table uint32
	// VNI and Local are the VXLAN id and local VTEP address (OpAddLink).
	VNI   uint32
	Local netip.Addr
	// Parent is the lower link of an 802.1Q device (OpAddLink).
	Parent string
	// VLAN is the 802.1Q id (OpAddLink of a vlan) or the first VLAN of a
	// bridge VLAN range; VLANEnd is its last one (0: just VLAN).
	VLAN, VLANEnd uint16
	// Self, PVID and Untagged are the bridge VLAN flags.
	Self, PVID, Untagged bool
	// MTU for OpSetMTU and OpAddLink (0: kernel default).
	MTU int
	// MAC for OpSetMAC and OpAddLink ("" : kernel default).
	MAC string
	// Alias for OpSetAlias.
	Alias string
	// Master is the new master for OpSetMaster and the master being left
	// for OpSetNoMaster.
	Master string
	// Prefix and Label for OpAddAddr and OpDelAddr.
	Prefix netip.Prefix
	Label  string
}

// String is the one-line form of the change (see [Change]).
func (c Change) String() string {
	switch c.Op {
	case OpAddLink:
		switch c.Kind {
		case KindVRF:
			return fmt.Sprintf("add vrf %s table %d", c.Link, c.Table)
		case KindBridge:
			s := fmt.Sprintf("add bridge %s vlan_filtering", c.Link)
			if c.MTU != 0 {
				s += fmt.Sprintf(" mtu %d", c.MTU)
			}
			return s
		case KindVXLAN:
			return fmt.Sprintf("add vxlan %s vni %d local %s dstport %d nolearning", c.Link, c.VNI, c.Local, VXLANPort)
		case KindVLAN:
			s := fmt.Sprintf("add vlan %s link %s id %d", c.Link, c.Parent, c.VLAN)
			if c.MAC != "" {
				s += " address " + c.MAC
			}
			return s
		}
		return fmt.Sprintf("add %s %s", c.Kind, c.Link)
	case OpSetUp:
		return fmt.Sprintf("set %s up", c.Link)
	case OpSetDown:
		return fmt.Sprintf("set %s down", c.Link)
	case OpSetMTU:
		return fmt.Sprintf("set %s mtu %d", c.Link, c.MTU)
	case OpSetAlias:
		return fmt.Sprintf("set %s alias %s", c.Link, strconv.Quote(c.Alias))
	case OpSetMAC:
		return fmt.Sprintf("set %s address %s", c.Link, c.MAC)
	case OpSetMaster:
		return fmt.Sprintf("set %s master %s", c.Link, c.Master)
	case OpSetNoMaster:
		return fmt.Sprintf("set %s nomaster", c.Link)
	case OpAddBridgeVLAN:
		return "add bridge vlan " + c.vlanArgs()
	case OpDelBridgeVLAN:
		return "delete bridge vlan " + c.vlanArgs()
	case OpAddAddr:
		s := fmt.Sprintf("add address %s dev %s", c.Prefix, c.Link)
		if c.Label != "" {
			s += " label " + c.Label
		}
		return s
	case OpDelAddr:
		return fmt.Sprintf("delete address %s dev %s", c.Prefix, c.Link)
	case OpDeleteLink:
		return fmt.Sprintf("delete %s %s", c.Kind, c.Link)
	default:
		return fmt.Sprintf("unknown change %d on %s", int(c.Op), c.Link)
	}
}

func (c Change) vlanArgs() string {
	s := c.vlans() + " dev " + c.Link
	if c.Self {
		s += " self"
	}
	if c.PVID {
		s += " pvid"
	}
	if c.Untagged {
		s += " untagged"
	}
	return s
}

func (c Change) vlans() string {
	if c.VLANEnd > c.VLAN {
		return fmt.Sprintf("%d-%d", c.VLAN, c.VLANEnd)
	}
	return strconv.Itoa(int(c.VLAN))
}

// action names the step in an error: "enslaving swp1 to vrf10010".
func (c Change) action() string {
	switch c.Op {
	case OpAddLink:
		if c.Kind == KindVRF {
			return fmt.Sprintf("adding vrf %s with table %d", c.Link, c.Table)
		}
		return fmt.Sprintf("adding %s %s", c.Kind, c.Link)
	case OpSetUp:
		return fmt.Sprintf("setting %s up", c.Link)
	case OpSetDown:
		return fmt.Sprintf("setting %s down", c.Link)
	case OpSetMTU:
		return fmt.Sprintf("setting mtu of %s to %d", c.Link, c.MTU)
	case OpSetAlias:
		return fmt.Sprintf("setting alias of %s", c.Link)
	case OpSetMAC:
		return fmt.Sprintf("setting address of %s to %s", c.Link, c.MAC)
	case OpSetMaster:
		return fmt.Sprintf("enslaving %s to %s", c.Link, c.Master)
	case OpSetNoMaster:
		if c.Master == "" {
			return fmt.Sprintf("releasing %s", c.Link)
		}
		return fmt.Sprintf("releasing %s from %s", c.Link, c.Master)
	case OpAddBridgeVLAN:
		return fmt.Sprintf("adding vlan %s to %s", c.vlans(), c.Link)
	case OpDelBridgeVLAN:
		return fmt.Sprintf("deleting vlan %s from %s", c.vlans(), c.Link)
	case OpAddAddr:
		return fmt.Sprintf("adding address %s to %s", c.Prefix, c.Link)
	case OpDelAddr:
		return fmt.Sprintf("deleting address %s from %s", c.Prefix, c.Link)
	case OpDeleteLink:
		return fmt.Sprintf("deleting %s %s", c.Kind, c.Link)
	default:
		return c.String()
	}
}
