package inventory_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/metalfabric/fabric/controlplane/compile"
	"github.com/metalfabric/fabric/controlplane/inventory"
	"github.com/metalfabric/fabric/controlplane/model"
	"github.com/metalfabric/fabric/controlplane/store"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
)

func spine(name string, ports ...string) model.Device {
	d := leaf(name, ports...)
	d.Role = model.RoleSpine
	return d
}

// underlays returns every device's stored underlay sessions.
func underlays(t *testing.T, inv *inventory.Inventory) map[string][]model.UnderlayPeer {
	t.Helper()
	out := map[string][]model.UnderlayPeer{}
	for _, d := range must(inv.ListDevices(context.Background()))(t) {
		out[d.Hostname] = must(inv.DeviceConfig(context.Background(), d.Hostname))(t).Underlay
	}
	return out
}

// TestUnderlaySessions: a spine and a leaf that see each other over LLDP
// get an underlay session each, with the other's ASN, whichever registers
// and reports first; the configs are published.
func TestUnderlaySessions(t *testing.T) {
	ctx := context.Background()
	registerLeaf := func(inv *inventory.Inventory) error {
		_, err := inv.Register(ctx, leaf("leaf1", "swp1", "swp51"))
		return err
	}
	registerSpine := func(inv *inventory.Inventory) error {
		_, err := inv.Register(ctx, spine("spine1", "swp1", "swp2"))
		return err
	}
	leafReports := func(inv *inventory.Inventory) error {
		// The spine's name in upper case, and a machine on another port.
		_, err := inv.ReportNeighbors(ctx, "leaf1", []model.Neighbor{nb("swp1", "m1"), nb("swp51", "SPINE1")})
		return err
	}
	spineReports := func(inv *inventory.Inventory) error {
		_, err := inv.ReportNeighbors(ctx, "spine1", []model.Neighbor{nb("swp1", "leaf1"), nb("swp2", "leaf2")})
		return err
	}
	tests := []struct {
		name  string
		steps []func(*inventory.Inventory) error
	}{
		{"both registered, then neighbours reported", []func(*inventory.Inventory) error{registerLeaf, registerSpine, leafReports, spineReports}},
		{"leaf reports the spine before the spine registers", []func(*inventory.Inventory) error{registerLeaf, leafReports, registerSpine, spineReports}},
		{"spine reports the leaf before the leaf registers", []func(*inventory.Inventory) error{registerSpine, spineReports, registerLeaf, leafReports}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inv, rec := newInv(t)
			for i, step := range tc.steps {
				if err := step(inv); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			leafASN := must(inv.Device(ctx, "leaf1"))(t).ASN
			spineASN := must(inv.Device(ctx, "spine1"))(t).ASN
			if leafASN == 0 || spineASN == 0 || leafASN == spineASN {
				t.Fatalf("ASNs leaf1 %d, spine1 %d: want two distinct ones", leafASN, spineASN)
			}
			want := map[string][]model.UnderlayPeer{
				"leaf1":  {{Port: "swp51", Peer: "spine1", PeerASN: spineASN}},
				"spine1": {{Port: "swp1", Peer: "leaf1", PeerASN: leafASN, Passive: true}},
			}
			if diff := cmp.Diff(want, underlays(t, inv), netipEqual); diff != "" {
				t.Errorf("stored underlay sessions (-want +got):\n%s", diff)
			}
			// What was last published for each device is what is stored.
			last := map[string]model.DeviceConfig{}
			for _, c := range rec.take() {
				last[c.Hostname] = c
			}
			for _, h := range []string{"leaf1", "spine1"} {
				stored := must(inv.DeviceConfig(ctx, h))(t)
				if diff := cmp.Diff(stored, last[h], netipEqual); diff != "" {
					t.Errorf("%s: last published config differs from the stored one (-stored +published):\n%s", h, diff)
				}
			}
			if _, ok := machineMap(t, inv)["spine1"]; ok {
				t.Errorf("spine1 is a machine")
			}
		})
	}
}

// TestUnderlayFollowsNeighbors: the session follows the neighbour table:
// an unchanged table (or newer frames) bumps nothing, losing the link
// removes the session and bumps, a second switch on the port removes it too.
func TestUnderlayFollowsNeighbors(t *testing.T) {
	ctx := context.Background()
	inv, rec := newInv(t)
	must(inv.Register(ctx, leaf("leaf1", "swp1", "swp51", "swp52")))(t)
	must(inv.Register(ctx, spine("spine1", "swp1")))(t)
	must(inv.Register(ctx, spine("spine2", "swp1")))(t)
	spine1 := must(inv.Device(ctx, "spine1"))(t).ASN
	spine2 := must(inv.Device(ctx, "spine2"))(t).ASN
	table := []model.Neighbor{nb("swp1", "m1"), nb("swp51", "spine1"), nb("swp52", "spine2")}
	if !must(inv.ReportNeighbors(ctx, "leaf1", table))(t) {
		t.Fatalf("first report with fabric links did not bump")
	}
	rec.take()

	type step struct {
		name      string
		nbrs      []model.Neighbor
		wantBump  bool
		wantPeers []model.UnderlayPeer
	}
	both := []model.UnderlayPeer{{Port: "swp51", Peer: "spine1", PeerASN: spine1}, {Port: "swp52", Peer: "spine2", PeerASN: spine2}}
	later := slices.Clone(table)
	for i := range later {
		later[i].LastSeen = t0.Add(time.Minute)
	}
	steps := []step{
		{name: "unchanged table", nbrs: table, wantBump: false, wantPeers: both},
		{name: "same table, newer frames", nbrs: later, wantBump: false, wantPeers: both},
		{name: "same links, listed in another order", nbrs: []model.Neighbor{table[2], table[0], table[1]}, wantBump: false, wantPeers: both},
		{name: "link to spine1 lost", nbrs: []model.Neighbor{nb("swp1", "m1"), nb("swp52", "spine2")}, wantBump: true,
			wantPeers: []model.UnderlayPeer{{Port: "swp52", Peer: "spine2", PeerASN: spine2}}},
		{name: "spine1 back on swp51", nbrs: table, wantBump: true, wantPeers: both},
		{name: "spine1 seen on swp52 too: no session there", nbrs: append(slices.Clone(table), nb("swp52", "spine1")), wantBump: true,
			wantPeers: []model.UnderlayPeer{{Port: "swp51", Peer: "spine1", PeerASN: spine1}}},
		{name: "all fabric links lost", nbrs: []model.Neighbor{nb("swp1", "m1")}, wantBump: true, wantPeers: nil},
		{name: "still none", nbrs: []model.Neighbor{nb("swp1", "m1")}, wantBump: false, wantPeers: nil},
	}
	for _, s := range steps {
		rev := must(inv.Revision(ctx))(t)
		before := must(inv.DeviceConfig(ctx, "leaf1"))(t)
		bumped := must(inv.ReportNeighbors(ctx, "leaf1", s.nbrs))(t)
		cfg := must(inv.DeviceConfig(ctx, "leaf1"))(t)
		if diff := cmp.Diff(s.wantPeers, cfg.Underlay, netipEqual); diff != "" {
			t.Errorf("%s: leaf1 underlay (-want +got):\n%s", s.name, diff)
		}
		gotRev := must(inv.Revision(ctx))(t)
		published := rec.take()
		if s.wantBump {
			if !bumped || gotRev != rev+1 || cfg.Version != rev+1 {
				t.Errorf("%s: bumped %v, revision %d -> %d, config version %d; want a bump to %d", s.name, bumped, rev, gotRev, cfg.Version, rev+1)
			}
			if len(published) != 1 || published[0].Hostname != "leaf1" || published[0].Version != rev+1 {
				t.Errorf("%s: published %+v, want leaf1 at version %d", s.name, published, rev+1)
			}
		} else {
			if bumped || gotRev != rev || cfg.Version != before.Version {
				t.Errorf("%s: bumped %v, revision %d -> %d, config version %d -> %d; want no bump", s.name, bumped, rev, gotRev, before.Version, cfg.Version)
			}
			if len(published) != 0 {
				t.Errorf("%s: published %+v, want nothing", s.name, published)
			}
		}
	}
	// The spines never reported: their own configs have no sessions.
	for _, h := range []string{"spine1", "spine2"} {
		if u := must(inv.DeviceConfig(ctx, h))(t).Underlay; u != nil {
			t.Errorf("%s underlay = %+v, want none (it reported no neighbours)", h, u)
		}
	}
}

// TestAllocateAnnounce: announceable prefixes are validated, stored sorted
// and become the machine peer's allowance after its address; a rejected
// request changes nothing.
func TestAllocateAnnounce(t *testing.T) {
	ctx := context.Background()
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	tooMany := make([]netip.Prefix, 65)
	for i := range tooMany {
		tooMany[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(i), 0}), 24)
	}
	tests := []struct {
		name     string
		announce []netip.Prefix
		want     []netip.Prefix // stored Announce
		wantErr  string         // ErrInvalid with this in the message
	}{
		{name: "none", announce: nil, want: nil},
		{name: "default route", announce: pfx("0.0.0.0/0"), want: pfx("0.0.0.0/0")},
		{name: "several, sorted", announce: pfx("192.168.0.0/16", "2001:db8::/48", "10.96.0.0/12", "10.96.0.0/16"),
			want: pfx("10.96.0.0/12", "10.96.0.0/16", "192.168.0.0/16", "2001:db8::/48")},
		{name: "host bits set", announce: pfx("192.168.1.1/16"), wantErr: "announceable prefix 192.168.1.1/16 has host bits set (did you mean 192.168.0.0/16?)"},
		{name: "host bits set in IPv6", announce: pfx("2001:db8::1/64"), wantErr: "has host bits set (did you mean 2001:db8::/64?)"},
		{name: "duplicate", announce: pfx("10.96.0.0/12", "192.168.0.0/16", "10.96.0.0/12"), wantErr: "announceable prefix 10.96.0.0/12 is listed twice"},
		{name: "invalid", announce: []netip.Prefix{{}}, wantErr: "is not a valid CIDR"},
		{name: "too many", announce: tooMany, wantErr: "65 announceable prefixes: at most 64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inv, rec := newInv(t)
			must(inv.Register(ctx, leaf("leaf1", "swp1")))(t)
			must(inv.CreateNetwork(ctx, "a", "10.0.0.0/24"))(t)
			must(inv.CableMachine(ctx, "m1", []model.Connection{conn("leaf1", "swp1")}))(t)
			rec.take()
			rev := must(inv.Revision(ctx))(t)
			cfgBefore := must(inv.DeviceConfig(ctx, "leaf1"))(t)

			m, err := inv.AllocateMachine(ctx, "m1", "a", "req-1", tc.announce...)
			if tc.wantErr != "" {
				if !errors.Is(err, inventory.ErrInvalid) || !strings.Contains(fmt.Sprint(err), tc.wantErr) || !strings.Contains(fmt.Sprint(err), "m1") {
					t.Fatalf("err = %v, want ErrInvalid naming m1 and containing %q", err, tc.wantErr)
				}
				if got := must(inv.Revision(ctx))(t); got != rev {
					t.Errorf("revision %d after a rejected request, want %d", got, rev)
				}
				if got := must(inv.Machine(ctx, "m1"))(t); got.Allocation != nil || got.AllocateRequest != nil {
					t.Errorf("m1 after a rejected request: %+v, want free", got)
				}
				if diff := cmp.Diff(cfgBefore, must(inv.DeviceConfig(ctx, "leaf1"))(t), netipEqual); diff != "" {
					t.Errorf("leaf1 config changed by a rejected request (-before +after):\n%s", diff)
				}
				if got := rec.take(); len(got) != 0 {
					t.Errorf("published after a rejected request: %+v", got)
				}
				// The same request id still works with valid input.
				if _, err := inv.AllocateMachine(ctx, "m1", "a", "req-1"); err != nil {
					t.Errorf("allocating after a rejected request: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, m.Allocation.Announce, netipEqual); diff != "" {
				t.Errorf("returned announce (-want +got):\n%s", diff)
			}
			stored := must(inv.Machine(ctx, "m1"))(t)
			if diff := cmp.Diff(tc.want, stored.Allocation.Announce, netipEqual); diff != "" {
				t.Errorf("stored announce (-want +got):\n%s", diff)
			}
			wantPeers := []model.MachinePeer{{Port: "swp1", Machine: "m1",
				Allowed:     append([]netip.Prefix{netip.PrefixFrom(m.Allocation.IP, 32)}, tc.want...),
				MaxPrefixes: compile.DefaultMachineMaxPrefixes}}
			cfg := must(inv.DeviceConfig(ctx, "leaf1"))(t)
			if len(cfg.VRFs) != 1 {
				t.Fatalf("leaf1 VRFs = %+v, want one", cfg.VRFs)
			}
			if diff := cmp.Diff(wantPeers, cfg.VRFs[0].MachinePeers, netipEqual); diff != "" {
				t.Errorf("machine peers (-want +got):\n%s", diff)
			}
			// A retry with the same request id returns the same allocation.
			again := must(inv.AllocateMachine(ctx, "m1", "a", "req-1", tc.announce...))(t)
			if diff := cmp.Diff(m.Allocation, again.Allocation, netipEqual); diff != "" {
				t.Errorf("retried allocation (-first +retry):\n%s", diff)
			}
		})
	}
}

// TestReportStatusRouting: the routing report is stored with the device; a
// report without one keeps the last.
func TestReportStatusRouting(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t)
	must(inv.Register(ctx, leaf("leaf1", "swp1")))(t)
	r := &model.Routing{
		Sessions: []model.BGPSession{
			{Peer: "swp51", Description: "spine1", Address: "fe80::1", ASN: 4210000009, State: "established", Uptime: 90 * time.Second, Received: 12, Accepted: 12, Installed: 11},
			{Peer: "swp1", VRF: "vrf10000", Description: "m1", ASN: 4259999999, State: "active", Received: 3, Accepted: 1, Rejected: 2},
		},
		RoutesInstalled: 40, InstallFailures: 1, FailedRoutes: []string{"10.9.0.0/16: no such device"}, EVPNExported: 2, EVPNImported: 5,
	}
	if err := inv.ReportStatus(ctx, "leaf1", inventory.Status{AppliedVersion: 1, Routing: r}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, must(inv.Device(ctx, "leaf1"))(t).Routing); diff != "" {
		t.Errorf("routing after report (-want +got):\n%s", diff)
	}
	if err := inv.ReportStatus(ctx, "leaf1", inventory.Status{AppliedVersion: 1}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, must(inv.Device(ctx, "leaf1"))(t).Routing); diff != "" {
		t.Errorf("routing after a report without routing (-want +got):\n%s", diff)
	}
}

// TestAllowancesAfterUpgrade: a store written before attachments carried
// the machine's allowance (and configs had no machine peers) gets the
// allowances at the first mutation, so the next recompile of a device (an
// agent registering again) gives its machine peers their addresses.
func TestAllowancesAfterUpgrade(t *testing.T) {
	ctx := context.Background()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), bolt.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	inv := must(inventory.New(st))(t)
	must(inv.Register(ctx, leaf("leaf1", "swp1")))(t)
	must(inv.CreateNetwork(ctx, "a", "10.0.0.0/24"))(t)
	must(inv.CableMachine(ctx, "m1", []model.Connection{conn("leaf1", "swp1")}))(t)
	must(inv.AllocateMachine(ctx, "m1", "a", ""))(t)
	want := must(inv.DeviceConfig(ctx, "leaf1"))(t).VRFs
	if len(want) != 1 || len(want[0].MachinePeers) != 1 || len(want[0].MachinePeers[0].Allowed) != 1 {
		t.Fatalf("leaf1 VRFs = %+v, want one machine peer allowed its address", want)
	}

	// Rewrite the attachments and the config the way the previous release
	// stored them: no allowance, no machine peers, index version 1.
	err = st.Update(ctx, func(tx store.Tx) error {
		kvs, err := tx.List("attachments", "")
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			var a model.Attachment
			if err := json.Unmarshal(kv.Value, &a); err != nil {
				return err
			}
			a.Allowed = nil
			if err := putJSON(tx, "attachments", kv.Key, a); err != nil {
				return err
			}
		}
		b, err := tx.Get("configs", "leaf1")
		if err != nil {
			return err
		}
		var cfg model.DeviceConfig
		if err := json.Unmarshal(b, &cfg); err != nil {
			return err
		}
		for i := range cfg.VRFs {
			cfg.VRFs[i].MachinePeers = nil
		}
		if err := putJSON(tx, "configs", "leaf1", cfg); err != nil {
			return err
		}
		return putJSON(tx, "meta", "indexes", 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	inv = must(inventory.New(st))(t)
	must(inv.Register(ctx, leaf("leaf1", "swp1")))(t) // the agent reconnects
	if diff := cmp.Diff(want, must(inv.DeviceConfig(ctx, "leaf1"))(t).VRFs, netipEqual); diff != "" {
		t.Errorf("leaf1 VRFs after the upgrade (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(fullCompile(t, inv), storedConfigs(t, inv), configOpts); diff != "" {
		t.Errorf("configs after the upgrade (-full +stored):\n%s", diff)
	}
}

func putJSON(tx store.Tx, bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(bucket, key, b)
}
