//go:build linux

package agent

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/metalfabric/fabric/bgp/fib"
	"github.com/metalfabric/fabric/fabric"
	"github.com/metalfabric/fabric/fabric/fabrictest"
	"github.com/metalfabric/fabric/nft"
)

// TestPrivilegedCleanup runs Cleanup in a fresh network namespace holding
// what the agent creates (a route of protocol 200, the inet fabric table, a
// marked bridge with a port, a labelled address on lo) next to foreign
// things of each kind, and checks that only ours is gone.
func TestPrivilegedCleanup(t *testing.T) {
	ns, h := fabrictest.NewNetns(t)
	ctx := t.Context()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	up := func(name string) {
		t.Helper()
		l, err := h.LinkByName(name)
		must("looking up "+name, err)
		must("setting "+name+" up", h.LinkSetUp(l))
	}
	up("lo")
	for _, v := range [][2]string{{"eth0", "peer0"}, {"swp1", "peer1"}, {"eth5", "peer5"}} {
		must("adding veth "+v[0], h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: v[0]}, PeerName: v[1]}))
		up(v[0])
		up(v[1])
	}
	eth0, _ := h.LinkByName("eth0")
	lo, _ := h.LinkByName("lo")

	// Foreign: an address on eth0 and on lo, a static route, a bridge
	// with a port, an nftables table.
	must("foreign address", h.AddrAdd(eth0, &netlink.Addr{IPNet: cidrNet("192.0.2.10/24")}))
	must("foreign lo address", h.AddrAdd(lo, &netlink.Addr{IPNet: cidrNet("10.9.9.9/32")}))
	foreignRoute := &netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: cidrNet("198.51.100.0/24"), Gw: net.ParseIP("192.0.2.1"), Protocol: unix.RTPROT_STATIC}
	must("foreign route", h.RouteAdd(foreignRoute))
	// The same prefix as ours, another protocol and metric: must stay.
	must("foreign twin route", h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: cidrNet("203.0.113.0/24"), Gw: net.ParseIP("192.0.2.1"), Protocol: unix.RTPROT_STATIC, Priority: 500}))
	must("foreign bridge", h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br-foreign"}}))
	brf, _ := h.LinkByName("br-foreign")
	eth5, _ := h.LinkByName("eth5")
	must("enslaving eth5", h.LinkSetMaster(eth5, brf))

	nc, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	must("nftables", err)
	nc.AddTable(&nftables.Table{Name: nft.DefaultTable, Family: nftables.TableFamilyINet})
	nc.AddTable(&nftables.Table{Name: "foreign", Family: nftables.TableFamilyINet})
	nc.AddTable(&nftables.Table{Name: nft.DefaultTable, Family: nftables.TableFamilyIPv4}) // same name, other family
	must("creating nftables tables", nc.Flush())

	// Ours: the reconciler's loopback address and bridge. This kernel may
	// lack bridge VLAN filtering, so the bridge falls back to a plain one
	// marked the way the reconciler marks its links.
	k := fabric.NewNetlink(h)
	rec := fabric.NewReconciler(k, fabric.WithLogger(slog.New(slog.DiscardHandler)))
	desired := fabric.Desired{
		Loopback: fabric.Loopback{Addrs: []netip.Prefix{netip.MustParsePrefix("10.255.0.1/32")}},
		Bridge:   &fabric.Bridge{},
	}
	if _, err := rec.Apply(ctx, desired); err != nil {
		t.Logf("the reconciler cannot build the VLAN-aware bridge here (%v); marking a plain bridge by hand", err)
		_, err := rec.Apply(ctx, fabric.Desired{Loopback: desired.Loopback})
		must("applying the loopback address", err)
		if _, err := h.LinkByName(fabric.DefaultBridgeName); err != nil {
			must("our bridge", h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: fabric.DefaultBridgeName}}))
		}
		br, _ := h.LinkByName(fabric.DefaultBridgeName)
		must("marking our bridge", h.LinkSetAlias(br, fabric.Marker))
		swp1, _ := h.LinkByName("swp1")
		must("enslaving swp1", h.LinkSetMaster(swp1, br))
	} else {
		swp1, _ := h.LinkByName("swp1")
		br, _ := h.LinkByName(fabric.DefaultBridgeName)
		must("enslaving swp1", h.LinkSetMaster(swp1, br))
	}

	// Ours: a route of protocol 200.
	p, err := fib.New(fib.WithNetns(ns))
	must("fib", err)
	t.Cleanup(func() { p.Close() })
	ourRoute := fib.Route{Prefix: netip.MustParsePrefix("203.0.113.0/24"), NextHops: []fib.NextHop{{Addr: netip.MustParseAddr("192.0.2.1"), Interface: "eth0"}}}
	_, err = p.Sync(ctx, []fib.Route{ourRoute}, nil)
	must("installing our route", err)
	if n := len(routesOfProtocol(t, h, fib.Protocol)); n != 1 {
		t.Fatalf("%d routes of protocol %d installed, want 1", n, fib.Protocol)
	}

	dir := t.TempDir()
	cache := filepath.Join(dir, "last-applied-leaf1.pb")
	must("cache", os.WriteFile(cache, []byte("x"), 0o600))

	cfg := CleanupConfig{
		OpenFIB: func() (CleanupFIB, error) {
			q, err := fib.New(fib.WithNetns(ns)) // a fresh programmer, as in a new process
			if err == nil {
				t.Cleanup(func() { q.Close() })
			}
			return q, err
		},
		OpenFirewall:  func() (CleanupFirewall, error) { return nft.New(nft.WithNetNSFd(int(ns))) },
		FirewallTable: nft.DefaultTable,
		OpenKernel:    func() (fabric.Kernel, error) { return fabric.NewNetlink(h), nil },
		StateDir:      dir,
		Hostname:      "leaf1",
	}

	// The dry run changes nothing.
	var out bytes.Buffer
	cfg.DryRun, cfg.Out = true, &out
	must("dry run", Cleanup(ctx, cfg))
	t.Logf("dry run:\n%s", out.String())
	if !strings.Contains(out.String(), "would remove 1 route(s)") || !strings.Contains(out.String(), "delete "+fabric.DefaultBridgeName) {
		t.Errorf("dry-run output:\n%s", out.String())
	}
	if n := len(routesOfProtocol(t, h, fib.Protocol)); n != 1 {
		t.Errorf("the dry run removed our route")
	}
	if _, err := h.LinkByName(fabric.DefaultBridgeName); err != nil {
		t.Errorf("the dry run removed our bridge: %v", err)
	}

	out.Reset()
	cfg.DryRun = false
	if err := Cleanup(ctx, cfg); err != nil {
		t.Fatalf("Cleanup: %v\n%s", err, out.String())
	}
	t.Logf("cleanup:\n%s", out.String())

	// Ours is gone.
	if rs := routesOfProtocol(t, h, fib.Protocol); len(rs) != 0 {
		t.Errorf("routes of protocol %d left: %v", fib.Protocol, rs)
	}
	if _, err := h.LinkByName(fabric.DefaultBridgeName); err == nil {
		t.Errorf("our bridge is still there")
	}
	if hasAddr(t, h, "lo", "10.255.0.1/32") {
		t.Errorf("our loopback address is still there")
	}
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Errorf("the cache is still there: %v", err)
	}
	tables, err := nc.ListTables()
	must("listing nftables tables", err)
	var names []string
	for _, tb := range tables {
		names = append(names, tb.Name+"/"+familyName(tb.Family))
	}
	slices.Sort(names)
	if want := []string{"fabric/ip", "foreign/inet"}; !slices.Equal(names, want) {
		t.Errorf("nftables tables after cleanup = %q, want %q", names, want)
	}

	// Foreign things are untouched.
	if rs := routesOfProtocol(t, h, unix.RTPROT_STATIC); len(rs) != 2 {
		t.Errorf("static routes after cleanup = %v, want both foreign ones", rs)
	}
	if !hasAddr(t, h, "eth0", "192.0.2.10/24") || !hasAddr(t, h, "lo", "10.9.9.9/32") {
		t.Errorf("a foreign address is gone")
	}
	swp1, err := h.LinkByName("swp1")
	must("swp1 after cleanup", err)
	if swp1.Attrs().MasterIndex != 0 || swp1.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("swp1 after cleanup: master %d, flags %v; want released and up", swp1.Attrs().MasterIndex, swp1.Attrs().Flags)
	}
	brf, err = h.LinkByName("br-foreign")
	must("foreign bridge after cleanup", err)
	if l, _ := h.LinkByName("eth5"); l == nil || l.Attrs().MasterIndex != brf.Attrs().Index {
		t.Errorf("eth5 left the foreign bridge")
	}

	// Running it again finds nothing to do and fails nowhere.
	out.Reset()
	must("second cleanup", Cleanup(ctx, cfg))
	if !strings.Contains(out.String(), "removed 0 route(s)") || !strings.Contains(out.String(), "made 0 change(s)") {
		t.Errorf("second cleanup output:\n%s", out.String())
	}
}

func cidrNet(s string) *net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}

func routesOfProtocol(t *testing.T, h *netlink.Handle, proto netlink.RouteProtocol) []netlink.Route {
	t.Helper()
	rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC, Protocol: proto},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		t.Fatalf("listing routes: %v", err)
	}
	return rs
}

func hasAddr(t *testing.T, h *netlink.Handle, link, prefix string) bool {
	t.Helper()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatalf("%s: %v", link, err)
	}
	as, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("addresses of %s: %v", link, err)
	}
	return slices.ContainsFunc(as, func(a netlink.Addr) bool { return a.IPNet.String() == prefix })
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	}
	return "?"
}
