package inventory_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/metalfabric/fabric/controlplane/inventory"
	"github.com/metalfabric/fabric/controlplane/ipam"
	"github.com/metalfabric/fabric/controlplane/model"
	"github.com/metalfabric/fabric/controlplane/store"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func nb(port, name string) model.Neighbor {
	return model.Neighbor{Port: port, ChassisID: "chassis-" + name, SystemName: name, LastSeen: t0}
}

func machineMap(t *testing.T, inv *inventory.Inventory) map[string]model.Machine {
	t.Helper()
	out := make(map[string]model.Machine)
	for _, m := range must(inv.ListMachines(context.Background()))(t) {
		out[m.Name] = m
	}
	return out
}

func conn(dev, port string) model.Connection { return model.Connection{Device: dev, Port: port} }

// TestLearnedWiring: machines are found by LLDP system name (chassis id
// without one), created free, linked to the ports they are seen on; the
// wiring follows the current table; reports that change no wiring do not
// bump the revision.
func TestLearnedWiring(t *testing.T) {
	ctx := context.Background()
	inv, rec := newInv(t)
	must(inv.Register(ctx, leaf("leaf1", "swp1", "swp2", "swp3")))(t)
	must(inv.Register(ctx, leaf("leaf2", "swp1")))(t)
	must(inv.Register(ctx, model.Device{Hostname: "spine1", Role: model.RoleSpine, Ports: []model.Port{{Name: "swp1"}}}))(t)
	must(inv.CreateNetwork(ctx, "a", "10.0.0.0/24"))(t)
	rec.take()

	noName := model.Neighbor{Port: "swp2", ChassisID: "AA:BB:CC:00:00:09", LastSeen: t0}
	bumped := must(inv.ReportNeighbors(ctx, "leaf1", []model.Neighbor{nb("swp1", "m1"), noName, nb("swp3", "spine1")}))(t)
	if !bumped {
		t.Errorf("first report with new machines did not bump the revision")
	}
	want := map[string]model.Machine{
		"m1":                {Name: "m1", Connections: []model.Connection{conn("leaf1", "swp1")}, Learned: []model.Connection{conn("leaf1", "swp1")}, ChassisID: "chassis-m1", LastSeen: t0},
		"aa-bb-cc-00-00-09": {Name: "aa-bb-cc-00-00-09", Connections: []model.Connection{conn("leaf1", "swp2")}, Learned: []model.Connection{conn("leaf1", "swp2")}, ChassisID: "AA:BB:CC:00:00:09", LastSeen: t0},
	}
	if diff := cmp.Diff(want, machineMap(t, inv), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("machines after first report (-want +got):\n%s", diff)
	}
	// Free machines change no config; the fabric link to spine1 gives
	// leaf1 (only) an underlay session.
	spineASN := must(inv.Device(ctx, "spine1"))(t).ASN
	var changed []string
	for _, c := range rec.take() {
		changed = append(changed, c.Hostname)
		if diff := cmp.Diff([]model.UnderlayPeer{{Port: "swp3", Peer: "spine1", PeerASN: spineASN}}, c.Underlay, netipEqual); diff != "" {
			t.Errorf("%s underlay after first report (-want +got):\n%s", c.Hostname, diff)
		}
		if len(c.VRFs) != 0 || len(c.Ports) != 0 {
			t.Errorf("free machines changed %s's config: %+v", c.Hostname, c)
		}
	}
	if diff := cmp.Diff([]string{"leaf1"}, changed); diff != "" {
		t.Errorf("published after first report (-want +got):\n%s", diff)
	}

	// Same table, newer frames: last seen moves, the revision does not.
	rev := must(inv.Revision(ctx))(t)
	later := nb("swp1", "m1")
	later.LastSeen = t0.Add(time.Minute)
	if must(inv.ReportNeighbors(ctx, "leaf1", []model.Neighbor{later, noName, nb("swp3", "spine1")}))(t) {
		t.Errorf("report without wiring change bumped the revision")
	}
	if got := must(inv.Revision(ctx))(t); got != rev {
		t.Errorf("revision = %d, want unchanged %d", got, rev)
	}
	if got := machineMap(t, inv)["m1"].LastSeen; !got.Equal(t0.Add(time.Minute)) {
		t.Errorf("m1 last seen = %v, want %v", got, t0.Add(time.Minute))
	}

	// Allocated: the port is in the VRF; the neighbour vanishing takes it
	// out at once; seen on another leaf, that leaf's port joins.
	must(inv.AllocateMachine(ctx, "m1", "a", ""))(t)
	if cfg := must(inv.DeviceConfig(ctx, "leaf1"))(t); len(cfg.VRFs) != 1 || !cmp.Equal(cfg.VRFs[0].Ports, []string{"swp1"}) {
		t.Errorf("leaf1 after allocate: %+v, want swp1 in one VRF", cfg.VRFs)
	}
	rec.take()
	if !must(inv.ReportNeighbors(ctx, "leaf1", []model.Neighbor{noName}))(t) {
		t.Errorf("losing an allocated machine's neighbour did not bump")
	}
	if cfg := must(inv.DeviceConfig(ctx, "leaf1"))(t); len(cfg.VRFs) != 0 {
		t.Errorf("leaf1 after link loss: VRFs %+v, want none", cfg.VRFs)
	}
	m := machineMap(t, inv)["m1"]
	if m.Allocation == nil || len(m.Connections) != 0 || m.Revision != must(inv.Revision(ctx))(t) {
		t.Errorf("m1 after link loss = %+v, want allocated, unwired, revision moved", m)
	}
	must(inv.ReportNeighbors(ctx, "leaf2", []model.Neighbor{nb("swp1", "m1")}))(t)
	if cfg := must(inv.DeviceConfig(ctx, "leaf2"))(t); len(cfg.VRFs) != 1 || !cmp.Equal(cfg.VRFs[0].Ports, []string{"swp1"}) {
		t.Errorf("leaf2 after m1 appears: %+v, want swp1 in one VRF", cfg.VRFs)
	}
	var hosts []string
	for _, c := range rec.take() {
		hosts = append(hosts, c.Hostname)
	}
	if diff := cmp.Diff([]string{"leaf1", "leaf2"}, hosts); diff != "" {
		t.Errorf("published configs (-want +got):\n%s", diff)
	}

	// A spine's neighbours never become machines.
	must(inv.ReportNeighbors(ctx, "spine1", []model.Neighbor{nb("swp1", "m7")}))(t)
	if _, ok := machineMap(t, inv)["m7"]; ok {
		t.Errorf("neighbour of a spine became a machine")
	}
}

// TestManualOverride: CableMachine wins over LLDP until removed.
func TestManualOverride(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t)
	must(inv.Register(ctx, leaf("leaf1", "swp1")))(t)
	must(inv.Register(ctx, leaf("leaf2", "swp1")))(t)
	must(inv.ReportNeighbors(ctx, "leaf1", []model.Neighbor{nb("swp1", "m1")}))(t)

	m := must(inv.CableMachine(ctx, "m1", []model.Connection{conn("leaf2", "swp1")}))(t)
	want := model.Machine{Name: "m1", Manual: true, Connections: []model.Connection{conn("leaf2", "swp1")},
		Learned: []model.Connection{conn("leaf1", "swp1")}, ChassisID: "chassis-m1", LastSeen: t0}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("after override (-want +got):\n%s", diff)
	}
	// Learned wiring changes under an override: effective wiring does not,
	// so no revision bump.
	rev := must(inv.Revision(ctx))(t)
	if must(inv.ReportNeighbors(ctx, "leaf1", nil))(t) || must(inv.Revision(ctx))(t) != rev {
		t.Errorf("learned change under manual override bumped the revision")
	}
	// A manual claim hides the port from another machine's learned wiring.
	must(inv.ReportNeighbors(ctx, "leaf2", []model.Neighbor{nb("swp1", "m2")}))(t)
	if got := machineMap(t, inv)["m2"]; len(got.Connections) != 0 {
		t.Errorf("m2 learned a manually claimed port: %+v", got)
	}
	// Removing the override returns to learned wiring, and hands the port
	// back to LLDP.
	m = must(inv.CableMachine(ctx, "m1", nil))(t)
	if m.Manual || len(m.Connections) != 0 {
		t.Errorf("after removing override: %+v, want learned (none)", m)
	}
	if got := machineMap(t, inv)["m2"]; !cmp.Equal(got.Connections, []model.Connection{conn("leaf2", "swp1")}) {
		t.Errorf("m2 after override removed: %+v, want leaf2/swp1", got.Connections)
	}
}

// TestFabricLinks: a neighbour named like a registered device is a link,
// not a machine; a machine created before its switch registered goes away.
func TestFabricLinks(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t)
	must(inv.Register(ctx, leaf("leaf1", "swp1", "swp2")))(t)
	must(inv.ReportNeighbors(ctx, "leaf1", []model.Neighbor{nb("swp1", "spine1"), nb("swp2", "m1")}))(t)
	if _, ok := machineMap(t, inv)["spine1"]; !ok {
		t.Fatalf("unknown neighbour spine1 was not taken for a machine before spine1 registered")
	}
	must(inv.Register(ctx, model.Device{Hostname: "spine1", Role: model.RoleSpine}))(t)
	got := machineMap(t, inv)
	if _, ok := got["spine1"]; ok {
		t.Errorf("spine1 is still a machine after it registered")
	}
	if _, ok := got["m1"]; !ok {
		t.Errorf("m1 vanished")
	}
	d := must(inv.Device(ctx, "leaf1"))(t)
	if len(d.Neighbors) != 2 || d.Neighbors[0].SystemName != "spine1" {
		t.Errorf("leaf1 neighbours = %+v, want the fabric link shown", d.Neighbors)
	}
}

func TestFindings(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t)
	must(inv.Register(ctx, leaf("leaf1", "swp1", "swp2", "swp3", "swp4")))(t)
	must(inv.Register(ctx, leaf("leaf2", "swp1")))(t)
	must(inv.ReportNeighbors(ctx, "leaf1", []model.Neighbor{nb("swp1", "M1"), nb("swp2", "mx"), nb("swp4", "m4")}))(t)
	must(inv.ReportNeighbors(ctx, "leaf2", []model.Neighbor{nb("swp1", "m9")}))(t)
	rev := must(inv.Revision(ctx))(t)
	must(inv.SetCablingPlan(ctx, "leaf1", []model.PlannedPort{{Port: "swp3", Neighbor: "m3"}, {Port: "swp1", Neighbor: "m1"}, {Port: "swp2", Neighbor: "m2"}}))(t)
	want := []model.Finding{
		{Device: "leaf1", Port: "swp2", Kind: model.FindingMismatch, Expected: "m2", Actual: "mx"},
		{Device: "leaf1", Port: "swp3", Kind: model.FindingMissing, Expected: "m3"},
		{Device: "leaf1", Port: "swp4", Kind: model.FindingUnplanned, Actual: "m4"},
	}
	if diff := cmp.Diff(want, must(inv.Findings(ctx))(t)); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
	if got := must(inv.Revision(ctx))(t); got != rev {
		t.Errorf("setting a plan moved the revision %d -> %d", rev, got)
	}
	for _, tc := range []struct {
		name  string
		dev   string
		ports []model.PlannedPort
		kind  error
	}{
		{"unknown device", "leaf9", nil, inventory.ErrNotFound},
		{"unknown port", "leaf1", []model.PlannedPort{{Port: "swp9", Neighbor: "m1"}}, inventory.ErrNotFound},
		{"bad port", "leaf1", []model.PlannedPort{{Port: "a/b", Neighbor: "m1"}}, inventory.ErrInvalid},
		{"empty neighbour", "leaf1", []model.PlannedPort{{Port: "swp1"}}, inventory.ErrInvalid},
		{"twice", "leaf1", []model.PlannedPort{{Port: "swp1", Neighbor: "a"}, {Port: "swp1", Neighbor: "b"}}, inventory.ErrInvalid},
	} {
		if _, err := inv.SetCablingPlan(ctx, tc.dev, tc.ports); !errors.Is(err, tc.kind) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.kind)
		}
	}
	if diff := cmp.Diff(want, must(inv.Findings(ctx))(t)); diff != "" {
		t.Errorf("findings after rejected plans (-want +got):\n%s", diff)
	}
	must(inv.SetCablingPlan(ctx, "leaf1", nil))(t)
	if got := must(inv.Findings(ctx))(t); len(got) != 0 {
		t.Errorf("findings after removing the plan: %v", got)
	}
}

func TestReportNeighborsValidation(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t)
	must(inv.Register(ctx, leaf("leaf1", "swp1")))(t)
	must(inv.ReportNeighbors(ctx, "leaf1", []model.Neighbor{nb("swp1", "m1")}))(t)
	rev := must(inv.Revision(ctx))(t)
	before := machineMap(t, inv)
	for _, tc := range []struct {
		name string
		host string
		nbrs []model.Neighbor
		kind error
	}{
		{"unknown device", "leaf9", nil, inventory.ErrNotFound},
		{"bad hostname", "-x", nil, inventory.ErrInvalid},
		{"bad port", "leaf1", []model.Neighbor{nb("a/b", "m2")}, inventory.ErrInvalid},
		{"empty port", "leaf1", []model.Neighbor{nb("", "m2")}, inventory.ErrInvalid},
		{"no chassis id", "leaf1", []model.Neighbor{{Port: "swp1", SystemName: "m2"}}, inventory.ErrInvalid},
		{"twice", "leaf1", []model.Neighbor{nb("swp1", "m2"), nb("swp1", "m2")}, inventory.ErrInvalid},
	} {
		if _, err := inv.ReportNeighbors(ctx, tc.host, tc.nbrs); !errors.Is(err, tc.kind) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.kind)
		}
	}
	if got := must(inv.Revision(ctx))(t); got != rev {
		t.Errorf("revision moved on rejected reports: %d -> %d", rev, got)
	}
	if diff := cmp.Diff(before, machineMap(t, inv)); diff != "" {
		t.Errorf("machines changed by rejected reports (-want +got):\n%s", diff)
	}
}

func TestRequestIDs(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t)
	must(inv.Register(ctx, leaf("leaf1", "swp1", "swp2")))(t)
	must(inv.CreateNetwork(ctx, "a", "10.0.0.0/24"))(t)
	must(inv.CreateNetwork(ctx, "b", "10.0.1.0/24"))(t)
	must(inv.ReportNeighbors(ctx, "leaf1", []model.Neighbor{nb("swp1", "m1"), nb("swp2", "m2")}))(t)

	first := must(inv.AllocateMachine(ctx, "m1", "a", "req-1"))(t)
	rev := must(inv.Revision(ctx))(t)
	again := must(inv.AllocateMachine(ctx, "m1", "a", "req-1"))(t)
	if diff := cmp.Diff(first.Allocation, again.Allocation, netipEqual); diff != "" {
		t.Errorf("retry result (-want +got):\n%s", diff)
	}
	if got := must(inv.Revision(ctx))(t); got != rev {
		t.Errorf("retry moved the revision %d -> %d", rev, got)
	}
	if _, err := inv.AllocateMachine(ctx, "m1", "a", "req-2"); !errors.Is(err, inventory.ErrExists) {
		t.Errorf("other request for an allocated machine: err = %v, want ErrExists", err)
	}
	if _, err := inv.AllocateMachine(ctx, "m1", "a", ""); !errors.Is(err, inventory.ErrExists) {
		t.Errorf("request without id for an allocated machine: err = %v, want ErrExists", err)
	}
	if _, err := inv.AllocateMachine(ctx, "m1", "b", "req-1"); !errors.Is(err, inventory.ErrPrecondition) {
		t.Errorf("same id, other network: err = %v, want ErrPrecondition", err)
	}
	if _, err := inv.AllocateMachine(ctx, "m1", "a", "bad id"); !errors.Is(err, inventory.ErrInvalid) {
		t.Errorf("bad request id: err = %v, want ErrInvalid", err)
	}

	must(inv.FreeMachine(ctx, "m1", "free-1"))(t)
	rev = must(inv.Revision(ctx))(t)
	m := must(inv.FreeMachine(ctx, "m1", "free-1"))(t)
	if m.Allocation != nil || must(inv.Revision(ctx))(t) != rev {
		t.Errorf("free retry = %+v, revision %d (want %d)", m, must(inv.Revision(ctx))(t), rev)
	}
	if _, err := inv.FreeMachine(ctx, "m1", "free-2"); !errors.Is(err, inventory.ErrPrecondition) {
		t.Errorf("other free of a free machine: err = %v, want ErrPrecondition", err)
	}
	// An allocate retried after the machine was freed returns the first
	// result and does not allocate again.
	m = must(inv.AllocateMachine(ctx, "m1", "a", "req-1"))(t)
	if m.Allocation == nil || m.Allocation.IP != first.Allocation.IP {
		t.Errorf("late retry = %+v, want the first allocation", m.Allocation)
	}
	if got := machineMap(t, inv)["m1"]; got.Allocation != nil {
		t.Errorf("late retry allocated again: %+v", got.Allocation)
	}
}

func TestUnknownWiring(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t)
	must(inv.Register(ctx, leaf("leaf1", "swp1")))(t)
	must(inv.CreateNetwork(ctx, "a", "10.0.0.0/24"))(t)
	must(inv.ReportNeighbors(ctx, "leaf1", []model.Neighbor{nb("swp1", "m1")}))(t)
	must(inv.ReportNeighbors(ctx, "leaf1", nil))(t) // m1 gone: known, unwired
	_, err := inv.AllocateMachine(ctx, "m1", "a", "")
	if !errors.Is(err, inventory.ErrPrecondition) || !strings.Contains(err.Error(), "no known wiring") {
		t.Errorf("allocate unwired machine: err = %v, want ErrPrecondition about wiring", err)
	}
}

// TestASNPool: one ASN per device from the pool, kept on re-registration
// and across a restart; an empty pool rejects new devices.
func TestASNPool(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	open := func() (*inventory.Inventory, func()) {
		st, err := bolt.Open(path, bolt.WithNoSync())
		if err != nil {
			t.Fatal(err)
		}
		inv, err := inventory.New(st, inventory.WithASNRange(ipam.ASNRange{First: 65001, Last: 65002}))
		if err != nil {
			t.Fatal(err)
		}
		return inv, func() { _ = st.Close() }
	}
	inv, closeFn := open()
	must(inv.Register(ctx, leaf("leaf1")))(t)
	must(inv.Register(ctx, leaf("leaf2")))(t)
	if _, err := inv.Register(ctx, leaf("leaf3")); !errors.Is(err, inventory.ErrExhausted) {
		t.Errorf("third device with a pool of two: err = %v, want ErrExhausted", err)
	}
	closeFn()
	inv, closeFn = open()
	defer closeFn()
	must(inv.Register(ctx, leaf("leaf2", "swp1")))(t)
	got := map[string]uint32{}
	for _, d := range must(inv.ListDevices(ctx))(t) {
		got[d.Hostname] = d.ASN
	}
	if diff := cmp.Diff(map[string]uint32{"leaf1": 65001, "leaf2": 65002}, got); diff != "" {
		t.Errorf("ASNs (-want +got):\n%s", diff)
	}
	if cfg := must(inv.DeviceConfig(ctx, "leaf2"))(t); cfg.ASN != 65002 {
		t.Errorf("leaf2 config ASN = %d, want 65002", cfg.ASN)
	}
}

// failingStore fails the transaction at the n-th Put (a crash before
// commit): bbolt rolls the whole transaction back.
type failingStore struct {
	store.Store
	failAt int
}

type failingTx struct {
	store.Tx
	puts   *int
	failAt int
}

var errCrash = errors.New("simulated crash")

func (f *failingTx) Put(b, k string, v []byte) error {
	*f.puts++
	if *f.puts == f.failAt {
		return errCrash
	}
	return f.Tx.Put(b, k, v)
}

func (f *failingStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	return f.Store.Update(ctx, func(tx store.Tx) error {
		puts := 0
		return fn(&failingTx{Tx: tx, puts: &puts, failAt: f.failAt})
	})
}

// TestIPAMProperties: allocate until the network is exhausted, with
// crashes injected at every write of some allocations, across store
// close/reopen: no address is handed out twice, every allocated address is
// inside the prefix, exhaustion is ErrExhausted, freed addresses are
// reused.
func TestIPAMProperties(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	var st *bolt.Store
	reopen := func(failAt int) *inventory.Inventory {
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
	t.Cleanup(func() { _ = st.Close() })
	const machines = 9 // a /29 holds 6
	inv := reopen(0)
	var ports []string
	var nbrs []model.Neighbor
	for i := range machines {
		ports = append(ports, fmt.Sprintf("swp%d", i))
		nbrs = append(nbrs, nb(ports[i], fmt.Sprintf("m%d", i)))
	}
	must(inv.Register(ctx, leaf("leaf1", ports...)))(t)
	must(inv.ReportNeighbors(ctx, "leaf1", nbrs))(t)
	n := must(inv.CreateNetwork(ctx, "a", "10.0.0.0/29"))(t)

	check := func(inv *inventory.Inventory) map[string]netip.Addr {
		t.Helper()
		seen := map[netip.Addr]string{}
		out := map[string]netip.Addr{}
		for _, m := range must(inv.ListMachines(ctx))(t) {
			if m.Allocation == nil {
				continue
			}
			ip := m.Allocation.IP
			if o, dup := seen[ip]; dup {
				t.Errorf("%s and %s both hold %s", o, m.Name, ip)
			}
			if !n.Prefix.Contains(ip) || ip == n.Prefix.Addr() {
				t.Errorf("%s holds %s, not a host of %s", m.Name, ip, n.Prefix)
			}
			seen[ip] = m.Name
			out[m.Name] = ip
		}
		return out
	}

	exhausted := false
	for i := range machines {
		name := fmt.Sprintf("m%d", i)
		// A crash at the first write of the allocation leaves nothing.
		crashing := reopen(1)
		if _, err := crashing.AllocateMachine(ctx, name, "a", ""); !errors.Is(err, errCrash) {
			t.Fatalf("crashing allocate: err = %v", err)
		}
		inv = reopen(0)
		if m := machineMap(t, inv)[name]; m.Allocation != nil {
			t.Errorf("%s allocated after a crash before commit", name)
		}
		_, err := inv.AllocateMachine(ctx, name, "a", "")
		if i < 6 && err != nil {
			t.Fatalf("allocate %s: %v", name, err)
		}
		if i >= 6 {
			if !errors.Is(err, inventory.ErrExhausted) {
				t.Fatalf("allocate %s into a full /29: err = %v, want ErrExhausted", name, err)
			}
			exhausted = true
		}
		check(inv)
	}
	if !exhausted {
		t.Fatal("network never exhausted")
	}
	inv = reopen(0)
	before := check(inv)
	if len(before) != 6 {
		t.Fatalf("%d allocations after reopen, want 6", len(before))
	}
	freed := before["m2"]
	must(inv.FreeMachine(ctx, "m2", ""))(t)
	inv = reopen(0)
	m := must(inv.AllocateMachine(ctx, "m7", "a", ""))(t)
	if m.Allocation.IP != freed {
		t.Errorf("m7 got %s, want the freed %s", m.Allocation.IP, freed)
	}
	check(reopen(0))
}
