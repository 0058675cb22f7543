//go:build linux

package agent

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/metalfabric/fabric/fabric/fabrictest"
)

// leakRoutes lists the namespace's routes of table 100 and 101 as
// "table prefix dev proto".
func leakRoutes(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		if r.Table != 100 && r.Table != 101 {
			continue
		}
		dev := "?"
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
			dev = l.Attrs().Name
		}
		fam := netlink.FAMILY_V4
		if r.Dst != nil && r.Dst.IP.To4() == nil {
			fam = netlink.FAMILY_V6
		}
		out = append(out, leakKey(uint32(r.Table), prefixOf(r.Dst, fam))+" "+dev+" "+r.Protocol.String())
	}
	slices.Sort(out)
	return out
}

// The kernel leaker on the host kernel (no VRFs needed: a leak route is a
// device route, here via veths): it installs, moves and removes only routes
// of LeakProtocol and leaves other routes in the same tables alone.
func TestPrivilegedKernelLeaker(t *testing.T) {
	_, h := fabrictest.NewNetns(t)
	for _, name := range []string{"vA", "vB"} {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "p" + name}); err != nil {
			t.Fatalf("adding veth %s: %v", name, err)
		}
		l, _ := h.LinkByName(name)
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	vA, _ := h.LinkByName("vA")
	_, foreign, _ := net.ParseCIDR("192.0.2.0/24")
	if err := h.RouteAdd(&netlink.Route{LinkIndex: vA.Attrs().Index, Dst: foreign, Table: 100, Protocol: unix.RTPROT_STATIC, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	l := newKernelLeakerAt(h)
	pf := netip.MustParsePrefix
	if err := l.Sync(t.Context(), []LeakRoute{
		{Table: 100, Prefix: pf("0.0.0.0/0"), Dev: "vA"},
		{Table: 101, Prefix: pf("10.0.1.0/24"), Dev: "vB"},
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"100/0.0.0.0/0 vA 201", "100/192.0.2.0/24 vA static", "101/10.0.1.0/24 vB 201"}
	if got := leakRoutes(t, h); !slices.Equal(got, want) {
		t.Errorf("after the first sync: %q, want %q", got, want)
	}
	// The default moves to vB, the tenant prefix goes; an unknown device
	// is an error, the rest is applied.
	err := l.Sync(t.Context(), []LeakRoute{
		{Table: 100, Prefix: pf("0.0.0.0/0"), Dev: "vB"},
		{Table: 101, Prefix: pf("10.0.2.0/24"), Dev: "nope"},
	})
	if err == nil {
		t.Error("a leak into a missing device: no error")
	}
	want = []string{"100/0.0.0.0/0 vB 201", "100/192.0.2.0/24 vA static"}
	if got := leakRoutes(t, h); !slices.Equal(got, want) {
		t.Errorf("after the second sync: %q, want %q", got, want)
	}
	if err := l.Sync(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	want = []string{"100/192.0.2.0/24 vA static"}
	if got := leakRoutes(t, h); !slices.Equal(got, want) {
		t.Errorf("after syncing nothing: %q, want only the foreign route %q", got, want)
	}
}
