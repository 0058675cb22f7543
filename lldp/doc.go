// Package lldp will own LLDP frame I/O on ports (raw AF_PACKET sockets) and
// the neighbour table with TTL expiry. It must not change any link state.
//
// Nothing is implemented yet: the discovery issue builds it.
package lldp
