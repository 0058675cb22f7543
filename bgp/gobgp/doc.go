// Package gobgp is the GoBGP edge of the fabric: it implements bgp.Speaker on
// top of an embedded GoBGP v3 server (github.com/osrg/gobgp/v3/pkg/server).
//
// It owns the embedded server and everything GoBGP-shaped: the conversion
// between bgp.Path/bgp.Update and GoBGP's protobuf and packet types, the
// import allowance (built as GoBGP's global import policy), EVPN type-5
// origination and decoding in the global RIB, the resolution of unnumbered
// peers' IPv6 link-local addresses, and the mapping of GoBGP's peer state to
// bgp.PeerState. No GoBGP or protobuf type leaves this package.
//
// It must not touch the kernel's routes, links, VRFs or sysctls (except
// EnableL3mdevAccept, which the agent calls explicitly): GoBGP never programs
// the FIB here (the zebra integration is never enabled); installing best paths
// is the FIB programmer's job, fed by WatchBest.
//
// Network namespaces: GoBGP opens its listener and its outgoing connections
// from its own goroutines, which Go may run on any OS thread, so a speaker
// lives in the network namespace of the whole process. Switching one locked
// thread with setns does not move GoBGP's sockets. To run a speaker in a
// namespace, run its process there (ip netns exec); the package tests do
// exactly that with a helper process per speaker (see helper_test.go).
package gobgp
