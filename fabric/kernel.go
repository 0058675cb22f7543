package fabric

import "context"

// Kernel is the narrow set of netlink operations the reconciler needs. Links
// are named, not indexed: a name stays valid across the read-diff-apply cycle.
// The Linux implementation is [NewNetlink]; package fabrictest has a fake
// that records every change call.
type Kernel interface {
	// Read returns the links, the addresses and the bridge VLAN entries of
	// the network namespace (a few dumps; an interrupted dump is retried).
	Read(ctx context.Context) (Actual, error)
	// AddLink creates the link described by an OpAddLink change (VRF,
	// bridge with vlan_filtering and no default PVID, VXLAN, 802.1Q
	// device), administratively down, and sets its IFLA_IFALIAS to marker.
	// It must not leave an unmarked link behind.
	AddLink(ctx context.Context, c Change, marker string) error
	// SetUp sets a link administratively up.
	SetUp(ctx context.Context, name string) error
	// SetDown sets a link administratively down.
	SetDown(ctx context.Context, name string) error
	// SetMTU sets a link's MTU.
	SetMTU(ctx context.Context, name string, mtu int) error
	// SetAlias sets a link's IFLA_IFALIAS.
	SetAlias(ctx context.Context, name, alias string) error
	// SetMAC sets a link's MAC address ("02:00:...").
	SetMAC(ctx context.Context, name, mac string) error
	// SetMaster enslaves link to master.
	SetMaster(ctx context.Context, link, master string) error
	// SetNoMaster releases link from its master.
	SetNoMaster(ctx context.Context, link string) error
	// DeleteLink deletes a link.
	DeleteLink(ctx context.Context, name string) error
	// DeleteLinks deletes several links, in one batch where the kernel
	// allows it; errs[i] (nil on success) belongs to names[i].
	DeleteLinks(ctx context.Context, names []string) (errs []error)
	// AddBridgeVLANs adds (or updates the flags of) the VLAN range
	// v.VID..end on a bridge port, or on the bridge itself when v.Link is a
	// bridge and self is set.
	AddBridgeVLANs(ctx context.Context, v BridgeVLAN, end uint16, self bool) error
	// DelBridgeVLANs deletes the VLAN range v.VID..end.
	DelBridgeVLANs(ctx context.Context, v BridgeVLAN, end uint16, self bool) error
	// AddAddr adds an address (with its label, IPv4 only).
	AddAddr(ctx context.Context, a Addr) error
	// DelAddr deletes an address.
	DelAddr(ctx context.Context, a Addr) error
}
