// Package fib programs BGP best paths into the kernel's routing tables.
//
// It owns:
//   - kernel routes (IPv4 and IPv6, any table) whose protocol is [Protocol]
//     (200, "fabric"); and
//   - the neighbour and FDB entries that make EVPN symmetric-IRB next hops
//     resolve ([Remote]): a permanent neighbour VTEP -> router MAC on the
//     SVI, a VXLAN FDB entry router MAC -> VTEP (self, permanent) and a bridge
//     FDB entry router MAC on the VXLAN port (master, static).
//
// It must not touch links, addresses, VRFs, rules, routes of any other
// protocol, or neighbour/FDB entries it did not create. GoBGP computes the
// best paths elsewhere and never writes the kernel; this package speaks only
// its own types ([Route], [NextHop], [Remote]).
//
// # Recognising our own state
//
// Routes are ours when rtm_protocol == 200. Make the number show up by name
// in iproute2 with a file /etc/iproute2/rt_protos.d/fabric.conf containing
//
//	200	fabric
//
// Routes are created with NLM_F_EXCL, so a route of another protocol with the
// same table, prefix and metric is reported as a failure (EEXIST) and never
// replaced; deletes carry protocol 200, so the kernel only ever removes ours.
// Every route gets the programmer's metric (default [DefaultMetric], 20, the
// metric FRR's zebra uses for BGP), so a static route for the same prefix
// with another metric coexists with ours.
//
// Neighbours are ours when they carry NDA_PROTOCOL == 200 (kernel 5.2+).
// FDB entries cannot carry a protocol, so they are recognised through our
// neighbours: a VXLAN FDB entry (self, permanent) is ours when its MAC and
// destination equal the link-layer address and IP of one of our neighbours;
// a bridge FDB entry (master, static) is ours when its MAC and device equal
// one of those VXLAN entries. The programmer also keeps its own record of
// what it installed, so it deletes only what it created or recognised.
//
// # Kernel interface
//
// The vishvananda/netlink library makes one request and waits for one
// acknowledgement per call, which is far too slow for 100k routes. The
// programmer writes route requests in windows of a few thousand messages per
// sendmsg on its own NETLINK_ROUTE socket, without NLM_F_ACK: the kernel
// answers only failures, and a final NLMSG_NOOP with NLM_F_ACK fences the
// window. The kernel processes a sendmsg synchronously, so when the fence is
// acknowledged every error of the window has been queued; each error names
// the sequence number of its request, which maps it back to its route. The
// window is bounded so that even if every request failed, the error messages
// fit the (forced) receive buffer; if the kernel still reports ENOBUFS, the
// routes of the window whose outcome is unknown are reported as failed with
// [ErrAckLost] and the programmer re-reads the kernel before its next change.
//
// Dumps (RTM_GETROUTE filtered by protocol with NETLINK_GET_STRICT_CHK,
// RTM_GETNEIGH) are restarted when the kernel flags them NLM_F_DUMP_INTR,
// and only then.
package fib
