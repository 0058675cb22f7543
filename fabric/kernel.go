package fabric

import "context"

// Kernel is the narrow set of netlink operations the reconciler needs. Links
// are named, not indexed: a name stays valid across the read-diff-apply cycle.
// The Linux implementation is [NewNetlink]; package fabrictest has a fake
// that records every change call.
type Kernel interface {
	// Links lists all links of the network namespace.
	Links(ctx context.Context) ([]Link, error)
	// AddVRF creates a VRF device with the given routing table and sets
	// its IFLA_IFALIAS to marker. It must not leave an unmarked VRF behind.
	AddVRF(ctx context.Context, name string, table uint32, marker string) error
	// SetUp sets a link administratively up.
	SetUp(ctx context.Context, name string) error
	// SetMaster enslaves link to master.
	SetMaster(ctx context.Context, link, master string) error
	// SetNoMaster releases link from its master.
	SetNoMaster(ctx context.Context, link string) error
	// DeleteLink deletes a link.
	DeleteLink(ctx context.Context, name string) error
}
