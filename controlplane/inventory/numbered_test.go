package inventory_test

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalfabric/fabric/controlplane/compile"
	"github.com/metalfabric/fabric/controlplane/inventory"
	"github.com/metalfabric/fabric/controlplane/model"
	"github.com/metalfabric/fabric/controlplane/store"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
	"github.com/metalfabric/fabric/controlplane/store/etcd"
	"github.com/metalfabric/fabric/controlplane/store/etcd/etcdtest"
)

// link is a neighbour entry for a fabric link: the neighbour device and the
// port it announces as its LLDP port id.
func link(port, device, remotePort string) model.Neighbor {
	n := nb(port, device)
	n.PortID = remotePort
	return n
}

// backends returns store openers for bbolt and etcd: each call of an
// opener closes the previous store and opens the same state again (a
// controller restart).
func backends(t *testing.T) map[string]func() store.Store {
	out := map[string]func() store.Store{}
	path := filepath.Join(t.TempDir(), "c.db")
	var bst *bolt.Store
	out["bolt"] = func() store.Store {
		if bst != nil {
			_ = bst.Close()
		}
		var err error
		if bst, err = bolt.Open(path, bolt.WithNoSync()); err != nil {
			t.Fatal(err)
		}
		return bst
	}
	t.Cleanup(func() {
		if bst != nil {
			_ = bst.Close()
		}
	})
	var c *etcdtest.Cluster
	var est *etcd.Store
	out["etcd"] = func() store.Store {
		if c == nil {
			c = etcdtest.Start(t, etcdtest.Options{})
		}
		if est != nil {
			_ = est.Close()
		}
		var err error
		if est, err = etcd.Open(context.Background(), c.Endpoints, etcd.WithPrefix("/numbered/")); err != nil {
			t.Fatal(err)
		}
		return est
	}
	t.Cleanup(func() {
		if est != nil {
			_ = est.Close()
		}
	})
	return out
}

// checkLinkEnds checks that the two ends of every numbered session agree:
// the same /31, each one's peer address the other's address, the end that
// dials on the lower address; and that distinct links have distinct /31s.
func checkLinkEnds(t *testing.T, cfgs map[string][]model.UnderlayPeer, nbrs map[string][]model.Neighbor) {
	t.Helper()
	type end struct{ host, port string }
	peers := map[end]model.UnderlayPeer{}
	for h, us := range cfgs {
		for _, u := range us {
			peers[end{h, u.Port}] = u
		}
	}
	owner := map[netip.Prefix]end{}
	for h, ns := range nbrs {
		for _, n := range ns {
			a, ok := peers[end{h, n.Port}]
			if !ok {
				continue
			}
			shownBack := false
			for _, o := range nbrs[strings.ToLower(n.SystemName)] {
				shownBack = shownBack || (o.Port == n.PortID && strings.EqualFold(o.SystemName, h) && o.PortID == n.Port)
			}
			b, ok := peers[end{strings.ToLower(n.SystemName), n.PortID}]
			if !shownBack {
				continue // one-sided: nothing to agree with
			}
			if !ok {
				t.Errorf("%s:%s has a session to %s:%s, which has none back", h, n.Port, n.SystemName, n.PortID)
				continue
			}
			if !a.Address.IsValid() || a.Address.Bits() != 31 || a.Address.Masked() != b.Address.Masked() ||
				a.PeerAddress != b.Address.Addr() || b.PeerAddress != a.Address.Addr() || a.Passive == b.Passive {
				t.Errorf("ends disagree: %s:%s %+v, %s:%s %+v", h, n.Port, a, n.SystemName, n.PortID, b)
			}
			if dialer := a; !dialer.Passive && dialer.Address.Addr() != dialer.Address.Masked().Addr() {
				t.Errorf("%s:%s dials but has the upper address %s", h, n.Port, a.Address)
			}
			p := a.Address.Masked()
			if o, dup := owner[p]; dup && o != (end{h, n.Port}) && o != (end{strings.ToLower(n.SystemName), n.PortID}) {
				t.Errorf("%s used by %s:%s and by %v", p, h, n.Port, o)
			}
			owner[p] = end{h, n.Port}
		}
	}
}

// TestNumberedUnderlay: with a numbered underlay both ends of each link get
// addresses of one /31 (the leaf, which dials, the lower), also for
// parallel links; the addresses stay through recompiles and a controller
// restart; a link shown by one end only keeps its /31, one shown by
// neither frees it, and a link that comes back gets the lowest free one.
// A neighbour that moves to another port is another link: a new /31.
func TestNumberedUnderlay(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			newInv := func() *inventory.Inventory {
				return must(inventory.New(open(), inventory.WithUnderlay(inventory.UnderlayNumbered)))(t)
			}
			inv := newInv()
			must(inv.Register(ctx, spine("spine1", "swp1", "swp2", "swp3", "swp4")))(t)
			must(inv.Register(ctx, leaf("leaf1", "swp1", "swp51", "swp52")))(t)
			must(inv.Register(ctx, leaf("leaf2", "swp51")))(t)
			nbrs := map[string][]model.Neighbor{
				"leaf1":  {nb("swp1", "m1"), link("swp51", "spine1", "swp1"), link("swp52", "SPINE1", "swp2")},
				"leaf2":  {link("swp51", "spine1", "swp3")},
				"spine1": {link("swp1", "leaf1", "swp51"), link("swp2", "leaf1", "swp52"), link("swp3", "leaf2", "swp51")},
			}
			report := func(h string) {
				t.Helper()
				must(inv.ReportNeighbors(ctx, h, nbrs[h]))(t)
			}
			for _, h := range []string{"leaf1", "leaf2", "spine1"} {
				report(h)
			}
			asn := func(h string) uint32 { return must(inv.Device(ctx, h))(t).ASN }
			pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
			want := map[string][]model.UnderlayPeer{
				"leaf1": {
					{Port: "swp51", Peer: "spine1", PeerASN: asn("spine1"), Address: pfx("10.254.0.0/31"), PeerAddress: addr("10.254.0.1")},
					{Port: "swp52", Peer: "spine1", PeerASN: asn("spine1"), Address: pfx("10.254.0.2/31"), PeerAddress: addr("10.254.0.3")},
				},
				"leaf2": {{Port: "swp51", Peer: "spine1", PeerASN: asn("spine1"), Address: pfx("10.254.0.4/31"), PeerAddress: addr("10.254.0.5")}},
				"spine1": {
					{Port: "swp1", Peer: "leaf1", PeerASN: asn("leaf1"), Passive: true, Address: pfx("10.254.0.1/31"), PeerAddress: addr("10.254.0.0")},
					{Port: "swp2", Peer: "leaf1", PeerASN: asn("leaf1"), Passive: true, Address: pfx("10.254.0.3/31"), PeerAddress: addr("10.254.0.2")},
					{Port: "swp3", Peer: "leaf2", PeerASN: asn("leaf2"), Passive: true, Address: pfx("10.254.0.5/31"), PeerAddress: addr("10.254.0.4")},
				},
			}
			check := func(when string) {
				t.Helper()
				got := underlays(t, inv)
				if diff := cmp.Diff(want, got, netipEqual); diff != "" {
					t.Errorf("%s: underlay sessions (-want +got):\n%s", when, diff)
				}
				checkLinkEnds(t, got, nbrs)
			}
			check("after the reports")
			versions := map[string]uint64{}
			for _, d := range must(inv.ListDevices(ctx))(t) {
				versions[d.Hostname] = d.DesiredVersion
			}

			// Recompiles: re-registration, a machine allocated on leaf1.
			must(inv.Register(ctx, leaf("leaf1", "swp1", "swp51", "swp52")))(t)
			must(inv.Register(ctx, spine("spine1", "swp1", "swp2", "swp3", "swp4")))(t)
			must(inv.CreateNetwork(ctx, "a", "10.0.0.0/24"))(t)
			must(inv.AllocateMachine(ctx, "m1", "a", ""))(t)
			check("after recompiles")

			// A controller restart.
			inv = newInv()
			for _, h := range []string{"leaf1", "leaf2", "spine1"} {
				report(h)
			}
			must(inv.Register(ctx, leaf("leaf2", "swp51")))(t)
			check("after a restart")
			for _, d := range must(inv.ListDevices(ctx))(t) {
				if h := d.Hostname; h != "leaf1" && d.DesiredVersion != versions[h] {
					t.Errorf("%s: version %d after the restart, want %d (unchanged)", h, d.DesiredVersion, versions[h])
				}
			}

			// leaf2 loses the link, the spine still sees it: kept.
			nbrs["leaf2"] = nil
			report("leaf2")
			want["leaf2"] = nil
			check("link gone from one end")
			leaf2Link := compile.NewLink(compile.LinkEnd{Device: "spine1", Port: "swp3"}, compile.LinkEnd{Device: "leaf2", Port: "swp51"})
			if p, ok := must(inv.LinkNets(ctx))(t)[leaf2Link]; !ok || p != pfx("10.254.0.4/31") {
				t.Errorf("link %s: /31 %v (%v) while the spine still sees it, want 10.254.0.4/31", leaf2Link, p, ok)
			}
			// Gone from both: freed.
			nbrs["spine1"] = nbrs["spine1"][:2]
			report("spine1")
			want["spine1"] = want["spine1"][:2]
			check("link gone from both ends")
			if p, ok := must(inv.LinkNets(ctx))(t)[leaf2Link]; ok {
				t.Errorf("link %s keeps %s after both ends lost it", leaf2Link, p)
			}

			// leaf1's swp52 now sees the spine's swp4 (recabled at the
			// spine, which still shows the old link on swp2): another
			// link, the lowest free /31 (the one freed above).
			nbrs["leaf1"][2] = link("swp52", "spine1", "swp4")
			if bumped := must(inv.ReportNeighbors(ctx, "leaf1", nbrs["leaf1"]))(t); !bumped {
				t.Errorf("a neighbour that moved to another port did not bump the revision")
			}
			got := underlays(t, inv)["leaf1"]
			if len(got) != 2 || got[1].Address != pfx("10.254.0.4/31") || got[1].PeerAddress != addr("10.254.0.5") {
				t.Errorf("leaf1 after its swp52 neighbour moved to the spine's swp4: %+v, want swp52 on 10.254.0.4/31", got)
			}
			if p := must(inv.LinkNets(ctx))(t)[compile.NewLink(compile.LinkEnd{Device: "spine1", Port: "swp2"}, compile.LinkEnd{Device: "leaf1", Port: "swp52"})]; p != pfx("10.254.0.2/31") {
				t.Errorf("the old swp52-swp2 link, still in the spine's table: %v, want 10.254.0.2/31 kept", p)
			}
		})
	}
}

// TestUnderlayOptions: the mode and the link pool are checked; in numbered
// mode the pool must not overlap the loopback pool, and tenant networks
// must not overlap the pool.
func TestUnderlayOptions(t *testing.T) {
	ctx := context.Background()
	st := must(bolt.Open(filepath.Join(t.TempDir(), "c.db"), bolt.WithNoSync()))(t)
	t.Cleanup(func() { _ = st.Close() })
	if inventory.DefaultLinkPool.Overlaps(inventory.DefaultLoopbackPool) {
		t.Errorf("default link pool %s overlaps the default loopback pool %s", inventory.DefaultLinkPool, inventory.DefaultLoopbackPool)
	}
	for _, tc := range []struct {
		name string
		opts []inventory.Option
		want string // error substring, "" for none
	}{
		{"bad mode", []inventory.Option{inventory.WithUnderlay("ospf")}, `underlay mode "ospf"`},
		{"overlapping pools", []inventory.Option{inventory.WithUnderlay(inventory.UnderlayNumbered), inventory.WithLinkPool(netip.MustParsePrefix("10.255.0.0/16"))},
			"underlay link pool 10.255.0.0/16 overlaps the loopback pool 10.255.0.0/24"},
		{"IPv6 pool", []inventory.Option{inventory.WithUnderlay(inventory.UnderlayNumbered), inventory.WithLinkPool(netip.MustParsePrefix("fd00::/64"))}, "not an IPv4 network prefix"},
		{"host bits", []inventory.Option{inventory.WithUnderlay(inventory.UnderlayNumbered), inventory.WithLinkPool(netip.MustParsePrefix("10.254.0.1/16"))}, "not an IPv4 network prefix"},
		{"unnumbered ignores the pool", []inventory.Option{inventory.WithLinkPool(netip.MustParsePrefix("10.255.0.0/16"))}, ""},
		{"numbered default pool", []inventory.Option{inventory.WithUnderlay(inventory.UnderlayNumbered)}, ""},
	} {
		_, err := inventory.New(st, tc.opts...)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: New error %v, want %q", tc.name, err, tc.want)
		}
	}
	num := must(inventory.New(st, inventory.WithUnderlay(inventory.UnderlayNumbered)))(t)
	_, err := num.CreateNetwork(ctx, "a", "10.254.8.0/24")
	if !errors.Is(err, inventory.ErrPrecondition) || !strings.Contains(err.Error(), "underlay link pool") {
		t.Errorf("numbered: network inside the link pool: error %v, want a precondition naming the link pool", err)
	}
	unnum := must(inventory.New(st))(t)
	must(unnum.CreateNetwork(ctx, "a", "10.254.8.0/24"))(t)
}

// TestUnderlayModeSwitch: a controller restarted with the other mode
// recompiles every device at its first mutation, also devices the
// mutation does not touch, and back.
func TestUnderlayModeSwitch(t *testing.T) {
	ctx := context.Background()
	open := backends(t)["bolt"]
	inv := must(inventory.New(open()))(t)
	must(inv.Register(ctx, spine("spine1", "swp1")))(t)
	must(inv.Register(ctx, leaf("leaf1", "swp51")))(t)
	must(inv.ReportNeighbors(ctx, "leaf1", []model.Neighbor{link("swp51", "spine1", "swp1")}))(t)
	must(inv.ReportNeighbors(ctx, "spine1", []model.Neighbor{link("swp1", "leaf1", "swp51")}))(t)
	numbered := func(h string) bool {
		us := must(inv.DeviceConfig(ctx, h))(t).Underlay
		if len(us) != 1 {
			t.Fatalf("%s: sessions %+v, want one", h, us)
		}
		return us[0].Address.IsValid()
	}
	if numbered("leaf1") || numbered("spine1") {
		t.Fatalf("unnumbered mode gave addresses")
	}
	inv = must(inventory.New(open(), inventory.WithUnderlay(inventory.UnderlayNumbered)))(t)
	must(inv.Register(ctx, leaf("leaf1", "swp51")))(t)
	if !numbered("leaf1") || !numbered("spine1") {
		t.Errorf("after a restart in numbered mode and one registration: leaf1 numbered %v, spine1 numbered %v, want both", numbered("leaf1"), numbered("spine1"))
	}
	inv = must(inventory.New(open()))(t)
	must(inv.Register(ctx, leaf("leaf1", "swp51")))(t)
	if numbered("leaf1") || numbered("spine1") {
		t.Errorf("after a restart back in unnumbered mode: leaf1 numbered %v, spine1 numbered %v, want neither", numbered("leaf1"), numbered("spine1"))
	}
}
