package inventory_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/metalfabric/fabric/controlplane/compile"
	"github.com/metalfabric/fabric/controlplane/inventory"
	"github.com/metalfabric/fabric/controlplane/model"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
)

// recorder is a Notifier that checks each published config is already
// committed when it is published (the store holds that version or, after
// a concurrent commit, a newer one).
type recorder struct {
	t   *testing.T
	inv *inventory.Inventory

	mu        sync.Mutex
	published []model.DeviceConfig
}

func (r *recorder) Publish(cfgs ...model.DeviceConfig) {
	for _, c := range cfgs {
		stored, err := r.inv.DeviceConfig(context.Background(), c.Hostname)
		if err != nil || stored.Version < c.Version {
			r.t.Errorf("published %s version %d before commit: store has %d, %v", c.Hostname, c.Version, stored.Version, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.published = append(r.published, cfgs...)
}

func (r *recorder) take() []model.DeviceConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.published
	r.published = nil
	return p
}

func newInv(t *testing.T) (*inventory.Inventory, *recorder) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), bolt.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	rec := &recorder{t: t}
	inv, err := inventory.New(st, inventory.WithNotifier(rec))
	if err != nil {
		t.Fatal(err)
	}
	rec.inv = inv
	return inv, rec
}

// must(f())(t) returns f's value or fails t.
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func leaf(name string, ports ...string) model.Device {
	d := model.Device{Hostname: name, Role: model.RoleLeaf}
	for _, p := range ports {
		d.Ports = append(d.Ports, model.Port{Name: p})
	}
	return d
}

func TestVersioning(t *testing.T) {
	ctx := context.Background()
	inv, rec := newInv(t)

	v1 := must(inv.Register(ctx, leaf("leaf1", "swp1", "swp2")))(t)
	v2 := must(inv.Register(ctx, leaf("leaf2", "swp1")))(t)
	if v1 != 1 || v2 != 2 {
		t.Errorf("first versions = %d, %d; want 1, 2", v1, v2)
	}
	lo1, lo2 := netip.MustParseAddr("10.255.0.1"), netip.MustParseAddr("10.255.0.2")
	want := []model.DeviceConfig{
		{Hostname: "leaf1", Version: 1, Role: model.RoleLeaf, Loopback: netip.PrefixFrom(lo1, 32), VTEP: lo1, ASN: 4210000001},
		{Hostname: "leaf2", Version: 2, Role: model.RoleLeaf, Loopback: netip.PrefixFrom(lo2, 32), VTEP: lo2, ASN: 4210000002},
	}
	if diff := cmp.Diff(want, rec.take(), netipEqual); diff != "" {
		t.Errorf("published on register (-want +got):\n%s", diff)
	}

	n := must(inv.CreateNetwork(ctx, "tenant-a", "10.0.0.0/24"))(t)
	must(inv.CableMachine(ctx, "m1", []model.Connection{{Device: "leaf1", Port: "swp1"}}))(t)
	if got := rec.take(); len(got) != 0 {
		t.Errorf("published without a config change: %v", got)
	}
	m := must(inv.AllocateMachine(ctx, "m1", "tenant-a", ""))(t)
	rev := m.Revision
	if m.Allocation.Revision != rev || rev != 5 {
		t.Errorf("allocation revision = %d, machine revision = %d; want 5", m.Allocation.Revision, rev)
	}
	want = []model.DeviceConfig{{Hostname: "leaf1", Version: rev, Role: model.RoleLeaf, VRFs: []model.VRF{
		{Name: fmt.Sprintf("vrf%d", n.VNI), VNI: n.VNI, Table: n.VNI, Network: "tenant-a", Ports: []string{"swp1"}, L3VNI: true,
			MachinePeers: []model.MachinePeer{{Port: "swp1", Machine: "m1", Allowed: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")},
				MaxPrefixes: compile.DefaultMachineMaxPrefixes}}},
	}, Loopback: netip.PrefixFrom(lo1, 32), VTEP: lo1, ASN: 4210000001, Ports: []model.PortConfig{{Name: "swp1", Description: "m1", AdminUp: true}}}}
	if diff := cmp.Diff(want, rec.take(), netipEqual); diff != "" {
		t.Errorf("published on allocate: only leaf1 (-want +got):\n%s", diff)
	}

	// A rejected request rolls the revision back with everything else.
	if _, err := inv.AllocateMachine(ctx, "m1", "tenant-a", ""); !errors.Is(err, inventory.ErrExists) {
		t.Fatalf("double allocation: err = %v, want ErrExists", err)
	}
	if got := must(inv.Revision(ctx))(t); got != rev {
		t.Errorf("revision after rejected request = %d, want %d", got, rev)
	}

	// Recabling an allocated machine moves the port and is a change of the
	// machine: its revision moves and convergence requires the new version
	// on the new device.
	m = must(inv.CableMachine(ctx, "m1", []model.Connection{{Device: "leaf2", Port: "swp1"}}))(t)
	if m.Revision != rev+1 || m.Allocation.Revision != rev {
		t.Errorf("after recable: machine revision %d (want %d), allocation revision %d (want %d)", m.Revision, rev+1, m.Allocation.Revision, rev)
	}
	var hosts []string
	for _, c := range rec.take() {
		hosts = append(hosts, fmt.Sprintf("%s@%d/%d", c.Hostname, c.Version, len(c.VRFs)))
	}
	wantHosts := []string{fmt.Sprintf("leaf1@%d/0", rev+1), fmt.Sprintf("leaf2@%d/1", rev+1)}
	if diff := cmp.Diff(wantHosts, hosts); diff != "" {
		t.Errorf("published on recable (-want +got):\n%s", diff)
	}
	c := must(inv.Convergence(ctx, "m1"))(t)
	if c.Revision != rev+1 || len(c.Devices) != 1 || c.Devices[0].RequiredVersion != rev+1 {
		t.Errorf("convergence after recable = %+v, want leaf2 requiring %d", c, rev+1)
	}

	// A second NIC on leaf1: only leaf1's config changes. leaf2's config
	// is still the one of rev+1 and already holds the machine, so that is
	// what convergence requires of it, not the machine's new revision.
	m = must(inv.CableMachine(ctx, "m1", []model.Connection{{Device: "leaf1", Port: "swp1"}, {Device: "leaf2", Port: "swp1"}}))(t)
	rec.take()
	c = must(inv.Convergence(ctx, "m1"))(t)
	want2 := map[string]uint64{"leaf1": m.Revision, "leaf2": rev + 1}
	for _, d := range c.Devices {
		if d.RequiredVersion != want2[d.Hostname] {
			t.Errorf("convergence of %s requires %d, want %d", d.Hostname, d.RequiredVersion, want2[d.Hostname])
		}
	}
	if len(c.Devices) != 2 || m.Revision != rev+2 {
		t.Errorf("convergence after the second NIC = %+v (machine revision %d), want both leaves", c, m.Revision)
	}
	for h, v := range want2 {
		must(struct{}{}, inv.ReportStatus(ctx, h, inventory.Status{AppliedVersion: v}))(t)
	}
	if c = must(inv.Convergence(ctx, "m1"))(t); !c.Converged {
		t.Errorf("not converged with both leaves at their current configs: %+v", c)
	}
}

func TestErrorKinds(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t)
	must(inv.Register(ctx, leaf("leaf1", "swp1")))(t)
	must(inv.CreateNetwork(ctx, "a", "10.0.0.0/24"))(t)
	tests := []struct {
		name string
		err  error
		kind error
	}{
		{"bad prefix", second(inv.CreateNetwork(ctx, "b", "10.0.0.1/24")), inventory.ErrInvalid},
		{"overlap", second(inv.CreateNetwork(ctx, "b", "10.0.0.0/25")), inventory.ErrPrecondition},
		{"duplicate", second(inv.CreateNetwork(ctx, "a", "10.1.0.0/24")), inventory.ErrExists},
		{"unknown machine", second(inv.AllocateMachine(ctx, "m9", "a", "")), inventory.ErrNotFound},
		{"unknown port", second(inv.CableMachine(ctx, "m1", []model.Connection{{Device: "leaf1", Port: "swp9"}})), inventory.ErrNotFound},
		{"unknown device", inv.ReportStatus(ctx, "leaf9", inventory.Status{}), inventory.ErrNotFound},
	}
	for _, tc := range tests {
		if !errors.Is(tc.err, tc.kind) {
			t.Errorf("%s: err = %v, want kind %v", tc.name, tc.err, tc.kind)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// TestConcurrentAllocations: parallel allocations into one network get
// distinct addresses (the store serializes the transactions).
func TestConcurrentAllocations(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t)
	const n = 20
	var ports []string
	for i := range n {
		ports = append(ports, fmt.Sprintf("swp%d", i))
	}
	must(inv.Register(ctx, leaf("leaf1", ports...)))(t)
	must(inv.CreateNetwork(ctx, "a", "10.0.0.0/24"))(t)
	for i := range n {
		must(inv.CableMachine(ctx, fmt.Sprintf("m%d", i), []model.Connection{{Device: "leaf1", Port: ports[i]}}))(t)
	}
	var wg sync.WaitGroup
	ips := make([]netip.Addr, n)
	for i := range n {
		wg.Go(func() {
			m, err := inv.AllocateMachine(ctx, fmt.Sprintf("m%d", i), "a", "")
			if err != nil {
				t.Errorf("allocate m%d: %v", i, err)
				return
			}
			ips[i] = m.Allocation.IP
		})
	}
	wg.Wait()
	seen := make(map[netip.Addr]bool)
	for i, ip := range ips {
		if seen[ip] {
			t.Errorf("m%d got duplicate IP %s", i, ip)
		}
		seen[ip] = true
	}
	cfg := must(inv.DeviceConfig(ctx, "leaf1"))(t)
	if len(cfg.VRFs) != 1 || len(cfg.VRFs[0].Ports) != n {
		t.Errorf("leaf1 config = %+v, want one VRF with %d ports", cfg, n)
	}
}

// netipEqual compares netip values by value.
var netipEqual = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})
