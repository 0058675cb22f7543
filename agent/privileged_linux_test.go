//go:build linux

package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/metalfabric/fabric/fabric"
	"github.com/metalfabric/fabric/fabric/fabrictest"
)

func TestPrivilegedAgentVRF(t *testing.T) {
	_, h := fabrictest.NewNetns(t)
	fabrictest.RequireVRF(t, h)
	for _, name := range []string{"swp1", "swp2"} {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "peer-" + name}); err != nil {
			t.Fatalf("adding veth %s: %v", name, err)
		}
	}

	k := fabric.NewNetlink(h)
	ctl := newFakeController(snapshot(1, vrf(10010, "swp1")))
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	runAgent(t, addr, k)

	if v, errs := statusSummary(ctl.waitStatus(t)); v != 1 || errs != nil {
		t.Fatalf("status: version %d, errors %q; want 1, none", v, errs)
	}
	vl, err := h.LinkByName("vrf10010")
	if err != nil {
		t.Fatalf("vrf10010: %v", err)
	}
	if v, ok := vl.(*netlink.Vrf); !ok || v.Table != 10010 || v.Attrs().Alias != fabric.Marker {
		t.Errorf("vrf10010 = %T %+v, want a marked vrf with table 10010", vl, vl.Attrs())
	}
	if l, _ := h.LinkByName("swp1"); l == nil || l.Attrs().MasterIndex != vl.Attrs().Index {
		t.Errorf("swp1 is not enslaved to vrf10010")
	}

	ctl.push(snapshot(2))
	if v, errs := statusSummary(ctl.waitStatus(t)); v != 2 || errs != nil {
		t.Fatalf("status: version %d, errors %q; want 2, none", v, errs)
	}
	a, err := fabric.NewReconciler(k).Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fabric.Desired{}, a.Owned()); diff != "" {
		t.Errorf("owned state after freeing (-want +got):\n%s", diff)
	}
	if l, _ := a.Link("swp1"); l.Master != "" {
		t.Errorf("swp1 master = %q after freeing, want none", l.Master)
	}
}
