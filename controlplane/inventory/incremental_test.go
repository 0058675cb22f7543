package inventory_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/metalfabric/fabric/controlplane/compile"
	"github.com/metalfabric/fabric/controlplane/inventory"
	"github.com/metalfabric/fabric/controlplane/model"
	"github.com/metalfabric/fabric/controlplane/store"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
)

// fullCompile compiles every device from all stored records (devices,
// networks, machines and LLDP neighbour tables), the way compile.Compile
// sees them.
func fullCompile(t *testing.T, inv *inventory.Inventory) map[string]model.DeviceConfig {
	t.Helper()
	ctx := context.Background()
	in := compile.Input{Neighbors: map[string][]model.Neighbor{}}
	if mode, _ := inv.Underlay(); mode == inventory.UnderlayNumbered {
		in.Numbered = true
		in.LinkNets = must(inv.LinkNets(ctx))(t)
	}
	for _, d := range must(inv.ListDevices(ctx))(t) {
		in.Devices = append(in.Devices, d.Device)
		if len(d.Neighbors) > 0 {
			in.Neighbors[d.Hostname] = d.Neighbors
		}
	}
	for _, n := range must(inv.ListNetworks(ctx))(t) {
		in.Networks = append(in.Networks, n.Network)
	}
	in.Machines = must(inv.ListMachines(ctx))(t)
	out := map[string]model.DeviceConfig{}
	for _, c := range compile.Compile(in) {
		out[c.Hostname] = c
	}
	return out
}

// storedConfigs returns every device's stored config without its version.
func storedConfigs(t *testing.T, inv *inventory.Inventory) map[string]model.DeviceConfig {
	t.Helper()
	ctx := context.Background()
	out := map[string]model.DeviceConfig{}
	for _, d := range must(inv.ListDevices(ctx))(t) {
		c := must(inv.DeviceConfig(ctx, d.Hostname))(t)
		if c.Version != d.DesiredVersion {
			t.Errorf("%s: config version %d, device desired version %d", d.Hostname, c.Version, d.DesiredVersion)
		}
		c.Version = 0
		out[d.Hostname] = c
	}
	return out
}

var configOpts = cmp.Options{cmpopts.EquateEmpty(), netipEqual}

// TestIncrementalCompileMatchesFull runs random sequences of every
// mutation (successful or rejected), closing and reopening the store now
// and then, and after each one compares every stored config with what a
// full compile.Compile of all records gives.
//
// Numbered: fabric links carry their neighbour's port id, and after each
// step the stored /31s are exactly those of the links some neighbour table
// shows (none leaks), distinct, and in the pool.
func TestIncrementalCompileMatchesFull(t *testing.T) {
	for _, mode := range []inventory.UnderlayMode{inventory.UnderlayUnnumbered, inventory.UnderlayNumbered} {
		t.Run(string(mode), func(t *testing.T) { testIncrementalCompileMatchesFull(t, mode) })
	}
}

func testIncrementalCompileMatchesFull(t *testing.T, mode inventory.UnderlayMode) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "c.db")
			var st *bolt.Store
			reopen := func() *inventory.Inventory {
				if st != nil {
					_ = st.Close()
				}
				var err error
				if st, err = bolt.Open(path, bolt.WithNoSync()); err != nil {
					t.Fatal(err)
				}
				inv, err := inventory.New(st, inventory.WithUnderlay(mode))
				if err != nil {
					t.Fatal(err)
				}
				return inv
			}
			t.Cleanup(func() { _ = st.Close() })
			inv := reopen()
			r := rand.New(rand.NewPCG(seed, 42))
			const leaves, machines, nets, nports = 4, 10, 5, 6
			port := func() string { return fmt.Sprintf("swp%d", r.IntN(nports)) }
			mach := func() string { return fmt.Sprintf("m%d", r.IntN(machines)) }
			netw := func() string { return fmt.Sprintf("n%d", r.IntN(nets)) }
			dev := func() string { return fmt.Sprintf("leaf%d", r.IntN(leaves)) }
			var ports []string
			for p := range nports {
				ports = append(ports, fmt.Sprintf("swp%d", p))
			}
			applied, rejected, underlay := 0, 0, 0
			for step := range 400 {
				var err error
				var what string
				switch op := r.IntN(12); op {
				case 0:
					d := leaf(dev(), ports...)
					d.ChassisMAC = fmt.Sprintf("02:00:00:00:00:%02x", r.IntN(4))
					if r.IntN(6) == 0 {
						d.Role = model.RoleSpine
					}
					what = fmt.Sprintf("register %s %s %s", d.Hostname, d.Role, d.ChassisMAC)
					_, err = inv.Register(ctx, d)
				case 1, 2:
					h := dev()
					var nbrs []model.Neighbor
					for range r.IntN(5) {
						nbrs = append(nbrs, nb(port(), mach()))
					}
					// Fabric links (underlay sessions), now and then in
					// upper case or two switches on one port.
					if r.IntN(3) == 0 {
						for range 1 + r.IntN(2) {
							name := fmt.Sprintf("leaf%d", r.IntN(leaves))
							if r.IntN(4) == 0 {
								name = strings.ToUpper(name)
							}
							n := nb(port(), name)
							if mode == inventory.UnderlayNumbered {
								n.PortID = port()
							}
							nbrs = append(nbrs, n)
						}
					}
					what = fmt.Sprintf("neighbours of %s: %d", h, len(nbrs))
					_, err = inv.ReportNeighbors(ctx, h, nbrs)
				case 3:
					m := mach()
					var cs []model.Connection
					for range r.IntN(3) {
						cs = append(cs, conn(dev(), port()))
					}
					what = fmt.Sprintf("cable %s %v", m, cs)
					_, err = inv.CableMachine(ctx, m, cs)
				case 4:
					i := r.IntN(nets)
					what = fmt.Sprintf("create n%d", i)
					_, err = inv.CreateNetwork(ctx, fmt.Sprintf("n%d", i), fmt.Sprintf("10.%d.0.0/26", i))
				case 5:
					n, p := netw(), netw()
					what = fmt.Sprintf("create child %s of %s", n, p)
					_, err = inv.CreateChildNetwork(ctx, n, p, 28+r.IntN(3))
				case 6:
					n := netw()
					what = "delete " + n
					err = inv.DeleteNetwork(ctx, n)
				case 7, 8, 9:
					m, n := mach(), netw()
					// Announceable prefixes (machine peers' allowances),
					// now and then one with host bits set (rejected).
					var announce []netip.Prefix
					for range r.IntN(3) {
						announce = append(announce, netip.MustParsePrefix([]string{"0.0.0.0/0", "192.168.0.0/16", "10.96.0.0/12", "2001:db8::/48", "192.168.1.1/16"}[r.IntN(5)]))
					}
					what = fmt.Sprintf("allocate %s in %s announcing %v", m, n, announce)
					_, err = inv.AllocateMachine(ctx, m, n, "", announce...)
				case 10:
					m := mach()
					what = "free " + m
					_, err = inv.FreeMachine(ctx, m, "")
				case 11:
					what = "reopen"
					inv = reopen()
				}
				if err != nil {
					rejected++
				} else {
					applied++
				}
				stored := storedConfigs(t, inv)
				if diff := cmp.Diff(fullCompile(t, inv), stored, configOpts); diff != "" {
					t.Fatalf("step %d (%s, err %v): stored configs differ from a full compile (-full +stored):\n%s", step, what, err, diff)
				}
				for _, c := range stored {
					underlay += len(c.Underlay)
					for _, u := range c.Underlay {
						if u.Address.IsValid() != (mode == inventory.UnderlayNumbered) {
							t.Fatalf("step %d (%s): %s session on %s: address %v in %s mode", step, what, c.Hostname, u.Port, u.Address, mode)
						}
					}
				}
				if mode == inventory.UnderlayNumbered {
					checkLinkNets(t, inv, step, what)
				}
			}
			t.Logf("%d operations applied, %d rejected, %d underlay sessions over all steps", applied, rejected, underlay)
			if underlay == 0 {
				t.Errorf("no underlay session in any step: the run does not cover fabric links")
			}
		})
	}
}

// TestIndexesBuiltForOldStore: a store written before the indexes existed
// (records only) gets them at the first mutation: allocated addresses are
// not handed out again, attachments compile to the same configs.
func TestIndexesBuiltForOldStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	st, err := bolt.Open(path, bolt.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	inv := must(inventory.New(st))(t)
	must(inv.Register(ctx, leaf("leaf1", "swp1", "swp2", "swp3")))(t)
	must(inv.ReportNeighbors(ctx, "leaf1", []model.Neighbor{nb("swp1", "m1"), nb("swp2", "m2"), nb("swp3", "m3")}))(t)
	must(inv.CreateNetwork(ctx, "a", "10.0.0.0/24"))(t)
	must(inv.CreateChildNetwork(ctx, "kid", "a", 28))(t) // 10.0.0.0/28
	m1 := must(inv.AllocateMachine(ctx, "m1", "a", ""))(t)
	before := storedConfigs(t, inv)
	// Drop the indexes, as a store from before them would be.
	err = st.Update(ctx, func(tx store.Tx) error {
		for _, b := range []string{"ips", "iphints", "children", "attachments"} {
			kvs, err := tx.List(b, "")
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				if err := tx.Delete(b, kv.Key); err != nil {
					return err
				}
			}
		}
		return tx.Delete("meta", "indexes")
	})
	if err != nil {
		t.Fatal(err)
	}
	m2 := must(inv.AllocateMachine(ctx, "m2", "a", ""))(t)
	if m2.Allocation.IP == m1.Allocation.IP || m1.Allocation.IP.String() != "10.0.0.16" || m2.Allocation.IP.String() != "10.0.0.17" {
		t.Errorf("m1 %s, m2 %s: want 10.0.0.16 and 10.0.0.17 (outside the child, no duplicate)", m1.Allocation.IP, m2.Allocation.IP)
	}
	if err := inv.DeleteNetwork(ctx, "a"); err == nil {
		t.Errorf("deleting a parent with children after the index rebuild: no error")
	}
	after := storedConfigs(t, inv)
	if diff := cmp.Diff(fullCompile(t, inv), after, configOpts); diff != "" {
		t.Errorf("configs after rebuild (-full +stored):\n%s", diff)
	}
	if cmp.Equal(before, after, configOpts) {
		t.Errorf("m2's allocation did not change leaf1's config")
	}
}

// checkLinkNets checks the numbered links' /31s: one per complete link that
// some device's neighbour table shows, no other, all distinct and in the
// default pool.
func checkLinkNets(t *testing.T, inv *inventory.Inventory, step int, what string) {
	t.Helper()
	ctx := context.Background()
	devs := must(inv.ListDevices(ctx))(t)
	devices := map[string]model.Device{}
	for _, d := range devs {
		devices[strings.ToLower(d.Hostname)] = d.Device
	}
	shown := map[compile.Link]bool{}
	for _, d := range devs {
		for _, s := range compile.Sessions(d.Device, d.Neighbors, devices) {
			if s.Link.Complete() {
				shown[s.Link] = true
			}
		}
	}
	nets := must(inv.LinkNets(ctx))(t)
	owner := map[netip.Prefix]compile.Link{}
	for l, p := range nets {
		if !shown[l] {
			t.Errorf("step %d (%s): link %s keeps %s, but no neighbour table shows it", step, what, l, p)
		}
		if o, dup := owner[p]; dup {
			t.Errorf("step %d (%s): links %s and %s share %s", step, what, o, l, p)
		}
		owner[p] = l
		if p.Bits() != 31 || !inventory.DefaultLinkPool.Contains(p.Addr()) {
			t.Errorf("step %d (%s): link %s got %s, not a /31 of %s", step, what, l, p, inventory.DefaultLinkPool)
		}
	}
	for l := range shown {
		if _, ok := nets[l]; !ok {
			t.Errorf("step %d (%s): link %s has no /31", step, what, l)
		}
	}
}
