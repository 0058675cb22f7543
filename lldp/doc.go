// Package lldp owns LLDP (IEEE 802.1AB) on the agent's ports: it sends our
// LLDPDUs (chassis = the switch MAC, port = the interface name, system name,
// description, capabilities, management addresses) and receives the
// neighbours', keeping a bounded neighbour table with TTL expiry and
// emitting change events.
//
// It owns only frame I/O (one raw AF_PACKET socket per port, ethertype
// 0x88cc, joined to the nearest-bridge group 01:80:c2:00:00:0e) and the
// neighbour table. It must not touch link state, addresses, routes or any
// other kernel object: a port that is down or gone is waited for, never
// brought up or created. The only device-level effect is the socket's
// multicast membership for the group address, which the kernel drops when
// the socket closes. mdlayher/lldp is used only as the TLV codec;
// its types do not leave this package.
//
// Frame I/O sits behind the small Conn interface so the agent logic can be
// tested with an in-memory link; ListenPort is the Linux implementation.
package lldp
