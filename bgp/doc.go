// Package bgp will own the embedded GoBGP speaker behind the project's own
// small interface (underlay, machine-facing sessions, EVPN type-5 per tenant
// VRF) and the FIB programmer that installs best paths into kernel tables.
// It must not touch links, VRFs or nftables; those belong to fabric and nft.
//
// Nothing is implemented yet: the routing issue builds it.
package bgp
