package inventory_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/metalfabric/fabric/controlplane/inventory"
	"github.com/metalfabric/fabric/controlplane/model"
	"github.com/metalfabric/fabric/controlplane/store"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
)

// TestChildNetworkProperties: children of a /24 with machines allocated in
// it, created until the parent is exhausted, some deleted and recreated,
// with the store closed and reopened between steps and a crash injected at
// every write of each creation: crashed creations leave nothing, children
// never overlap each other or an address allocated in the parent, parent allocations
// never land in a child, every network has its own VNI, and a parent with
// children cannot be deleted.
func TestChildNetworkProperties(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	var st *bolt.Store
	reopenFailing := func(failAt int) *inventory.Inventory {
		t.Helper()
		if st != nil {
			_ = st.Close()
		}
		var err error
		if st, err = bolt.Open(path, bolt.WithNoSync()); err != nil {
			t.Fatal(err)
		}
		var s store.Store = st
		if failAt > 0 {
			s = &failingStore{Store: st, failAt: failAt}
		}
		inv, err := inventory.New(s)
		if err != nil {
			t.Fatal(err)
		}
		return inv
	}
	reopen := func() *inventory.Inventory { return reopenFailing(0) }
	t.Cleanup(func() { _ = st.Close() })

	inv := reopen()
	var ports []string
	var nbrs []model.Neighbor
	for i := range 8 {
		ports = append(ports, fmt.Sprintf("swp%d", i))
		nbrs = append(nbrs, nb(ports[i], fmt.Sprintf("m%d", i)))
	}
	must(inv.Register(ctx, leaf("leaf1", ports...)))(t)
	must(inv.ReportNeighbors(ctx, "leaf1", nbrs))(t)
	parent := must(inv.CreateNetwork(ctx, "p", "10.0.0.0/24"))(t)
	// m0..m2 take 10.0.0.1-3: the first /28 is not free for a child.
	for i := range 3 {
		must(inv.AllocateMachine(ctx, fmt.Sprintf("m%d", i), "p", ""))(t)
	}

	check := func(inv *inventory.Inventory) map[string]netip.Prefix {
		t.Helper()
		nets := must(inv.ListNetworks(ctx))(t)
		kids := map[string]netip.Prefix{}
		vnis := map[uint32]string{}
		for _, n := range nets {
			if o, dup := vnis[n.VNI]; dup {
				t.Errorf("%s and %s share VNI %d", o, n.Name, n.VNI)
			}
			vnis[n.VNI] = n.Name
			if n.Parent == "" {
				continue
			}
			if n.Parent != "p" {
				t.Errorf("%s has parent %q, want p", n.Name, n.Parent)
			}
			if (n.Prefix.Bits() != 28 && n.Prefix.Bits() != 30) || !parent.Prefix.Contains(n.Prefix.Addr()) {
				t.Errorf("child %s is %s, want a /28 or /30 inside %s", n.Name, n.Prefix, parent.Prefix)
			}
			for o, op := range kids {
				if op.Overlaps(n.Prefix) {
					t.Errorf("children %s (%s) and %s (%s) overlap", o, op, n.Name, n.Prefix)
				}
			}
			kids[n.Name] = n.Prefix
		}
		for _, m := range must(inv.ListMachines(ctx))(t) {
			if m.Allocation == nil || m.Allocation.Network != "p" {
				continue
			}
			for k, kp := range kids {
				if kp.Contains(m.Allocation.IP) {
					t.Errorf("%s holds %s of the parent, inside child %s (%s)", m.Name, m.Allocation.IP, k, kp)
				}
			}
		}
		return kids
	}

	// 16 /28s in the /24, the first holds allocations: 15 children fit.
	created := 0
	for i := 0; ; i++ {
		// A crash at any write of the creation leaves nothing behind.
		for failAt := 1; failAt <= 3; failAt++ {
			crashing := reopenFailing(failAt)
			if _, err := crashing.CreateChildNetwork(ctx, fmt.Sprintf("c%d", i), "p", 28); err != nil && !errors.Is(err, errCrash) && !errors.Is(err, inventory.ErrExhausted) {
				t.Fatalf("crashing create c%d at write %d: %v", i, failAt, err)
			}
		}
		inv = reopen()
		if len(check(inv)) != created {
			t.Fatalf("children after crashed creations: %v, want %d", check(inv), created)
		}
		n, err := inv.CreateChildNetwork(ctx, fmt.Sprintf("c%d", i), "p", 28)
		if errors.Is(err, inventory.ErrExhausted) {
			break
		}
		if err != nil {
			t.Fatalf("child c%d: %v", i, err)
		}
		if want := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(16 * (i + 1))}), 28); n.Prefix != want {
			t.Errorf("child c%d = %s, want the lowest free %s", i, n.Prefix, want)
		}
		created++
		check(inv)
	}
	if created != 15 {
		t.Fatalf("created %d children of a /24 with allocations in its first /28, want 15", created)
	}
	// The parent stays allocatable outside its children.
	inv = reopen()
	for i := 3; i < 8; i++ {
		m := must(inv.AllocateMachine(ctx, fmt.Sprintf("m%d", i), "p", ""))(t)
		if want := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}); m.Allocation.IP != want {
			t.Errorf("m%d got %s, want %s", i, m.Allocation.IP, want)
		}
	}
	if err := inv.DeleteNetwork(ctx, "p"); !errors.Is(err, inventory.ErrPrecondition) {
		t.Errorf("deleting a parent with children: err = %v, want ErrPrecondition", err)
	}
	// Delete c3 and c7, free m1: a new child reuses 10.0.0.64/28 (c3's),
	// the parent's next allocation skips the children and reuses .2.
	for _, c := range []string{"c3", "c7"} {
		if err := inv.DeleteNetwork(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	must(inv.FreeMachine(ctx, "m1", ""))(t)
	inv = reopen()
	kids := check(inv)
	if len(kids) != 13 {
		t.Errorf("%d children after deleting 2 of 15, want 13", len(kids))
	}
	if n := must(inv.CreateChildNetwork(ctx, "d1", "p", 28))(t); n.Prefix != netip.MustParsePrefix("10.0.0.64/28") {
		t.Errorf("d1 = %s, want 10.0.0.64/28", n.Prefix)
	}
	if n := must(inv.CreateChildNetwork(ctx, "d2", "p", 28))(t); n.Prefix != netip.MustParsePrefix("10.0.0.128/28") {
		t.Errorf("d2 = %s, want 10.0.0.128/28", n.Prefix)
	}
	if _, err := inv.CreateChildNetwork(ctx, "d3", "p", 28); !errors.Is(err, inventory.ErrExhausted) {
		t.Errorf("child of a full parent: err = %v, want ErrExhausted", err)
	}
	// A /30 still fits in the parent's first /28 after its allocations.
	if n := must(inv.CreateChildNetwork(ctx, "s1", "p", 30))(t); n.Prefix != netip.MustParsePrefix("10.0.0.12/30") {
		t.Errorf("s1 = %s, want 10.0.0.12/30 (10.0.0.1-.8 minus .2 are allocated)", n.Prefix)
	}
	m := must(inv.AllocateMachine(ctx, "m1", "p", ""))(t)
	if m.Allocation.IP != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("m1 got %s, want the freed 10.0.0.2", m.Allocation.IP)
	}
	// A child is a network like any other: machines can be allocated in it.
	must(inv.FreeMachine(ctx, "m7", ""))(t)
	if m := must(inv.AllocateMachine(ctx, "m7", "s1", ""))(t); m.Allocation.IP != netip.MustParseAddr("10.0.0.13") {
		t.Errorf("m7 in s1 got %s, want 10.0.0.13", m.Allocation.IP)
	}
	check(reopen())
	kids = check(reopen())
	if len(kids) != 16 {
		t.Errorf("%d children at the end, want 16", len(kids))
	}
}
