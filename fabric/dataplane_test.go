package fabric_test

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/metalfabric/fabric/fabric"
	ft "github.com/metalfabric/fabric/fabric/fabrictest"
)

var (
	vtep = netip.MustParseAddr("10.0.0.1")
	rmac = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 0x01}
)

var ignoreOwnedAddrs = cmpopts.IgnoreFields(fabric.Actual{}, "OwnedAddrs")

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// switchKernel is a leaf with four ports, a foreign management VRF and a
// foreign address on lo.
func switchKernel() *ft.Kernel {
	k := ft.New(ft.Loopback(), ft.Port("swp1"), ft.Port("swp2"), ft.Port("swp3"), ft.Port("swp4"),
		ft.VRF("mgmt", 1000, false), ft.In(ft.Port("eth0"), "mgmt"))
	k.SetAddrs(
		fabric.Addr{Link: "lo", Prefix: pfx("127.0.0.1/8"), Label: "lo"},
		fabric.Addr{Link: "lo", Prefix: pfx("::1/128")},
		fabric.Addr{Link: "eth0", Prefix: pfx("192.168.0.10/24"), Label: "eth0"},
	)
	return k
}

// leaf is a full desired state: loopback, bridge, two tenant VRFs with
// L3VNIs, a VRF without one, routed and access ports.
var leaf = fabric.Desired{
	Loopback:  fabric.Loopback{Addrs: []netip.Prefix{pfx("10.0.0.1/32"), pfx("2001:db8::1/128")}},
	VTEP:      vtep,
	Bridge:    &fabric.Bridge{MTU: 9000, VLANs: []uint16{10, 11, 12}},
	VLANRange: fabric.VLANRange{Min: 1000, Max: 1999},
	VRFs: []fabric.VRF{
		{Name: "vrf20", Table: 20, L3VNI: &fabric.L3VNI{VNI: 20, RouterMAC: rmac}, Addrs: []netip.Prefix{pfx("10.20.0.1/24")}},
		{Name: "vrf10", Table: 10, L3VNI: &fabric.L3VNI{VNI: 10, RouterMAC: rmac}},
		{Name: "vrf30", Table: 30, Addrs: []netip.Prefix{pfx("10.30.0.1/32")}},
	},
	Ports: []fabric.Port{
		{Name: "swp1", AdminUp: true, MTU: 9216, Description: "m1", VRF: "vrf10", Addrs: []netip.Prefix{pfx("10.10.1.1/31")}},
		{Name: "swp2", AdminUp: true, AccessVNI: 20},
		{Name: "swp3", AdminUp: false, AccessVLAN: 11},
	},
}

func TestDiffDataplane(t *testing.T) {
	k := switchKernel()
	got := strs(fabric.Diff(leaf, k.State()))
	want := []string{
		"add bridge bridge vlan_filtering",
		"add vrf vrf10 table 10",
		"add vxlan vxlan10 vni 10 local 10.0.0.1 dstport 4789 nolearning",
		"add vlan vlan1000 link bridge id 1000 address 02:aa:00:00:00:01",
		"add vrf vrf20 table 20",
		"add vxlan vxlan20 vni 20 local 10.0.0.1 dstport 4789 nolearning",
		"add vlan vlan1001 link bridge id 1001 address 02:aa:00:00:00:01",
		"add vrf vrf30 table 30",
		"set bridge mtu 9000",
		"set swp1 mtu 9216",
		"set swp1 alias \"m1\"",
		"set bridge up",
		"set swp3 down",
		"set vlan1000 up",
		"set vlan1001 up",
		"set vrf10 up",
		"set vrf20 up",
		"set vrf30 up",
		"set vxlan10 up",
		"set vxlan20 up",
		"set swp1 master vrf10",
		"set swp2 master bridge",
		"set swp3 master bridge",
		"set vlan1000 master vrf10",
		"set vlan1001 master vrf20",
		"set vxlan10 master bridge",
		"set vxlan20 master bridge",
		"add bridge vlan 10-12 dev bridge self",
		"add bridge vlan 1000-1001 dev bridge self",
		"add bridge vlan 1000 dev vxlan10 pvid untagged",
		"add bridge vlan 1001 dev vxlan20 pvid untagged",
		"add bridge vlan 1001 dev swp2 pvid untagged",
		"add bridge vlan 11 dev swp3 pvid untagged",
		"add address 10.0.0.1/32 dev lo label lo:fab",
		"add address 2001:db8::1/128 dev lo",
		"add address 10.10.1.1/31 dev swp1 label swp1:fab",
		"add address 10.20.0.1/24 dev vlan1001",
		"add address 10.30.0.1/32 dev vrf30",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Diff() (-want +got):\n%s", diff)
	}
}

func TestDiffDataplaneChanges(t *testing.T) {
	// The converged leaf, then one change at a time.
	base := switchKernel()
	r := fabric.NewReconciler(base)
	if _, err := r.Apply(t.Context(), leaf); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	converged := base.State()
	mod := func(f func(d *fabric.Desired)) fabric.Desired {
		d := leaf
		d.VRFs = append([]fabric.VRF(nil), leaf.VRFs...)
		d.Ports = append([]fabric.Port(nil), leaf.Ports...)
		b := *leaf.Bridge
		d.Bridge = &b
		f(&d)
		return d
	}
	tests := []struct {
		name    string
		desired fabric.Desired
		want    []string
	}{
		{name: "converged", desired: leaf},
		{
			name: "vtep change re-creates the vxlan devices, keeping their vlans",
			desired: mod(func(d *fabric.Desired) {
				d.VTEP = netip.MustParseAddr("10.0.0.2")
			}),
			want: []string{
				"delete vxlan vxlan10",
				"delete vxlan vxlan20",
				"add vxlan vxlan10 vni 10 local 10.0.0.2 dstport 4789 nolearning",
				"add vxlan vxlan20 vni 20 local 10.0.0.2 dstport 4789 nolearning",
				"set vxlan10 up",
				"set vxlan20 up",
				"set vxlan10 master bridge",
				"set vxlan20 master bridge",
				"add bridge vlan 1000 dev vxlan10 pvid untagged",
				"add bridge vlan 1001 dev vxlan20 pvid untagged",
			},
		},
		{
			name: "router mac, port attributes, bridge mtu and vlans",
			desired: mod(func(d *fabric.Desired) {
				d.VRFs[0].L3VNI = &fabric.L3VNI{VNI: 20, RouterMAC: net.HardwareAddr{2, 0xbb, 0, 0, 0, 2}}
				d.Ports[0].MTU, d.Ports[0].Description, d.Ports[0].AdminUp = 1500, "m2", false
				d.Bridge.MTU = 1500
				d.Bridge.VLANs = []uint16{11, 12, 13}
			}),
			want: []string{
				`set bridge mtu 1500`,
				`set swp1 mtu 1500`,
				`set swp1 alias "m2"`,
				`set vlan1001 address 02:bb:00:00:00:02`,
				`set swp1 down`,
				`add bridge vlan 13 dev bridge self`,
				`delete bridge vlan 10 dev bridge self`,
			},
		},
		{
			name: "ports move: routed to access and back, new vni gets the lowest free vlan",
			desired: mod(func(d *fabric.Desired) {
				d.VRFs = append(d.VRFs, fabric.VRF{Name: "vrf40", Table: 40, L3VNI: &fabric.L3VNI{VNI: 40}})
				d.Ports[0] = fabric.Port{Name: "swp1", AdminUp: true, MTU: 9216, Description: "m1", AccessVNI: 40}
				d.Ports[1] = fabric.Port{Name: "swp2", AdminUp: true, VRF: "vrf20", Addrs: []netip.Prefix{pfx("2001:db8:1::1/64")}}
				d.Ports[2].AccessVLAN = 12
			}),
			want: []string{
				"add vrf vrf40 table 40",
				"add vxlan vxlan40 vni 40 local 10.0.0.1 dstport 4789 nolearning",
				"add vlan vlan1002 link bridge id 1002",
				"set vlan1002 up",
				"set vrf40 up",
				"set vxlan40 up",
				"set swp1 master bridge",
				"set swp2 master vrf20",
				"set vlan1002 master vrf40",
				"set vxlan40 master bridge",
				"add bridge vlan 1002 dev bridge self",
				"add bridge vlan 1002 dev vxlan40 pvid untagged",
				"add bridge vlan 1002 dev swp1 pvid untagged",
				"add bridge vlan 12 dev swp3 pvid untagged",
				"add address 2001:db8:1::1/64 dev swp2",
				"delete address 10.10.1.1/31 dev swp1",
				"delete bridge vlan 11 dev swp3",
			},
		},
		{
			name: "an svi address moves within its subnet: the old one goes first (it is the primary)",
			desired: mod(func(d *fabric.Desired) {
				d.VRFs[0].Addrs = []netip.Prefix{pfx("10.20.0.2/24"), pfx("10.21.0.1/24")}
				// The IPv6 address on lo is not in Actual.OwnedAddrs
				// (no reconciler memory here), so it stays.
				d.Loopback.Addrs = []netip.Prefix{pfx("10.0.0.1/32")}
			}),
			want: []string{
				"delete address 10.20.0.1/24 dev vlan1001",
				"add address 10.20.0.2/24 dev vlan1001",
				"add address 10.21.0.1/24 dev vlan1001",
			},
		},
		{
			name: "nothing desired: ports released but not set down, foreign state kept",
			want: []string{
				"delete address 10.0.0.1/32 dev lo",
				"delete address 10.10.1.1/31 dev swp1",
				"set swp1 nomaster",
				"set swp2 nomaster",
				"set swp3 nomaster",
				"delete vlan vlan1000",
				"delete vlan vlan1001",
				"delete vxlan vxlan10",
				"delete vxlan vxlan20",
				"delete vrf vrf10",
				"delete vrf vrf20",
				"delete vrf vrf30",
				"delete bridge bridge",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strs(fabric.Diff(tt.desired, converged))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Diff() (-want +got):\n%s", diff)
			}
			// Applying it converges: a second diff is empty.
			k := ft.NewFrom(converged)
			r := fabric.NewReconciler(k)
			if _, err := r.Apply(t.Context(), tt.desired); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if got := fabric.Diff(tt.desired, k.State()); len(got) != 0 {
				t.Errorf("second Diff = %q, want none", strs(got))
			}
		})
	}
}

// TestApplyDataplaneIdempotent: a second Apply, and a fresh reconciler (a
// restart) against the converged kernel, make no kernel call at all.
func TestApplyDataplaneIdempotent(t *testing.T) {
	k := switchKernel()
	before := k.State()
	r := fabric.NewReconciler(k)
	res, err := r.Apply(t.Context(), leaf)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if diff := cmp.Diff(strs(res.Planned), strs(res.Applied)); diff != "" {
		t.Errorf("applied differs from planned (-planned +applied):\n%s", diff)
	}
	if diff := cmp.Diff(k.State(), res.State, ft.CmpOpts, ignoreOwnedAddrs); diff != "" {
		t.Errorf("result state differs from kernel (-kernel +result):\n%s", diff)
	}
	for _, r := range []*fabric.Reconciler{r, fabric.NewReconciler(k)} {
		k.ResetCalls()
		res, err := r.Apply(t.Context(), leaf)
		if err != nil {
			t.Fatalf("second Apply: %v", err)
		}
		if calls := k.Calls(); len(calls) != 0 || len(res.Planned) != 0 {
			t.Errorf("second Apply: calls %q, planned %q; want none", calls, strs(res.Planned))
		}
	}

	// The owned state read back.
	wantOwned := fabric.Desired{
		Bridge: &fabric.Bridge{Name: "bridge", MTU: 9000},
		Ports: []fabric.Port{
			{Name: "swp2", AdminUp: true, MTU: 9000, AccessVLAN: 1001},
			{Name: "swp3", MTU: 9000, AccessVLAN: 11},
		},
		VRFs: []fabric.VRF{
			{Name: "vrf10", Table: 10, L3VNI: &fabric.L3VNI{VNI: 10, RouterMAC: rmac}, Ports: []string{"swp1"}},
			{Name: "vrf20", Table: 20, L3VNI: &fabric.L3VNI{VNI: 20, RouterMAC: rmac}, Addrs: []netip.Prefix{pfx("10.20.0.1/24")}},
			{Name: "vrf30", Table: 30, Addrs: []netip.Prefix{pfx("10.30.0.1/32")}},
		},
	}
	if diff := cmp.Diff(wantOwned, k.State().Owned(), ft.CmpOpts); diff != "" {
		t.Errorf("Owned() (-want +got):\n%s", diff)
	}

	// Freeing everything restores the kernel, except the port attributes
	// (admin state, MTU, alias) the controller set: ports are never reset.
	if _, err := r.Apply(t.Context(), fabric.Desired{}); err != nil {
		t.Fatalf("freeing Apply: %v", err)
	}
	after := k.State()
	for i, l := range after.Links {
		if b, ok := before.Link(l.Name); ok && l.IsPort() {
			after.Links[i].AdminUp, after.Links[i].OperState, after.Links[i].MTU, after.Links[i].Alias = b.AdminUp, b.OperState, b.MTU, b.Alias
		}
	}
	if diff := cmp.Diff(before, after, ft.CmpOpts, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("kernel after freeing (-before +after):\n%s", diff)
	}
	if l, _ := k.Link("swp3"); l.AdminUp {
		t.Errorf("swp3 is up after freeing; a port left alone keeps its state (down)")
	}
	if l, _ := k.Link("swp1"); !l.AdminUp || l.MTU != 9216 {
		t.Errorf("swp1 = %+v after freeing; want it left up with mtu 9216", l)
	}
}

// TestAssignVLANsStable: an L3VNI keeps the VLAN its VXLAN device has, also
// after a restart and when a lower VLAN frees up; new VNIs take the lowest
// free VLAN.
func TestAssignVLANsStable(t *testing.T) {
	k := ft.New(ft.Loopback(),
		ft.Bridge("bridge", true),
		ft.In(ft.VXLAN(30, vtep), "bridge"),
		ft.In(ft.SVI(1005, "bridge", rmac.String()), "vrf30"),
		ft.VRF("vrf30", 30, true),
		fabric.Link{Name: "vlan1000", Kind: fabric.KindDevice}, // a foreign link with an SVI's name
	)
	k.SetVLANs(
		fabric.BridgeVLAN{Link: "bridge", VID: 1005},
		fabric.BridgeVLAN{Link: "vxlan30", VID: 1005, PVID: true, Untagged: true},
	)
	d := fabric.Desired{
		VTEP:      vtep,
		VLANRange: fabric.VLANRange{Min: 1000, Max: 1010},
		Bridge:    &fabric.Bridge{VLANs: []uint16{1001}},
		VRFs: []fabric.VRF{
			{Name: "vrf10", Table: 10, L3VNI: &fabric.L3VNI{VNI: 10}},
			{Name: "vrf30", Table: 30, L3VNI: &fabric.L3VNI{VNI: 30, RouterMAC: rmac}},
			{Name: "vrf20", Table: 20, L3VNI: &fabric.L3VNI{VNI: 20}},
		},
	}
	want := map[uint32]uint16{10: 1002, 20: 1003, 30: 1005}
	if diff := cmp.Diff(want, fabric.AssignVLANs(d, k.State())); diff != "" {
		t.Errorf("AssignVLANs (-want +got):\n%s", diff)
	}
	if _, err := fabric.NewReconciler(k).Apply(t.Context(), d); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	// A restart, and VNI 10 gone: the others keep their VLANs.
	d.VRFs = d.VRFs[1:]
	if diff := cmp.Diff(map[uint32]uint16{20: 1003, 30: 1005}, fabric.AssignVLANs(d, k.State())); diff != "" {
		t.Errorf("AssignVLANs after restart (-want +got):\n%s", diff)
	}
	k.ResetCalls()
	if _, err := fabric.NewReconciler(k).Apply(t.Context(), d); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want2 := []string{
		"delete bridge vlan 1002 dev bridge self",
		"delete vlan1002",
		"delete vxlan10",
		"delete vrf10",
	}
	if diff := cmp.Diff(want2, k.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// TestAddressOwnership: the reconciler removes only addresses it added:
// everything on its own links, labelled IPv4 on foreign links, and the IPv6
// ones it remembers adding; foreign addresses survive.
func TestAddressOwnership(t *testing.T) {
	k := switchKernel()
	k.SetAddrs(
		fabric.Addr{Link: "lo", Prefix: pfx("127.0.0.1/8"), Label: "lo"},
		fabric.Addr{Link: "lo", Prefix: pfx("10.9.9.9/32"), Label: "lo"},     // foreign
		fabric.Addr{Link: "lo", Prefix: pfx("10.8.8.8/32"), Label: "lo:fab"}, // ours, from an earlier run
		fabric.Addr{Link: "lo", Prefix: pfx("2001:db8::9/128")},              // foreign (or ours before a restart)
		fabric.Addr{Link: "swp1", Prefix: pfx("fe80::1/64")},                 // kernel's
	)
	r := fabric.NewReconciler(k)
	d := fabric.Desired{Loopback: fabric.Loopback{Addrs: []netip.Prefix{pfx("2001:db8::1/128")}}}
	if _, err := r.Apply(t.Context(), d); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := []string{
		"add address 2001:db8::1/128 dev lo",
		"delete address 10.8.8.8/32 dev lo",
	}
	if diff := cmp.Diff(want, k.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	k.ResetCalls()
	if _, err := r.Apply(t.Context(), fabric.Desired{}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if diff := cmp.Diff([]string{"delete address 2001:db8::1/128 dev lo"}, k.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	var got []string
	for _, a := range k.State().Addrs {
		got = append(got, a.Link+" "+a.Prefix.String())
	}
	wantLeft := []string{"lo 10.9.9.9/32", "lo 127.0.0.1/8", "lo 2001:db8::9/128", "swp1 fe80::1/64"}
	if diff := cmp.Diff(wantLeft, got); diff != "" {
		t.Errorf("addresses left (-want +got):\n%s", diff)
	}
}

func TestApplyDataplanePartialFailure(t *testing.T) {
	tests := []struct {
		name     string
		failOn   string
		wantErrs []string
		wantSkip []string
	}{
		{
			name:     "bridge creation fails: svis, enslaving into it and its vlans are skipped; vrfs, vxlans and routed ports done",
			failOn:   "add bridge bridge vlan_filtering alias fabric-agent",
			wantErrs: []string{"add bridge bridge vlan_filtering: adding bridge bridge: injected"},
			wantSkip: []string{
				"add vlan vlan1000 link bridge id 1000 address 02:aa:00:00:00:01",
				"add vlan vlan1001 link bridge id 1001 address 02:aa:00:00:00:01",
				"set bridge mtu 9000",
				"set bridge up",
				"set vlan1000 up",
				"set vlan1001 up",
				"set swp2 master bridge",
				"set swp3 master bridge",
				"set vlan1000 master vrf10",
				"set vlan1001 master vrf20",
				"set vxlan10 master bridge",
				"set vxlan20 master bridge",
				"add bridge vlan 10-12 dev bridge self",
				"add bridge vlan 1000-1001 dev bridge self",
				"add bridge vlan 1000 dev vxlan10 pvid untagged",
				"add bridge vlan 1001 dev vxlan20 pvid untagged",
				"add bridge vlan 1001 dev swp2 pvid untagged",
				"add bridge vlan 11 dev swp3 pvid untagged",
				"add address 10.20.0.1/24 dev vlan1001",
			},
		},
		{
			name:     "an address fails: only that step",
			failOn:   "add address 10.0.0.1/32 dev lo label lo:fab",
			wantErrs: []string{"add address 10.0.0.1/32 dev lo label lo:fab: adding address 10.0.0.1/32 to lo: injected"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := switchKernel()
			k.FailOn(tt.failOn, errors.New("injected"))
			r := fabric.NewReconciler(k)
			res, err := r.Apply(t.Context(), leaf)
			if err == nil {
				t.Fatal("Apply succeeded, want an error")
			}
			if diff := cmp.Diff(tt.wantErrs, errSteps(res)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSkip, strs(res.Skipped)); diff != "" {
				t.Errorf("skipped (-want +got):\n%s", diff)
			}
			// The state returned is the kernel's, never more.
			if diff := cmp.Diff(k.State(), res.State, ft.CmpOpts, ignoreOwnedAddrs); diff != "" {
				t.Errorf("Result.State (-kernel +result):\n%s", diff)
			}
			// Without the fault, a second Apply finishes the job.
			k.FailOn(tt.failOn, nil)
			if _, err := r.Apply(t.Context(), leaf); err != nil {
				t.Fatalf("second Apply: %v", err)
			}
			if got := fabric.Diff(leaf, k.State()); len(got) != 0 {
				t.Errorf("Diff after recovery = %q, want none", strs(got))
			}
		})
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestApplyDeleteBatchPartialFailure: links are deleted in one batch; a
// link the kernel refuses to delete is reported on its own step and the
// rest of the batch is applied.
func TestApplyDeleteBatchPartialFailure(t *testing.T) {
	k := switchKernel()
	r := fabric.NewReconciler(k)
	if _, err := r.Apply(t.Context(), leaf); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	k.FailOn("delete vrf10", errors.New("injected"))
	res, err := r.Apply(t.Context(), fabric.Desired{})
	if err == nil {
		t.Fatal("Apply succeeded, want an error")
	}
	if diff := cmp.Diff([]string{"delete vrf vrf10: deleting vrf vrf10: injected"}, errSteps(res)); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	var left []string
	for _, l := range res.State.Links {
		if l.Owned() {
			left = append(left, l.Name)
		}
	}
	if diff := cmp.Diff([]string{"vrf10"}, left); diff != "" {
		t.Errorf("marked links left (-want +got):\n%s", diff)
	}
}
