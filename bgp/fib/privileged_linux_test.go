//go:build linux

package fib

import (
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// newNetns creates a fresh network namespace for one test. The test's
// goroutine stays on the locked thread that is in the namespace until the
// cleanup; commands started with sh run in the namespace whatever thread
// the caller is on.
func newNetns(t testing.TB) netns.NsHandle {
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
			t.Errorf("restoring the netns: %v", err) // leave the thread locked: it dies with the goroutine
		} else {
			runtime.UnlockOSThread()
		}
		orig.Close()
		ns.Close()
	})
	return ns
}

// sh runs a command in ns and returns its output.
func sh(t testing.TB, ns netns.NsHandle, args ...string) string {
	t.Helper()
	var out []byte
	err := inNetns(ns, func() error {
		var err error
		out, err = exec.Command(args[0], args[1:]...).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// shLines runs several "ip ..." style commands.
func shLines(t testing.TB, ns netns.NsHandle, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		sh(t, ns, strings.Fields(c)...)
	}
}

func newProgrammer(t testing.TB, ns netns.NsHandle, opts ...Option) *Programmer {
	t.Helper()
	p, err := New(append([]Option{WithNetns(ns)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// ipRoute is the part of `ip -j -d route show` we check.
type ipRoute struct {
	Dst      string      `json:"dst"`
	Gateway  string      `json:"gateway,omitempty"`
	Via      *ipVia      `json:"via,omitempty"`
	Dev      string      `json:"dev,omitempty"`
	Protocol string      `json:"protocol"`
	Metric   int         `json:"metric,omitempty"`
	Flags    []string    `json:"flags"`
	NextHops []ipNextHop `json:"nexthops,omitempty"`
}

type ipVia struct {
	Family string `json:"family"`
	Host   string `json:"host"`
}

type ipNextHop struct {
	Gateway string   `json:"gateway,omitempty"`
	Via     *ipVia   `json:"via,omitempty"`
	Dev     string   `json:"dev"`
	Weight  int      `json:"weight"`
	Flags   []string `json:"flags"`
}

func ipRoutes(t testing.TB, ns netns.NsHandle, args ...string) []ipRoute {
	t.Helper()
	out := sh(t, ns, append([]string{"ip", "-j", "-d"}, args...)...)
	var rs []ipRoute
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
	for i := range rs {
		if rs[i].Flags == nil {
			rs[i].Flags = []string{}
		}
		for j := range rs[i].NextHops {
			if rs[i].NextHops[j].Flags == nil {
				rs[i].NextHops[j].Flags = []string{}
			}
		}
	}
	return rs
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

func via(a, dev string) NextHop { return NextHop{Addr: addr(a), Interface: dev} }

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func checkResult(t testing.TB, res Result, err error, installed, deleted int) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v (failures %v)", err, res.Failures)
	}
	if res.Installed != installed || res.Deleted != deleted {
		t.Fatalf("installed %d deleted %d, want %d and %d (%+v)", res.Installed, res.Deleted, installed, deleted, res)
	}
}

// twoLinks makes veth0 (10.255.0.0/31, peer 10.255.0.1) and veth1
// (10.255.1.0/31, peer 10.255.1.1), both up with IPv6 link-local addresses.
func twoLinks(t testing.TB, ns netns.NsHandle) {
	t.Helper()
	shLines(t, ns,
		"ip link add veth0 type veth peer name peer0",
		"ip link add veth1 type veth peer name peer1",
		"ip addr add 10.255.0.0/31 dev veth0",
		"ip addr add 10.255.1.0/31 dev veth1",
		"ip addr add 2001:db8::/127 dev veth0 nodad",
		"ip link set veth0 up", "ip link set peer0 up",
		"ip link set veth1 up", "ip link set peer1 up",
	)
}

func TestPrivilegedInstallWithdrawTables(t *testing.T) {
	ns := newNetns(t)
	twoLinks(t, ns)
	p := newProgrammer(t, ns)
	ctx := t.Context()
	routes := []Route{
		{Table: 10, Prefix: pfx("10.0.0.1/32"), NextHops: []NextHop{via("10.255.0.1", "veth0")}},
		{Table: 100000, Prefix: pfx("10.0.0.2/32"), NextHops: []NextHop{via("10.255.0.1", "veth0")}},
		{Table: 10, Prefix: pfx("2001:db8:1::/64"), NextHops: []NextHop{via("2001:db8::1", "veth0")}},
		{Table: 0, Prefix: pfx("10.0.1.0/24"), NextHops: []NextHop{{Interface: "veth1"}}},
	}
	res, err := p.Sync(ctx, routes, nil)
	checkResult(t, res, err, 4, 0)

	want := []ipRoute{{Dst: "10.0.0.1", Gateway: "10.255.0.1", Dev: "veth0", Protocol: "200", Metric: 20, Flags: []string{}}}
	if diff := cmp.Diff(want, ipRoutes(t, ns, "route", "show", "table", "10")); diff != "" {
		t.Errorf("table 10 (-want +got):\n%s", diff)
	}
	want = []ipRoute{{Dst: "10.0.0.2", Gateway: "10.255.0.1", Dev: "veth0", Protocol: "200", Metric: 20, Flags: []string{}}}
	if diff := cmp.Diff(want, ipRoutes(t, ns, "route", "show", "table", "100000")); diff != "" {
		t.Errorf("table 100000 (-want +got):\n%s", diff)
	}
	want = []ipRoute{{Dst: "2001:db8:1::/64", Gateway: "2001:db8::1", Dev: "veth0", Protocol: "200", Metric: 20, Flags: []string{}}}
	if diff := cmp.Diff(want, ipRoutes(t, ns, "-6", "route", "show", "table", "10")); diff != "" {
		t.Errorf("table 10 IPv6 (-want +got):\n%s", diff)
	}
	if got := ipRoutes(t, ns, "route", "show", "10.0.1.0/24", "proto", "200"); len(got) != 1 || got[0].Dev != "veth1" {
		t.Errorf("main table: got %+v, want 10.0.1.0/24 dev veth1", got)
	}

	// Idempotent: the same Sync again changes nothing, from a fresh
	// programmer too (it reads our routes back and finds them equal).
	res, err = p.Sync(ctx, routes, nil)
	checkResult(t, res, err, 0, 0)
	if res.Unchanged != 4 {
		t.Errorf("Unchanged = %d, want 4", res.Unchanged)
	}
	res, err = newProgrammer(t, ns).Sync(ctx, routes, nil)
	checkResult(t, res, err, 0, 0)
	if res.Unchanged != 4 {
		t.Errorf("fresh programmer: Unchanged = %d, want 4", res.Unchanged)
	}

	// Change one next hop (replace) and withdraw everything else.
	changed := Route{Table: 10, Prefix: pfx("10.0.0.1/32"), NextHops: []NextHop{via("10.255.1.1", "veth1")}}
	res, err = p.Sync(ctx, []Route{changed}, nil)
	checkResult(t, res, err, 1, 3)
	want = []ipRoute{{Dst: "10.0.0.1", Gateway: "10.255.1.1", Dev: "veth1", Protocol: "200", Metric: 20, Flags: []string{}}}
	if diff := cmp.Diff(want, ipRoutes(t, ns, "route", "show", "table", "10")); diff != "" {
		t.Errorf("table 10 after the change (-want +got):\n%s", diff)
	}
	if got := ipRoutes(t, ns, "route", "show", "table", "all", "proto", "200"); len(got) != 1 {
		t.Errorf("routes of ours after the withdrawal: %+v, want 1", got)
	}
	if diff := cmp.Diff([]Route{changed}, p.Installed(), netipCmp); diff != "" {
		t.Errorf("Installed (-want +got):\n%s", diff)
	}
}

func TestPrivilegedECMPAndRFC5549(t *testing.T) {
	ns := newNetns(t)
	twoLinks(t, ns)
	p := newProgrammer(t, ns)
	routes := []Route{
		// IPv4 ECMP over two IPv4 next hops.
		{Table: 20, Prefix: pfx("10.1.0.0/16"), NextHops: []NextHop{via("10.255.0.1", "veth0"), via("10.255.1.1", "veth1")}},
		// RFC 5549: an IPv4 loopback via an IPv6 link-local next hop.
		{Table: 20, Prefix: pfx("10.255.0.2/32"), NextHops: []NextHop{via("fe80::1", "veth0")}},
		// ... and ECMP over two unnumbered sessions.
		{Table: 20, Prefix: pfx("10.255.0.3/32"), NextHops: []NextHop{via("fe80::1", "veth0"), via("fe80::2", "veth1")}},
		// IPv6 ECMP.
		{Table: 20, Prefix: pfx("2001:db8:5::/48"), NextHops: []NextHop{via("fe80::1", "veth0"), via("fe80::2", "veth1")}},
	}
	res, err := p.Sync(t.Context(), routes, nil)
	checkResult(t, res, err, 4, 0)
	flags := []string{}
	want := []ipRoute{
		{Dst: "10.1.0.0/16", Protocol: "200", Metric: 20, Flags: flags, NextHops: []ipNextHop{
			{Gateway: "10.255.0.1", Dev: "veth0", Weight: 1, Flags: flags},
			{Gateway: "10.255.1.1", Dev: "veth1", Weight: 1, Flags: flags}}},
		{Dst: "10.255.0.2", Via: &ipVia{"inet6", "fe80::1"}, Dev: "veth0", Protocol: "200", Metric: 20, Flags: flags},
		{Dst: "10.255.0.3", Protocol: "200", Metric: 20, Flags: flags, NextHops: []ipNextHop{
			{Via: &ipVia{"inet6", "fe80::1"}, Dev: "veth0", Weight: 1, Flags: flags},
			{Via: &ipVia{"inet6", "fe80::2"}, Dev: "veth1", Weight: 1, Flags: flags}}},
	}
	if diff := cmp.Diff(want, ipRoutes(t, ns, "route", "show", "table", "20")); diff != "" {
		t.Errorf("table 20 (-want +got):\n%s", diff)
	}
	want = []ipRoute{{Dst: "2001:db8:5::/48", Protocol: "200", Metric: 20, Flags: flags, NextHops: []ipNextHop{
		{Gateway: "fe80::1", Dev: "veth0", Weight: 1, Flags: flags},
		{Gateway: "fe80::2", Dev: "veth1", Weight: 1, Flags: flags}}}}
	if diff := cmp.Diff(want, ipRoutes(t, ns, "-6", "route", "show", "table", "20")); diff != "" {
		t.Errorf("table 20 IPv6 (-want +got):\n%s", diff)
	}
	// Read back through netlink by a fresh programmer: all equal.
	res, err = newProgrammer(t, ns).Sync(t.Context(), routes, nil)
	checkResult(t, res, err, 0, 0)
	if res.Unchanged != len(routes) {
		t.Errorf("fresh programmer: Unchanged = %d, want %d", res.Unchanged, len(routes))
	}
	// Shrink both multipaths to one path (replace) and withdraw the rest.
	res, err = p.Apply(t.Context(), Batch{
		Set: []Route{
			{Table: 20, Prefix: pfx("10.1.0.0/16"), NextHops: []NextHop{via("10.255.1.1", "veth1")}},
			{Table: 20, Prefix: pfx("2001:db8:5::/48"), NextHops: []NextHop{via("fe80::2", "veth1")}},
		},
		Delete: routes[1:3],
	})
	checkResult(t, res, err, 2, 2)
	want = []ipRoute{{Dst: "2001:db8:5::/48", Gateway: "fe80::2", Dev: "veth1", Protocol: "200", Metric: 20, Flags: flags}}
	if diff := cmp.Diff(want, ipRoutes(t, ns, "-6", "route", "show", "table", "20")); diff != "" {
		t.Errorf("table 20 IPv6 after the replace (-want +got):\n%s", diff)
	}
	if _, err := p.Apply(t.Context(), Batch{Delete: routes[3:]}); err != nil {
		t.Fatal(err)
	}
	// (ip leaves the protocol out when it filters by it.)
	want = []ipRoute{{Dst: "10.1.0.0/16", Gateway: "10.255.1.1", Dev: "veth1", Metric: 20, Flags: flags}}
	if diff := cmp.Diff(want, ipRoutes(t, ns, "route", "show", "table", "all", "proto", "200")); diff != "" {
		t.Errorf("after Apply (-want +got):\n%s", diff)
	}
}

// symmetricIRB makes an SVI-like bridge vlan1000 with the VXLAN device
// vx10000 as its port (the host kernel has no VLAN devices or VRFs).
func symmetricIRB(t testing.TB, ns netns.NsHandle) {
	t.Helper()
	shLines(t, ns,
		"ip link add lo0 type veth peer name lo0p",
		"ip addr add 10.0.0.1/32 dev lo0",
		"ip link set lo0 up",
		"ip link add vlan1000 type bridge",
		"ip link add vx10000 type vxlan id 10000 local 10.0.0.1 dstport 4789 nolearning",
		"ip link set vx10000 master vlan1000",
		"ip link set vx10000 up",
		"ip link set vlan1000 up",
	)
}

func TestPrivilegedRemoteOnlink(t *testing.T) {
	ns := newNetns(t)
	symmetricIRB(t, ns)
	p := newProgrammer(t, ns)
	remote := Remote{VTEP: addr("10.255.0.2"), RouterMAC: mustMAC("02:00:0a:ff:00:02"), SVI: "vlan1000", VXLAN: "vx10000"}
	route := Route{Table: 10000, Prefix: pfx("10.0.0.5/32"), NextHops: []NextHop{{Addr: addr("10.255.0.2"), Interface: "vlan1000", OnLink: true}}}
	res, err := p.Sync(t.Context(), []Route{route}, []Remote{remote})
	checkResult(t, res, err, 1, 0)
	if res.RemotesInstalled != 3 {
		t.Errorf("RemotesInstalled = %d, want 3", res.RemotesInstalled)
	}
	want := []ipRoute{{Dst: "10.0.0.5", Gateway: "10.255.0.2", Dev: "vlan1000", Protocol: "200", Metric: 20, Flags: []string{"onlink"}}}
	if diff := cmp.Diff(want, ipRoutes(t, ns, "route", "show", "table", "10000")); diff != "" {
		t.Errorf("table 10000 (-want +got):\n%s", diff)
	}
	if got, want := strings.TrimSpace(sh(t, ns, "ip", "neigh", "show", "dev", "vlan1000")), "10.255.0.2 lladdr 02:00:0a:ff:00:02 PERMANENT proto 200"; got != want {
		t.Errorf("ip neigh show dev vlan1000:\n got %q\nwant %q", got, want)
	}
	fdb := sh(t, ns, "bridge", "fdb", "show", "dev", "vx10000")
	for _, line := range []string{
		"02:00:0a:ff:00:02 dst 10.255.0.2 self permanent",
		"02:00:0a:ff:00:02 master vlan1000 static",
	} {
		if !strings.Contains(fdb, line) {
			t.Errorf("bridge fdb show dev vx10000: no %q in\n%s", line, fdb)
		}
	}

	// A fresh programmer recognises the entries as ours: nothing to do.
	p2 := newProgrammer(t, ns)
	res, err = p2.Sync(t.Context(), []Route{route}, []Remote{remote})
	checkResult(t, res, err, 0, 0)
	if res.RemotesInstalled != 0 || res.RemotesDeleted != 0 {
		t.Errorf("fresh programmer changed remotes: %+v", res)
	}

	// A neighbour and an FDB entry we did not create stay.
	shLines(t, ns,
		"ip neigh add 10.255.0.9 lladdr 02:00:00:00:00:09 dev vlan1000 nud permanent",
		"bridge fdb add 02:00:00:00:00:09 dev vx10000 dst 10.255.0.9 self permanent",
	)
	// Withdraw: the route first, then the entries.
	res, err = p2.Sync(t.Context(), nil, nil)
	checkResult(t, res, err, 0, 1)
	if res.RemotesDeleted != 3 {
		t.Errorf("RemotesDeleted = %d, want 3 (%+v)", res.RemotesDeleted, res)
	}
	if got, want := strings.TrimSpace(sh(t, ns, "ip", "neigh", "show", "dev", "vlan1000")), "10.255.0.9 lladdr 02:00:00:00:00:09 PERMANENT"; got != want {
		t.Errorf("ip neigh show dev vlan1000 after the withdrawal:\n got %q\nwant %q", got, want)
	}
	fdb = sh(t, ns, "bridge", "fdb", "show", "dev", "vx10000")
	if strings.Contains(fdb, "02:00:0a:ff:00:02") || !strings.Contains(fdb, "02:00:00:00:00:09 dst 10.255.0.9 self permanent") {
		t.Errorf("bridge fdb show dev vx10000 after the withdrawal:\n%s", fdb)
	}
	if got := ipRoutes(t, ns, "route", "show", "table", "10000"); len(got) != 0 {
		t.Errorf("table 10000 after the withdrawal: %+v", got)
	}
}

func TestPrivilegedPerRouteFailure(t *testing.T) {
	ns := newNetns(t)
	twoLinks(t, ns)
	p := newProgrammer(t, ns)
	good := []Route{
		{Table: 10, Prefix: pfx("10.0.0.1/32"), NextHops: []NextHop{via("10.255.0.1", "veth0")}},
		{Table: 10, Prefix: pfx("10.0.0.3/32"), NextHops: []NextHop{via("10.255.1.1", "veth1")}},
	}
	missingDev := Route{Table: 10, Prefix: pfx("10.0.0.2/32"), NextHops: []NextHop{via("10.255.0.1", "swp99")}}
	unreachable := Route{Table: 10, Prefix: pfx("10.0.0.4/32"), NextHops: []NextHop{via("10.99.0.1", "veth0")}}
	invalid := Route{Table: 10, Prefix: pfx("2001:db8:9::/48"), NextHops: []NextHop{via("10.255.0.1", "veth0")}}
	res, err := p.Sync(t.Context(), []Route{good[0], missingDev, unreachable, good[1], invalid}, nil)
	if !errors.Is(err, ErrSomeFailed) {
		t.Fatalf("Sync error = %v, want ErrSomeFailed", err)
	}
	if res.Installed != 2 || len(res.Failures) != 3 {
		t.Fatalf("installed %d with %d failures, want 2 and 3: %+v", res.Installed, len(res.Failures), res.Failures)
	}
	byPrefix := map[netip.Prefix]error{}
	for _, f := range res.Failures {
		byPrefix[f.Route.Prefix] = f.Err
		t.Logf("failure: %v", f.Err)
	}
	if err := byPrefix[missingDev.Prefix]; err == nil || !strings.Contains(err.Error(), "installing 10.0.0.2/32 in table 10: next hop device swp99") {
		t.Errorf("missing device: %v", err)
	}
	var kerr *KernelError
	if err := byPrefix[unreachable.Prefix]; !errors.As(err, &kerr) || !errors.Is(err, unix.ENETUNREACH) {
		t.Errorf("unreachable gateway: %v, want a KernelError ENETUNREACH", err)
	}
	if err := byPrefix[invalid.Prefix]; !errors.Is(err, ErrInvalid) {
		t.Errorf("IPv6 route via IPv4: %v, want ErrInvalid", err)
	}
	if diff := cmp.Diff(good, p.Installed(), netipCmp); diff != "" {
		t.Errorf("Installed (-want +got):\n%s", diff)
	}
	if got := ipRoutes(t, ns, "route", "show", "table", "10"); len(got) != 2 {
		t.Errorf("table 10: %+v, want the 2 good routes", got)
	}
}

func TestPrivilegedForeignRoutesUntouched(t *testing.T) {
	ns := newNetns(t)
	twoLinks(t, ns)
	shLines(t, ns,
		// Same table, another protocol, a prefix we never want.
		"ip route add 10.0.0.9/32 via 10.255.0.1 dev veth0 table 10 proto static",
		// Same table, prefix and metric as one we want: must not be replaced.
		"ip route add 10.0.0.2/32 via 10.255.1.1 dev veth1 table 10 proto static metric 20",
		// Same prefix with another metric: coexists with ours.
		"ip route add 10.0.0.1/32 via 10.255.1.1 dev veth1 table 10 proto bird metric 100",
		// Another protocol in another table.
		"ip route add 10.0.0.1/32 via 10.255.1.1 dev veth1 table 11 proto kernel",
	)
	before := sh(t, ns, "ip", "route", "show", "table", "all", "proto", "static")
	p := newProgrammer(t, ns)
	res, err := p.Sync(t.Context(), []Route{
		{Table: 10, Prefix: pfx("10.0.0.1/32"), NextHops: []NextHop{via("10.255.0.1", "veth0")}},
		{Table: 10, Prefix: pfx("10.0.0.2/32"), NextHops: []NextHop{via("10.255.0.1", "veth0")}},
	}, nil)
	if !errors.Is(err, ErrSomeFailed) || len(res.Failures) != 1 || !errors.Is(res.Failures[0].Err, unix.EEXIST) {
		t.Fatalf("Sync: %v %+v, want one EEXIST failure for 10.0.0.2/32", err, res.Failures)
	}
	if res.Installed != 1 {
		t.Errorf("Installed = %d, want 1", res.Installed)
	}
	res, err = p.Sync(t.Context(), nil, nil)
	checkResult(t, res, err, 0, 1)
	if after := sh(t, ns, "ip", "route", "show", "table", "all", "proto", "static"); after != before {
		t.Errorf("static routes changed:\nbefore\n%s\nafter\n%s", before, after)
	}
	for _, c := range [][]string{{"table", "10", "proto", "bird"}, {"table", "11", "proto", "kernel"}} {
		if got := ipRoutes(t, ns, append([]string{"route", "show"}, c...)...); len(got) != 1 {
			t.Errorf("route show %v: %+v, want the foreign route", c, got)
		}
	}
	if got := ipRoutes(t, ns, "route", "show", "table", "all", "proto", "200"); len(got) != 0 {
		t.Errorf("routes of ours left: %+v", got)
	}
}

func TestPrivilegedWithdrawExactly(t *testing.T) {
	ns := newNetns(t)
	twoLinks(t, ns)
	p := newProgrammer(t, ns)
	var all []Route
	for i := range 200 {
		all = append(all, Route{Table: 30, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 2, byte(i / 100), byte(i % 100)}), 32),
			NextHops: []NextHop{via("10.255.0.1", "veth0")}})
	}
	res, err := p.Apply(t.Context(), Batch{Set: all})
	checkResult(t, res, err, 200, 0)
	// Withdraw every other one, plus one we never installed.
	var del, keep []Route
	for i, r := range all {
		if i%2 == 0 {
			del = append(del, r)
		} else {
			keep = append(keep, r)
		}
	}
	res, err = p.Apply(t.Context(), Batch{Delete: append(del, Route{Table: 30, Prefix: pfx("10.9.9.9/32")})})
	checkResult(t, res, err, 0, 100)
	if diff := cmp.Diff(keep, p.Installed(), netipCmp); diff != "" {
		t.Errorf("Installed (-want +got):\n%s", diff)
	}
	var got []string
	for _, r := range ipRoutes(t, ns, "route", "show", "table", "30") {
		got = append(got, r.Dst+"/32")
	}
	var want []string
	for _, r := range keep {
		want = append(want, r.Prefix.String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("table 30 (-want +got):\n%s", diff)
	}
}

func TestPrivilegedStaleMetric(t *testing.T) {
	ns := newNetns(t)
	twoLinks(t, ns)
	r := Route{Table: 10, Prefix: pfx("10.0.0.1/32"), NextHops: []NextHop{via("10.255.0.1", "veth0")}}
	res, err := newProgrammer(t, ns).Sync(t.Context(), []Route{r}, nil)
	checkResult(t, res, err, 1, 0)
	// Another metric: ours at metric 20 is stale and withdrawn after the
	// new one is in.
	res, err = newProgrammer(t, ns, WithMetric(30)).Sync(t.Context(), []Route{r}, nil)
	checkResult(t, res, err, 1, 1)
	want := []ipRoute{{Dst: "10.0.0.1", Gateway: "10.255.0.1", Dev: "veth0", Protocol: "200", Metric: 30, Flags: []string{}}}
	if diff := cmp.Diff(want, ipRoutes(t, ns, "route", "show", "table", "10")); diff != "" {
		t.Errorf("table 10 (-want +got):\n%s", diff)
	}
}

// TestPrivilegedWindowsMapErrors sends small windows so that the failures
// fall into different sendmsg calls, and checks that each error comes back
// to its own route by sequence number.
func TestPrivilegedWindowsMapErrors(t *testing.T) {
	ns := newNetns(t)
	twoLinks(t, ns)
	p := newProgrammer(t, ns, WithWindow(7))
	var routes []Route
	wantFail := map[netip.Prefix]bool{}
	for i := range 60 {
		gw := "10.255.0.1"
		if i%9 == 4 {
			gw = "10.99.0.1" // unreachable
		}
		r := Route{Table: 40, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 3, 0, byte(i)}), 32), NextHops: []NextHop{via(gw, "veth0")}}
		routes = append(routes, r)
		wantFail[r.Prefix] = gw != "10.255.0.1"
	}
	res, err := p.Sync(t.Context(), routes, nil)
	if !errors.Is(err, ErrSomeFailed) {
		t.Fatalf("Sync: %v, want ErrSomeFailed", err)
	}
	got := map[netip.Prefix]bool{}
	for _, f := range res.Failures {
		if !errors.Is(f.Err, unix.ENETUNREACH) {
			t.Errorf("%v: %v, want ENETUNREACH", f.Route, f.Err)
		}
		got[f.Route.Prefix] = true
	}
	for pf, fail := range wantFail {
		if got[pf] != fail {
			t.Errorf("%s: failed %v, want %v", pf, got[pf], fail)
		}
	}
	if n := len(ipRoutes(t, ns, "route", "show", "table", "40")); n != res.Installed || n != 60-len(res.Failures) {
		t.Errorf("kernel has %d routes, Installed %d, failures %d", n, res.Installed, len(res.Failures))
	}
}

// TestPrivilegedLostAnswers makes the receive buffer too small for the
// answers of a window (which the programmer never does by itself): the
// answers that arrive are reported, the others as ErrAckLost, none as
// success, and the next Apply re-reads the kernel.
func TestPrivilegedLostAnswers(t *testing.T) {
	ns := newNetns(t)
	twoLinks(t, ns)
	p := newProgrammer(t, ns)
	if err := unix.SetsockoptInt(p.c.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1); err != nil {
		t.Fatal(err)
	}
	p.c.window = 500
	var routes []Route
	for i := range 500 {
		routes = append(routes, Route{Table: 40, Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 4, byte(i >> 8), byte(i)}), 32), NextHops: []NextHop{via("10.99.0.1", "veth0")}})
	}
	res, _ := p.Apply(t.Context(), Batch{Set: routes})
	lost, reported := 0, 0
	for _, f := range res.Failures {
		switch {
		case errors.Is(f.Err, ErrAckLost):
			lost++
		case errors.Is(f.Err, unix.ENETUNREACH):
			reported++
		default:
			t.Errorf("%v: %v", f.Route, f.Err)
		}
	}
	t.Logf("%d answers lost, %d reported", lost, reported)
	if res.Installed != 0 || lost+reported != 500 || lost == 0 {
		t.Errorf("installed %d, lost %d, reported %d; want 0, >0 lost, 500 in all", res.Installed, lost, reported)
	}
	if p.loaded {
		t.Errorf("the programmer still trusts its record after lost answers")
	}
}

func TestPrivilegedApplyRemotes(t *testing.T) {
	ns := newNetns(t)
	symmetricIRB(t, ns)
	p := newProgrammer(t, ns)
	r1 := Remote{VTEP: addr("10.255.0.2"), RouterMAC: mustMAC("02:00:0a:ff:00:02"), SVI: "vlan1000", VXLAN: "vx10000"}
	r2 := Remote{VTEP: addr("10.255.0.3"), RouterMAC: mustMAC("02:00:0a:ff:00:03"), SVI: "vlan1000", VXLAN: "vx10000"}
	res, err := p.Apply(t.Context(), Batch{SetRemotes: []Remote{r1, r2}})
	if err != nil || res.RemotesInstalled != 6 {
		t.Fatalf("Apply: %v, %+v; want 6 entries", err, res)
	}
	res, err = p.Apply(t.Context(), Batch{DeleteRemotes: []Remote{r1}})
	if err != nil || res.RemotesDeleted != 3 {
		t.Fatalf("Apply delete: %v, %+v; want 3 entries removed", err, res)
	}
	if got := strings.TrimSpace(sh(t, ns, "ip", "neigh", "show", "dev", "vlan1000")); got != "10.255.0.3 lladdr 02:00:0a:ff:00:03 PERMANENT proto 200" {
		t.Errorf("neighbours: %q", got)
	}
	// The host's bridge has no VLAN filtering, so a bridge FDB entry in a
	// VLAN is refused: reported for that remote, the other entries stay.
	r3 := Remote{VTEP: addr("10.255.0.4"), RouterMAC: mustMAC("02:00:0a:ff:00:04"), SVI: "vlan1000", VXLAN: "vx10000", VLAN: 1000}
	res, err = p.Apply(t.Context(), Batch{SetRemotes: []Remote{r3}})
	if !errors.Is(err, ErrSomeFailed) || len(res.RemoteFailures) != 1 || res.RemoteFailures[0].Remote.VTEP != r3.VTEP || res.RemotesInstalled != 2 {
		t.Fatalf("Apply with a VLAN: %v, %+v; want one failure for %s and 2 entries installed", err, res, r3.VTEP)
	}
	t.Logf("expected failure: %v", res.RemoteFailures[0].Err)
	// Sync to nothing removes everything of ours, including the partial r3.
	res, err = p.Sync(t.Context(), nil, nil)
	if err != nil || res.RemotesDeleted != 5 {
		t.Fatalf("Sync: %v, %+v; want 5 entries removed", err, res)
	}
	if got := strings.TrimSpace(sh(t, ns, "ip", "neigh", "show", "dev", "vlan1000")); got != "" {
		t.Errorf("neighbours left: %q", got)
	}
}
