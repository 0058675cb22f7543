// Package fabric owns the device model of a switch or firewall (today: VRFs
// and the ports enslaved to them; later: VLANs, bridges, VXLAN/L3VNI and
// addresses) and its Linux reconciler over netlink: read the kernel, validate
// the desired state against it, compute a pure, ordered diff, apply it and
// return the state actually reached.
//
// Ownership: every VRF this package creates carries the [Marker] in its
// IFLA_IFALIAS. The reconciler never changes or deletes an unmarked VRF or any
// other link it did not create. The only foreign links it touches are ports:
// a port named in the desired config is enslaved to its VRF, and a port whose
// master is a marked VRF is released when it is no longer desired there.
//
// The package must not touch routes, rules, addresses, nftables or BGP state
// (other packages own those), and it knows nothing about protobuf or gRPC: the
// agent converts the controller's snapshots into [Desired] at its edge.
package fabric
