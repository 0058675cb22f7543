//go:build linux

package fabric_test

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/metalfabric/fabric/fabric"
	ft "github.com/metalfabric/fabric/fabric/fabrictest"
)

const vmHint = "as root without FABRIC_NO_VM, TestMain re-runs the package there (integration/vm/vmtest)"

// newTestNetns moves the calling goroutine's locked thread into a fresh
// network namespace for the rest of the test and returns a handle for it.
func newTestNetns(t *testing.T) *netlink.Handle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create a network namespace")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("getting the current netns: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatalf("creating a netns: %v", err)
	}
	t.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with the goroutine.
			t.Errorf("restoring the netns: %v", err)
		} else {
			runtime.UnlockOSThread()
		}
		orig.Close()
		ns.Close()
	})
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in the new netns: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

func mustLink(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("looking up %s: %v", name, err)
	}
	return l
}

func addVeth(t *testing.T, h *netlink.Handle, name, peer string) netlink.Link {
	t.Helper()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}); err != nil {
		t.Fatalf("adding veth %s: %v", name, err)
	}
	for _, n := range []string{name, peer} {
		if err := h.LinkSetUp(mustLink(t, h, n)); err != nil {
			t.Fatalf("setting %s up: %v", n, err)
		}
	}
	return mustLink(t, h, name)
}

// ipLink returns `ip -d link show dev NAME`, run in the test's netns (the
// locked thread's namespace is inherited by the child).
func ipLink(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("ip", "-d", "link", "show", "dev", name).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -d link show dev %s: %v\n%s", name, err, out)
	}
	return string(out)
}

func TestPrivilegedVRF(t *testing.T) {
	h := newTestNetns(t)
	ft.RequireVRF(t, h)
	ctx := t.Context()

	// Ports handed out by the controller, and foreign state the agent must
	// leave alone: an unmarked VRF with a port of its own, an unrelated veth.
	addVeth(t, h, "swp1", "peer1")
	addVeth(t, h, "swp2", "peer2")
	mgmt := &netlink.Vrf{LinkAttrs: netlink.LinkAttrs{Name: "mgmt"}, Table: 1000}
	if err := h.LinkAdd(mgmt); err != nil {
		t.Fatalf("adding foreign vrf: %v", err)
	}
	if err := h.LinkSetUp(mustLink(t, h, "mgmt")); err != nil {
		t.Fatalf("setting mgmt up: %v", err)
	}
	eth0 := addVeth(t, h, "eth0", "peer0")
	if err := h.LinkSetMaster(eth0, mustLink(t, h, "mgmt")); err != nil {
		t.Fatalf("enslaving eth0 to mgmt: %v", err)
	}
	addVeth(t, h, "other0", "other1")

	k := fabric.NewNetlink(h)
	r := fabric.NewReconciler(k)
	foreign := func() []fabric.Link {
		a, err := r.Read(ctx)
		if err != nil {
			t.Fatalf("reading links: %v", err)
		}
		var out []fabric.Link
		for _, n := range []string{"mgmt", "eth0", "other0", "other1", "peer0"} {
			l, ok := a.Link(n)
			if !ok {
				t.Fatalf("foreign link %s is gone", n)
			}
			out = append(out, l)
		}
		return out
	}
	before := foreign()

	// A desired VRF named like the foreign one is rejected, nothing changes.
	var verr *fabric.ValidationError
	if _, err := r.Apply(ctx, fabric.Desired{VRFs: []fabric.VRF{{Name: "mgmt", Table: 1000, Ports: []string{"swp1"}}}}); !errors.As(err, &verr) {
		t.Fatalf("Apply(clashing vrf) error = %v, want a *ValidationError", err)
	}
	if l := mustLink(t, h, "swp1"); l.Attrs().MasterIndex != 0 {
		t.Fatalf("swp1 was enslaved by a rejected config")
	}

	desired := fabric.Desired{VRFs: []fabric.VRF{{Name: "vrf10010", Table: 10010, Ports: []string{"swp1"}}}}
	res, err := r.Apply(ctx, desired)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := []string{"add vrf vrf10010 table 10010", "set vrf10010 up", "set swp1 master vrf10010"}
	if diff := cmp.Diff(want, strs(res.Applied), ft.CmpOpts); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(desired, res.State.Owned(), ft.CmpOpts); diff != "" {
		t.Errorf("reached state (-want +got):\n%s", diff)
	}

	// Verify with netlink ...
	vl := mustLink(t, h, "vrf10010")
	vrf, ok := vl.(*netlink.Vrf)
	if !ok {
		t.Fatalf("vrf10010 is a %s, want a vrf", vl.Type())
	}
	if vrf.Table != 10010 || vrf.Attrs().Alias != fabric.Marker || vrf.Attrs().Flags&unix.IFF_UP == 0 {
		t.Errorf("vrf10010: table %d, alias %q, flags %v; want table 10010, alias %q, up", vrf.Table, vrf.Attrs().Alias, vrf.Attrs().Flags, fabric.Marker)
	}
	if got := mustLink(t, h, "swp1").Attrs().MasterIndex; got != vrf.Attrs().Index {
		t.Errorf("swp1 master index = %d, want %d (vrf10010)", got, vrf.Attrs().Index)
	}
	// ... and with iproute2.
	out := ipLink(t, "vrf10010")
	t.Logf("ip -d link show dev vrf10010:\n%s", out)
	for _, s := range []string{"vrf table 10010", "alias " + fabric.Marker} {
		if !strings.Contains(out, s) {
			t.Errorf("ip -d link show dev vrf10010 lacks %q", s)
		}
	}
	if out := ipLink(t, "swp1"); !strings.Contains(out, "master vrf10010") {
		t.Errorf("ip -d link show dev swp1 lacks \"master vrf10010\":\n%s", out)
	}

	// Re-applying changes nothing; planning a new port changes nothing either.
	res, err = r.Apply(ctx, desired)
	if err != nil || len(res.Planned) != 0 {
		t.Fatalf("second Apply: planned %q, err %v; want no changes", strs(res.Planned), err)
	}
	more := fabric.Desired{VRFs: []fabric.VRF{{Name: "vrf10010", Table: 10010, Ports: []string{"swp1", "swp2"}}}}
	plan, err := r.Plan(ctx, more)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	if diff := cmp.Diff([]string{"set swp2 master vrf10010"}, strs(plan), ft.CmpOpts); diff != "" {
		t.Errorf("Plan (-want +got):\n%s", diff)
	}
	if got := mustLink(t, h, "swp2").Attrs().MasterIndex; got != 0 {
		t.Errorf("Plan enslaved swp2 (master index %d)", got)
	}

	// Free: the port is released, the VRF deleted.
	res, err = r.Apply(ctx, fabric.Desired{})
	if err != nil {
		t.Fatalf("freeing Apply: %v", err)
	}
	want = []string{"set swp1 nomaster", "delete vrf vrf10010"}
	if diff := cmp.Diff(want, strs(res.Applied), ft.CmpOpts); diff != "" {
		t.Errorf("freeing applied (-want +got):\n%s", diff)
	}
	if _, err := h.LinkByName("vrf10010"); err == nil {
		t.Error("vrf10010 still exists after freeing")
	}
	if got := mustLink(t, h, "swp1").Attrs().MasterIndex; got != 0 {
		t.Errorf("swp1 master index = %d after freeing, want 0", got)
	}

	// The foreign VRF, its port and the unrelated veth are untouched.
	if diff := cmp.Diff(before, foreign(), ignoreOperState, ft.CmpOpts); diff != "" {
		t.Errorf("foreign links changed (-before +after):\n%s", diff)
	}
	if out := ipLink(t, "eth0"); !strings.Contains(out, "master mgmt") {
		t.Errorf("eth0 left the foreign vrf:\n%s", out)
	}
}

// TestPrivilegedNetlinkKernel checks the Netlink Kernel's reads and the
// operations that need no VRF support (a bridge stands in as the master), so
// it runs on the host kernel too.
func TestPrivilegedNetlinkKernel(t *testing.T) {
	h := newTestNetns(t)
	ctx := t.Context()
	k := fabric.NewNetlink(h)

	swp1 := addVeth(t, h, "swp1", "peer1")
	if err := h.LinkSetMTU(swp1, 9000); err != nil {
		t.Fatalf("setting mtu: %v", err)
	}
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}); err != nil {
		t.Fatalf("adding bridge: %v", err)
	}

	if err := k.SetUp(ctx, "br0"); err != nil {
		t.Fatalf("SetUp: %v", err)
	}
	if err := k.SetMaster(ctx, "swp1", "br0"); err != nil {
		t.Fatalf("SetMaster: %v", err)
	}
	a, err := k.Read(ctx)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	got, _ := a.Link("swp1")
	want := fabric.Link{
		Name: "swp1", Index: swp1.Attrs().Index, Kind: fabric.KindVeth, Master: "br0",
		AdminUp: true, MAC: swp1.Attrs().HardwareAddr.String(), MTU: 9000,
	}
	if diff := cmp.Diff(want, got, ignoreOperState, ft.CmpOpts); diff != "" {
		t.Errorf("swp1 (-want +got):\n%s", diff)
	}
	if br, _ := a.Link("br0"); br.Kind != fabric.KindBridge || !br.AdminUp {
		t.Errorf("br0 = %+v, want an up bridge", br)
	}
	if lo, _ := a.Link("lo"); !lo.Loopback || lo.IsPort() {
		t.Errorf("lo = %+v, want a loopback that is no port", lo)
	}
	var ports []string
	for _, p := range a.Ports() {
		ports = append(ports, p.Name)
	}
	if diff := cmp.Diff([]string{"peer1", "swp1"}, ports, ft.CmpOpts); diff != "" {
		t.Errorf("Ports (-want +got):\n%s", diff)
	}

	if err := k.SetNoMaster(ctx, "swp1"); err != nil {
		t.Fatalf("SetNoMaster: %v", err)
	}
	if got := mustLink(t, h, "swp1").Attrs().MasterIndex; got != 0 {
		t.Errorf("swp1 master index = %d after SetNoMaster", got)
	}
	if err := k.DeleteLink(ctx, "br0"); err != nil {
		t.Fatalf("DeleteLink: %v", err)
	}
	if _, err := h.LinkByName("br0"); err == nil {
		t.Error("br0 still exists")
	}
	if err := k.SetUp(ctx, "nope"); err == nil || !strings.Contains(err.Error(), "looking up nope") {
		t.Errorf("SetUp(nope) = %v, want a lookup error", err)
	}
}

var ignoreOperState = cmpopts.IgnoreFields(fabric.Link{}, "OperState")
