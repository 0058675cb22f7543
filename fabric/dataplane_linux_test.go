//go:build linux

package fabric_test

import (
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/metalfabric/fabric/fabric"
	ft "github.com/metalfabric/fabric/fabric/fabrictest"
)

// requireDataplane skips the test when the kernel lacks VRFs, 802.1Q
// devices or bridge VLAN filtering.
func requireDataplane(t *testing.T, h *netlink.Handle) {
	t.Helper()
	ft.RequireVRF(t, h)
	_ = exec.Command("modprobe", "8021q").Run()
	on := true
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "brprobe"}, VlanFiltering: &on}
	if err := h.LinkAdd(br); err != nil {
		t.Skipf("this kernel cannot create a vlan-filtering bridge (%v); %s", err, vmHint)
	}
	defer h.LinkDel(br)
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: "vlanprobe", ParentIndex: mustLink(t, h, "brprobe").Attrs().Index}, VlanId: 5}
	if err := h.LinkAdd(v); err != nil {
		t.Skipf("this kernel cannot create 802.1Q devices (%v); %s", err, vmHint)
	}
	if _, err := bridgeVLANShow(t); err != nil {
		t.Skipf("bridge vlan show: %v", err)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func bridgeVLANShow(t *testing.T) (string, error) {
	out, err := exec.Command("bridge", "vlan", "show").CombinedOutput()
	return string(out), err
}

// contains checks that out holds every one of subs.
func contains(t *testing.T, what, out string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(out, s) {
			t.Errorf("%s lacks %q:\n%s", what, s, out)
		}
	}
}

type linkSnap struct {
	Index int
	Flags net.Flags
	Oper  string
}

func snapshot(t *testing.T, h *netlink.Handle, names ...string) map[string]linkSnap {
	t.Helper()
	out := map[string]linkSnap{}
	for _, n := range names {
		a := mustLink(t, h, n).Attrs()
		out[n] = linkSnap{a.Index, a.Flags, a.OperState.String()}
	}
	return out
}

// TestPrivilegedDataplane creates, changes and removes every object type for
// real and reads the kernel back with netlink, ip and bridge; foreign links
// and addresses survive; a restart against the converged kernel changes
// nothing; a machine port keeps its carrier across unrelated changes.
func TestPrivilegedDataplane(t *testing.T) {
	h := newTestNetns(t)
	requireDataplane(t, h)
	ctx := t.Context()

	for i, p := range []string{"swp1", "swp2", "swp3", "swp4"} {
		addVeth(t, h, p, "peer"+string(rune('1'+i)))
	}
	run(t, "ip", "link", "set", "lo", "up")
	// Foreign state: a bridge with a port, an address on lo, one on a veth.
	addVeth(t, h, "other0", "other1")
	run(t, "ip", "link", "add", "br0", "type", "bridge")
	run(t, "ip", "link", "set", "other0", "master", "br0")
	run(t, "ip", "addr", "add", "10.9.9.9/32", "dev", "lo")
	run(t, "ip", "addr", "add", "2001:db8::99/128", "dev", "lo")
	run(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "other1")

	d := leaf
	d.Ports = append(append([]fabric.Port(nil), leaf.Ports...), fabric.Port{Name: "swp4", AdminUp: true, VRF: "vrf30"})
	k, err := fabric.OpenKernelAt(netns.None()) // the test's netns; with the group delete
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	r := fabric.NewReconciler(k)

	// Rejected configs touch nothing.
	bad := d
	bad.Ports = append(append([]fabric.Port(nil), d.Ports...), fabric.Port{Name: "swp9"})
	var verr *fabric.ValidationError
	if _, err := r.Apply(ctx, bad); !errors.As(err, &verr) {
		t.Fatalf("Apply(unknown port) = %v, want a *ValidationError", err)
	}
	if _, err := h.LinkByName("bridge"); err == nil {
		t.Fatal("a rejected config created the bridge")
	}

	res, err := r.Apply(ctx, d)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	t.Logf("applied %d changes", len(res.Applied))
	if got := fabric.Diff(d, res.State); len(got) != 0 {
		t.Errorf("Diff against the reached state = %q, want none", strs(got))
	}

	// Netlink read-back.
	br, ok := mustLink(t, h, "bridge").(*netlink.Bridge)
	if !ok || br.VlanFiltering == nil || !*br.VlanFiltering || br.Attrs().Alias != fabric.Marker || br.Attrs().MTU != 9000 {
		t.Errorf("bridge = %+v, want a marked vlan-filtering bridge with mtu 9000", mustLink(t, h, "bridge"))
	}
	vx, ok := mustLink(t, h, "vxlan10").(*netlink.Vxlan)
	if !ok || vx.VxlanId != 10 || !vx.SrcAddr.Equal(net.ParseIP("10.0.0.1")) || vx.Port != 4789 || vx.Learning {
		t.Errorf("vxlan10 = %+v, want vni 10 local 10.0.0.1 dstport 4789 nolearning", mustLink(t, h, "vxlan10"))
	}
	svi, ok := mustLink(t, h, "vlan1001").(*netlink.Vlan)
	if !ok || svi.VlanId != 1001 || svi.Attrs().HardwareAddr.String() != rmac.String() || svi.Attrs().MasterIndex != mustLink(t, h, "vrf20").Attrs().Index {
		t.Errorf("vlan1001 = %+v, want vlan 1001 with the router mac in vrf20", mustLink(t, h, "vlan1001"))
	}
	// iproute2 read-back.
	contains(t, "ip -d link show dev bridge", ipLink(t, "bridge"), "vlan_filtering 1", "alias "+fabric.Marker, "mtu 9000", ",UP")
	contains(t, "ip -d link show dev vxlan10", ipLink(t, "vxlan10"), "vxlan id 10 local 10.0.0.1", "dstport 4789", "nolearning", "master bridge", "alias "+fabric.Marker)
	contains(t, "ip -d link show dev vlan1000", ipLink(t, "vlan1000"), "vlan protocol 802.1Q id 1000", "master vrf10", "link/ether "+rmac.String(), "alias "+fabric.Marker)
	contains(t, "ip -d link show dev vrf30", ipLink(t, "vrf30"), "vrf table 30", "alias "+fabric.Marker)
	contains(t, "ip -d link show dev swp1", ipLink(t, "swp1"), "master vrf10", "mtu 9216", "alias m1")
	contains(t, "ip -d link show dev swp2", ipLink(t, "swp2"), "master bridge")
	swp3 := ipLink(t, "swp3")
	contains(t, "ip -d link show dev swp3", swp3, "master bridge")
	if strings.Contains(strings.SplitN(swp3, "\n", 2)[0], ",UP") {
		t.Errorf("swp3 is up, want it set down:\n%s", swp3)
	}
	contains(t, "bridge vlan show dev vxlan10", run(t, "bridge", "vlan", "show", "dev", "vxlan10"), "1000 PVID Egress Untagged")
	contains(t, "bridge vlan show dev swp2", run(t, "bridge", "vlan", "show", "dev", "swp2"), "1001 PVID Egress Untagged")
	contains(t, "bridge vlan show dev swp3", run(t, "bridge", "vlan", "show", "dev", "swp3"), "11 PVID Egress Untagged")
	brv := run(t, "bridge", "vlan", "show", "dev", "bridge")
	for _, v := range []string{"10", "11", "12", "1000", "1001"} {
		if !strings.Contains(brv, " "+v+"\n") && !strings.Contains(brv, "\t"+v+"\n") {
			t.Errorf("bridge vlan show dev bridge lacks vlan %s:\n%s", v, brv)
		}
	}
	contains(t, "ip addr show dev lo", run(t, "ip", "addr", "show", "dev", "lo"), "10.0.0.1/32 scope global lo:fab", "2001:db8::1/128", "10.9.9.9/32")
	contains(t, "ip addr show dev swp1", run(t, "ip", "addr", "show", "dev", "swp1"), "10.10.1.1/31 scope global swp1:fab")
	contains(t, "ip addr show dev vlan1001", run(t, "ip", "addr", "show", "dev", "vlan1001"), "10.20.0.1/24")
	contains(t, "ip addr show dev vrf30", run(t, "ip", "addr", "show", "dev", "vrf30"), "10.30.0.1/32")

	// Second apply and a restart (a fresh handle and reconciler): nothing
	// planned, no link re-created or flapped.
	names := []string{"bridge", "vrf10", "vrf20", "vrf30", "vxlan10", "vxlan20", "vlan1000", "vlan1001", "swp1", "swp2", "swp3", "swp4"}
	before := snapshot(t, h, names...)
	for i, rr := range []*fabric.Reconciler{r, fabric.NewReconciler(fabric.NewNetlink(h))} {
		res, err := rr.Apply(ctx, d)
		if err != nil || len(res.Planned) != 0 {
			t.Errorf("apply #%d of the same state: planned %q, err %v; want nothing", i+2, strs(res.Planned), err)
		}
	}
	if diff := cmp.Diff(before, snapshot(t, h, names...)); diff != "" {
		t.Errorf("links changed by a no-op apply (-before +after):\n%s", diff)
	}

	// Watch swp4, a routed port that stays in vrf30 from now on (binding it
	// to the VRF cycled it: the kernel does that).
	updates := make(chan netlink.LinkUpdate, 1024)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribe(updates, done); err != nil {
		t.Fatalf("subscribing to link updates: %v", err)
	}
	var mu sync.Mutex
	var swp4Events []string
	go func() {
		for u := range updates {
			if u.Attrs().Name == "swp4" {
				mu.Lock()
				swp4Events = append(swp4Events, u.Attrs().OperState.String()+" "+u.Attrs().Flags.String())
				mu.Unlock()
			}
		}
	}()

	// Changes: VTEP (vxlan re-created), router mac, port attributes, port
	// moves, bridge VLANs, a new L3VNI.
	d2 := d
	d2.VTEP = netip.MustParseAddr("10.0.0.2")
	d2.Bridge = &fabric.Bridge{MTU: 9000, VLANs: []uint16{11, 12, 13}}
	d2.VRFs = []fabric.VRF{
		{Name: "vrf20", Table: 20, L3VNI: &fabric.L3VNI{VNI: 20, RouterMAC: net.HardwareAddr{2, 0xbb, 0, 0, 0, 2}}, Addrs: []netip.Prefix{pfx("10.20.0.2/24")}},
		{Name: "vrf10", Table: 10, L3VNI: &fabric.L3VNI{VNI: 10, RouterMAC: rmac}},
		{Name: "vrf30", Table: 30, Addrs: []netip.Prefix{pfx("10.30.0.1/32")}},
		{Name: "vrf40", Table: 40, L3VNI: &fabric.L3VNI{VNI: 40, RouterMAC: rmac}},
	}
	d2.Ports = []fabric.Port{
		{Name: "swp1", AdminUp: true, MTU: 1500, Description: "m1b", AccessVNI: 40},
		{Name: "swp2", AdminUp: true, VRF: "vrf20", Addrs: []netip.Prefix{pfx("2001:db8:2::1/64")}},
		{Name: "swp3", AdminUp: true, AccessVLAN: 12},
		{Name: "swp4", AdminUp: true, VRF: "vrf30"},
	}
	res, err = r.Apply(ctx, d2)
	if err != nil {
		t.Fatalf("Apply(changed): %v", err)
	}
	t.Logf("changes applied:\n%s", strings.Join(strs(res.Applied), "\n"))
	contains(t, "ip -d link show dev vxlan10", ipLink(t, "vxlan10"), "local 10.0.0.2", "master bridge")
	contains(t, "ip -d link show dev vlan1001", ipLink(t, "vlan1001"), "link/ether 02:bb:00:00:00:02", "master vrf20")
	contains(t, "ip -d link show dev vlan1002", ipLink(t, "vlan1002"), "vlan protocol 802.1Q id 1002", "master vrf40")
	contains(t, "ip -d link show dev swp1", ipLink(t, "swp1"), "master bridge", "mtu 1500", "alias m1b")
	contains(t, "ip -d link show dev swp2", ipLink(t, "swp2"), "master vrf20")
	contains(t, "bridge vlan show dev vxlan10", run(t, "bridge", "vlan", "show", "dev", "vxlan10"), "1000 PVID Egress Untagged")
	contains(t, "bridge vlan show dev swp1", run(t, "bridge", "vlan", "show", "dev", "swp1"), "1002 PVID Egress Untagged")
	contains(t, "bridge vlan show dev swp3", run(t, "bridge", "vlan", "show", "dev", "swp3"), "12 PVID Egress Untagged")
	if out := run(t, "bridge", "vlan", "show", "dev", "bridge"); strings.Contains(out, " 10\n") {
		t.Errorf("vlan 10 is still on the bridge:\n%s", out)
	}
	if out := run(t, "ip", "addr", "show", "dev", "swp1"); strings.Contains(out, "10.10.1.1") {
		t.Errorf("swp1 kept its routed address after becoming an access port:\n%s", out)
	}
	contains(t, "ip addr show dev vlan1001", run(t, "ip", "addr", "show", "dev", "vlan1001"), "10.20.0.2/24")
	if res, err := fabric.NewReconciler(fabric.NewNetlink(h)).Apply(ctx, d2); err != nil || len(res.Planned) != 0 {
		t.Errorf("restart after the change: planned %q, err %v; want nothing", strs(res.Planned), err)
	}

	// swp4 kept its carrier and ifindex through all of this.
	if got := snapshot(t, h, "swp4")["swp4"]; got != before["swp4"] {
		t.Errorf("swp4 = %+v, was %+v", got, before["swp4"])
	}
	mu.Lock()
	for _, e := range swp4Events {
		if !strings.HasPrefix(e, "up ") {
			t.Errorf("swp4 lost its carrier: link update %q", e)
		}
	}
	mu.Unlock()

	// Free everything.
	res, err = r.Apply(ctx, fabric.Desired{})
	if err != nil {
		t.Fatalf("freeing Apply: %v", err)
	}
	for _, n := range []string{"bridge", "vrf10", "vrf20", "vrf30", "vrf40", "vxlan10", "vxlan20", "vxlan40", "vlan1000", "vlan1001", "vlan1002"} {
		if _, err := h.LinkByName(n); err == nil {
			t.Errorf("%s still exists after freeing", n)
		}
	}
	for _, p := range []string{"swp1", "swp2", "swp4"} {
		l := mustLink(t, h, p)
		if l.Attrs().MasterIndex != 0 || l.Attrs().Flags&unix.IFF_UP == 0 {
			t.Errorf("%s after freeing: master %d, flags %v; want released and still up", p, l.Attrs().MasterIndex, l.Attrs().Flags)
		}
	}
	lo := run(t, "ip", "addr", "show", "dev", "lo")
	contains(t, "ip addr show dev lo", lo, "10.9.9.9/32", "2001:db8::99/128", "127.0.0.1/8")
	for _, gone := range []string{"10.0.0.1/32", "2001:db8::1/128"} {
		if strings.Contains(lo, gone) {
			t.Errorf("lo still has %s after freeing:\n%s", gone, lo)
		}
	}
	if out := run(t, "ip", "addr", "show", "dev", "swp2"); strings.Contains(out, "2001:db8:2::1") {
		t.Errorf("swp2 still has the agent's address:\n%s", out)
	}
	contains(t, "ip addr show dev other1", run(t, "ip", "addr", "show", "dev", "other1"), "192.0.2.1/24")
	contains(t, "ip -d link show dev other0", ipLink(t, "other0"), "master br0")
	if res, err := r.Apply(ctx, fabric.Desired{}); err != nil || len(res.Planned) != 0 {
		t.Errorf("second freeing apply: planned %q, err %v", strs(res.Planned), err)
	}
	_ = ft.CmpOpts
}
