// Package fabric owns the dataplane model of a switch or firewall and its
// Linux reconciler over netlink: ports (admin state, MTU, description,
// routed in a VRF or access in a VLAN), addresses on lo, ports and SVIs,
// tenant VRFs, the VLAN-aware bridge and per-tenant L3VNIs (a VXLAN device
// vxlan<VNI> on the bridge with its VLAN as PVID, and an SVI vlan<VLAN> with
// the router MAC in the VRF). The reconciler reads the kernel in three dumps
// (links, addresses, bridge VLANs), validates the desired state against it,
// computes a pure, ordered diff, applies it and returns the state actually
// reached with one error per failed step.
//
// VLANs of L3VNIs are not configured: each L3VNI keeps the VLAN its VXLAN
// device already has on the bridge (read back from the kernel, so it is
// stable across restarts), a new one gets the lowest free VLAN of the
// configured range ([AssignVLANs]).
//
// Ownership. Links the reconciler creates (VRFs, the bridge, VXLAN devices,
// SVIs) carry the [Marker] in IFLA_IFALIAS; an unmarked link is never
// changed or deleted. The only foreign links it touches are the ports the
// controller hands over: a port named in the desired state gets its
// attributes and master; a port no longer named is only released from a
// marked master, never set down or otherwise reset. Addresses: every
// address on a marked link is the agent's (IPv6 link-local ones excepted:
// the kernel manages those). On foreign links (ports, lo) an IPv4 address the
// agent adds carries the label "<dev>:fab" ([AddrLabelSuffix]), which
// survives restarts; IPv6 addresses have no label and the 6.1 kernel has no
// IFA_PROTO, so the reconciler remembers the IPv6 addresses it added in
// memory ([Actual.OwnedAddrs]). Only those are ever deleted. After a restart
// the memory is empty: a still-desired IPv6 address is simply found present,
// one that stopped being desired while the agent was down is left behind
// (never a foreign one deleted). Ports whose name plus ":fab" exceeds 15
// bytes get IPv4 addresses without label, remembered like IPv6 ones.
//
// The package must not touch routes, rules, neighbours, nftables or BGP
// state (other packages own those), and it knows nothing about protobuf or
// gRPC: the agent converts the controller's snapshots into [Desired] at its
// edge. Drift repair (netlink event subscription) lives in the agent.
package fabric
