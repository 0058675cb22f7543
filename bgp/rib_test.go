package bgp

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalfabric/fabric/bgp/fib"
)

// export is the type-5 route the leaf originates for a machine prefix in red.
func redExport(prefix string) Path {
	return Path{
		Family: EVPN, Prefix: pfx(prefix), NextHop: ourVTEP, RD: "10.255.0.1:10",
		RouteTargets: []string{"59905:10"}, RouterMAC: macRed, VNI: 10,
	}
}

func redInject(prefix string) Path {
	return Path{Family: IPv4Unicast, VRF: "red", Prefix: pfx(prefix), LocalPref: 50}
}

func network() Path { return Path{Family: IPv4Unicast, Prefix: pfx("10.255.0.1/32")} }

// TestBestPaths feeds batches of best paths and checks the kernel, the
// remotes and the originations after each step.
func TestBestPaths(t *testing.T) {
	type step struct {
		name    string
		push    []Update
		kernel  []fib.Route
		remotes []fib.Remote
		origin  []Path   // besides the loopback network
		ops     []string // exact FIB ops of the step, when not nil
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"underlay ECMP", []step{
			{
				name: "two spines",
				push: []Update{underlayUpdate("10.255.0.2/32", "fe80::2%swp32", "fe80::1%swp31")},
				kernel: []fib.Route{{Table: MainTable, Prefix: pfx("10.255.0.2/32"), NextHops: []fib.NextHop{
					{Addr: llSpine1, Interface: "swp31"}, {Addr: llSpine2, Interface: "swp32"},
				}}},
				ops: []string{"+route 254 10.255.0.2/32 [fe80::1@swp31, fe80::2@swp32]"},
			},
			{
				name: "one spine goes",
				push: []Update{underlayUpdate("10.255.0.2/32", "fe80::2%swp32")},
				kernel: []fib.Route{{Table: MainTable, Prefix: pfx("10.255.0.2/32"), NextHops: []fib.NextHop{
					{Addr: llSpine2, Interface: "swp32"},
				}}},
				ops: []string{"+route 254 10.255.0.2/32 [fe80::2@swp32]"},
			},
			{
				name: "same again: nothing",
				push: []Update{underlayUpdate("10.255.0.2/32", "fe80::2%swp32", "fe80::2%swp32")},
				kernel: []fib.Route{{Table: MainTable, Prefix: pfx("10.255.0.2/32"), NextHops: []fib.NextHop{
					{Addr: llSpine2, Interface: "swp32"},
				}}},
				ops: []string{},
			},
			{
				name: "withdrawn",
				push: []Update{withdrawal(IPv4Unicast, "", "10.255.0.2/32", "")},
				ops:  []string{"-route 254 10.255.0.2/32"},
			},
			{
				name: "our own network is not installed",
				push: []Update{{Family: IPv4Unicast, Prefix: pfx("10.255.0.1/32"), Paths: []Path{{Family: IPv4Unicast, Prefix: pfx("10.255.0.1/32"), Local: true}}}},
				ops:  []string{},
			},
		}},
		{"machine path", []step{
			{
				name: "announced",
				push: []Update{machineUpdate("red", "192.0.2.0/26", "swp1", llHost1)},
				kernel: []fib.Route{{Table: 10, Prefix: pfx("192.0.2.0/26"), NextHops: []fib.NextHop{
					{Addr: llHost1, Interface: "swp1"},
				}}},
				origin: []Path{redExport("192.0.2.0/26")},
				ops:    []string{"+route 10 192.0.2.0/26 [fe80::a1@swp1]"},
			},
			{
				name: "withdrawn",
				push: []Update{withdrawal(IPv4Unicast, "red", "192.0.2.0/26", "")},
				ops:  []string{"-route 10 192.0.2.0/26"},
			},
		}},
		{"machine path in blue", []step{
			{
				name: "announced",
				push: []Update{machineUpdate("blue", "198.51.100.0/26", "swp2", llHost1)},
				kernel: []fib.Route{{Table: 20, Prefix: pfx("198.51.100.0/26"), NextHops: []fib.NextHop{
					{Addr: llHost1, Interface: "swp2"},
				}}},
				origin: []Path{{
					Family: EVPN, Prefix: pfx("198.51.100.0/26"), NextHop: ourVTEP, RD: "10.255.0.1:20",
					RouteTargets: []string{"59905:20"}, RouterMAC: macBlue, VNI: 20,
				}},
			},
		}},
		{"EVPN import from two VTEPs", []step{
			{
				name: "two VTEPs",
				push: []Update{
					type5("203.0.113.0/24", vtepA, macA, 10, "65001:10"),
					type5("203.0.113.0/24", vtepB, macB, 10, "65002:10"),
				},
				kernel:  []fib.Route{{Table: 10, Prefix: pfx("203.0.113.0/24"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni10"), onlink(vtepB, "l3vni10")}}},
				remotes: []fib.Remote{remote(vtepA, macA, 10), remote(vtepB, macB, 10)},
				origin:  []Path{redInject("203.0.113.0/24")},
				ops: []string{
					"+remote vx10 10.254.0.2 02:00:00:00:00:0a",
					"+remote vx10 10.254.0.3 02:00:00:00:00:0b",
					"+route 10 203.0.113.0/24 [10.254.0.2@l3vni10 onlink, 10.254.0.3@l3vni10 onlink]",
				},
			},
			{
				name: "B also announces a second prefix",
				push: []Update{type5("203.0.114.0/24", vtepB, macB, 10, "65002:10")},
				kernel: []fib.Route{
					{Table: 10, Prefix: pfx("203.0.113.0/24"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni10"), onlink(vtepB, "l3vni10")}},
					{Table: 10, Prefix: pfx("203.0.114.0/24"), NextHops: []fib.NextHop{onlink(vtepB, "l3vni10")}},
				},
				remotes: []fib.Remote{remote(vtepA, macA, 10), remote(vtepB, macB, 10)},
				origin:  []Path{redInject("203.0.113.0/24"), redInject("203.0.114.0/24")},
				ops:     []string{"+route 10 203.0.114.0/24 [10.254.0.3@l3vni10 onlink]"},
			},
			{
				name: "B withdraws the first: route updated, B's remote stays (still used)",
				push: []Update{withdrawal(EVPN, "", "203.0.113.0/24", "10.255.0.3:10")},
				kernel: []fib.Route{
					{Table: 10, Prefix: pfx("203.0.113.0/24"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni10")}},
					{Table: 10, Prefix: pfx("203.0.114.0/24"), NextHops: []fib.NextHop{onlink(vtepB, "l3vni10")}},
				},
				remotes: []fib.Remote{remote(vtepA, macA, 10), remote(vtepB, macB, 10)},
				origin:  []Path{redInject("203.0.113.0/24"), redInject("203.0.114.0/24")},
				ops:     []string{"+route 10 203.0.113.0/24 [10.254.0.2@l3vni10 onlink]"},
			},
			{
				name: "B withdraws the second: route gone, then B's remote",
				push: []Update{withdrawal(EVPN, "", "203.0.114.0/24", "10.255.0.3:10")},
				kernel: []fib.Route{
					{Table: 10, Prefix: pfx("203.0.113.0/24"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni10")}},
				},
				remotes: []fib.Remote{remote(vtepA, macA, 10)},
				origin:  []Path{redInject("203.0.113.0/24")},
				ops:     []string{"-route 10 203.0.114.0/24", "-remote vx10 10.254.0.3 02:00:00:00:00:0b"},
			},
			{
				name: "A withdraws: all gone",
				push: []Update{withdrawal(EVPN, "", "203.0.113.0/24", "10.255.0.2:10")},
				ops:  []string{"-route 10 203.0.113.0/24", "-remote vx10 10.254.0.2 02:00:00:00:00:0a"},
			},
		}},
		{"VTEP moves one prefix away while another route uses it", []step{
			{
				name: "A and B",
				push: []Update{
					type5("203.0.113.0/24", vtepA, macA, 10, "65001:10"),
					type5("203.0.113.0/24", vtepB, macB, 10, "65002:10"),
				},
				kernel:  []fib.Route{{Table: 10, Prefix: pfx("203.0.113.0/24"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni10"), onlink(vtepB, "l3vni10")}}},
				remotes: []fib.Remote{remote(vtepA, macA, 10), remote(vtepB, macB, 10)},
				origin:  []Path{redInject("203.0.113.0/24")},
			},
			{
				name: "B withdrawn: route updated before B's remote goes",
				push: []Update{withdrawal(EVPN, "", "203.0.113.0/24", "10.255.0.3:10")},
				kernel: []fib.Route{
					{Table: 10, Prefix: pfx("203.0.113.0/24"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni10")}},
				},
				remotes: []fib.Remote{remote(vtepA, macA, 10)},
				origin:  []Path{redInject("203.0.113.0/24")},
				ops:     []string{"+route 10 203.0.113.0/24 [10.254.0.2@l3vni10 onlink]", "-remote vx10 10.254.0.3 02:00:00:00:00:0b"},
			},
		}},
		{"import into two VRFs", []step{
			{
				name: "one route carries both RTs",
				push: []Update{type5("203.0.113.0/24", vtepA, macA, 10, "65001:10", "65001:20")},
				kernel: []fib.Route{
					{Table: 10, Prefix: pfx("203.0.113.0/24"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni10")}},
					{Table: 20, Prefix: pfx("203.0.113.0/24"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni20")}},
				},
				remotes: []fib.Remote{remote(vtepA, macA, 10), remote(vtepA, macA, 20)},
				origin: []Path{
					{Family: IPv4Unicast, VRF: "blue", Prefix: pfx("203.0.113.0/24"), LocalPref: 50},
					redInject("203.0.113.0/24"),
				},
			},
		}},
		{"imports ignored", []step{
			{
				name: "RT of no local VRF",
				push: []Update{type5("203.0.113.0/24", vtepA, macA, 30, "65001:30", "65001:100")},
				ops:  []string{},
			},
			{
				name: "our own VTEP",
				push: []Update{type5("203.0.114.0/24", ourVTEP, macRed, 10, "59905:10")},
				ops:  []string{},
			},
			{
				name: "our own export (local path)",
				push: []Update{func() Update {
					u := type5("203.0.115.0/24", vtepA, macA, 10, "65001:10")
					u.Paths[0].Local = true
					return u
				}()},
				ops: []string{},
			},
			{
				name: "no router MAC",
				push: []Update{type5("203.0.116.0/24", vtepA, nil, 10, "65001:10")},
				ops:  []string{},
			},
		}},
		{"machine path and import of the same prefix", []step{
			{
				name: "import first",
				push: []Update{type5("192.0.2.0/26", vtepA, macA, 10, "65001:10")},
				kernel: []fib.Route{
					{Table: 10, Prefix: pfx("192.0.2.0/26"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni10")}},
				},
				remotes: []fib.Remote{remote(vtepA, macA, 10)},
				origin:  []Path{redInject("192.0.2.0/26")},
			},
			{
				name: "machine wins; import still injected; remote gone after the route changed",
				push: []Update{machineUpdate("red", "192.0.2.0/26", "swp1", llHost1)},
				kernel: []fib.Route{
					{Table: 10, Prefix: pfx("192.0.2.0/26"), NextHops: []fib.NextHop{{Addr: llHost1, Interface: "swp1"}}},
				},
				origin: []Path{redInject("192.0.2.0/26"), redExport("192.0.2.0/26")},
				ops:    []string{"+route 10 192.0.2.0/26 [fe80::a1@swp1]", "-remote vx10 10.254.0.2 02:00:00:00:00:0a"},
			},
			{
				name: "machine goes: the import takes over",
				push: []Update{withdrawal(IPv4Unicast, "red", "192.0.2.0/26", "")},
				kernel: []fib.Route{
					{Table: 10, Prefix: pfx("192.0.2.0/26"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni10")}},
				},
				remotes: []fib.Remote{remote(vtepA, macA, 10)},
				origin:  []Path{redInject("192.0.2.0/26")},
				ops:     []string{"+remote vx10 10.254.0.2 02:00:00:00:00:0a", "+route 10 192.0.2.0/26 [10.254.0.2@l3vni10 onlink]"},
			},
		}},
		{"machine path and import in one batch", []step{
			{
				name: "both",
				push: []Update{
					machineUpdate("red", "192.0.2.0/26", "swp1", llHost1),
					type5("192.0.2.0/26", vtepA, macA, 10, "65001:10"),
				},
				kernel: []fib.Route{
					{Table: 10, Prefix: pfx("192.0.2.0/26"), NextHops: []fib.NextHop{{Addr: llHost1, Interface: "swp1"}}},
				},
				origin: []Path{redInject("192.0.2.0/26"), redExport("192.0.2.0/26")},
				ops:    []string{"+route 10 192.0.2.0/26 [fe80::a1@swp1]"},
			},
		}},
		{"router MAC change of a VTEP", []step{
			{
				name: "two prefixes from A",
				push: []Update{
					type5("203.0.113.0/24", vtepA, macA, 10, "65001:10"),
					type5("203.0.114.0/24", vtepA, macA, 10, "65001:10"),
				},
				kernel: []fib.Route{
					{Table: 10, Prefix: pfx("203.0.113.0/24"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni10")}},
					{Table: 10, Prefix: pfx("203.0.114.0/24"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni10")}},
				},
				remotes: []fib.Remote{remote(vtepA, macA, 10)},
				origin:  []Path{redInject("203.0.113.0/24"), redInject("203.0.114.0/24")},
			},
			{
				name: "A re-announces both with a new MAC: old entries out first",
				push: []Update{
					type5("203.0.113.0/24", vtepA, macA2, 10, "65001:10"),
					type5("203.0.114.0/24", vtepA, macA2, 10, "65001:10"),
				},
				kernel: []fib.Route{
					{Table: 10, Prefix: pfx("203.0.113.0/24"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni10")}},
					{Table: 10, Prefix: pfx("203.0.114.0/24"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni10")}},
				},
				remotes: []fib.Remote{remote(vtepA, macA2, 10)},
				origin:  []Path{redInject("203.0.113.0/24"), redInject("203.0.114.0/24")},
				ops:     []string{"-remote vx10 10.254.0.2 02:00:00:00:00:0a", "+remote vx10 10.254.0.2 02:00:00:00:00:aa"},
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, leaf())
			for _, s := range tt.steps {
				h.sp.push(t, s.push...)
				ops := h.fib.takeOps()
				if s.ops != nil {
					if diff := cmp.Diff(s.ops, ops, cmp.Comparer(func(a, b []string) bool { return slices.Equal(a, b) })); diff != "" {
						t.Errorf("%s: FIB ops (-want +got):\n%s", s.name, diff)
					}
				}
				if diff := cmp.Diff(s.kernel, h.fib.kernel(), cmpOpts); diff != "" {
					t.Errorf("%s: kernel (-want +got):\n%s", s.name, diff)
				}
				if diff := cmp.Diff(s.remotes, h.fib.remoteList(), cmpOpts); diff != "" {
					t.Errorf("%s: remotes (-want +got):\n%s", s.name, diff)
				}
				wantOrigin := append([]Path{network()}, s.origin...)
				if diff := cmp.Diff(wantOrigin, h.sp.originated(), cmpOpts); diff != "" {
					t.Errorf("%s: originated (-want +got):\n%s", s.name, diff)
				}
				// Nothing is advertised or withdrawn twice in one step.
				for _, c := range h.sp.takeCalls() {
					_, list, _ := strings.Cut(c, " ")
					items := strings.Split(list, ",")
					if len(slices.Compact(slices.Clone(items))) != len(items) {
						t.Errorf("%s: duplicate paths in %q", s.name, c)
					}
				}
			}
		})
	}
}

func TestExportFollowsVRFChange(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Desired)
		want   Path
	}{
		{"router MAC", func(d *Desired) { d.VRFs[1].RouterMAC = mustMAC("02:00:00:00:10:99") }, func() Path {
			p := redExport("192.0.2.0/26")
			p.RouterMAC = mustMAC("02:00:00:00:10:99")
			return p
		}()},
		{"VTEP", func(d *Desired) { d.VTEP = netip.MustParseAddr("10.254.0.99") }, func() Path {
			p := redExport("192.0.2.0/26")
			p.NextHop = netip.MustParseAddr("10.254.0.99")
			return p
		}()},
		{"VNI", func(d *Desired) { d.VRFs[1].VNI = 11 }, Path{
			Family: EVPN, Prefix: pfx("192.0.2.0/26"), NextHop: ourVTEP, RD: "10.255.0.1:11",
			RouteTargets: []string{"59905:11"}, RouterMAC: macRed, VNI: 11,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, leaf())
			h.sp.push(t, machineUpdate("red", "192.0.2.0/26", "swp1", llHost1))
			d := leaf()
			tt.mutate(&d)
			if err := h.r.Apply(t.Context(), d); err != nil {
				t.Fatal(err)
			}
			want := []Path{network(), tt.want}
			if diff := cmp.Diff(want, h.sp.originated(), cmpOpts); diff != "" {
				t.Errorf("originated (-want +got):\n%s", diff)
			}
			st, err := h.r.Status(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if st.EVPNExported != 1 {
				t.Errorf("EVPNExported = %d, want 1", st.EVPNExported)
			}
			// Idempotent afterwards.
			h.sp.takeCalls()
			if err := h.r.Apply(t.Context(), d); err != nil {
				t.Fatal(err)
			}
			if c := h.sp.takeCalls(); len(c) != 0 {
				t.Errorf("second Apply: calls %q", c)
			}
		})
	}
}

func TestSVIChangeMovesImports(t *testing.T) {
	h := newHarness(t, leaf())
	h.sp.push(t, type5("203.0.113.0/24", vtepA, macA, 10, "65001:10"))
	h.fib.takeOps()
	d := leaf()
	d.VRFs[1].SVI, d.VRFs[1].VLAN = "l3vni10b", 11
	if err := h.r.Apply(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	newRem := fib.Remote{VTEP: vtepA, RouterMAC: macA, SVI: "l3vni10b", VXLAN: "vx10", VLAN: 11}
	want := []fib.Route{{Table: 10, Prefix: pfx("203.0.113.0/24"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni10b")}}}
	if diff := cmp.Diff(want, h.fib.kernel(), cmpOpts); diff != "" {
		t.Errorf("kernel (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]fib.Remote{newRem}, h.fib.remoteList(), cmpOpts); diff != "" {
		t.Errorf("remotes (-want +got):\n%s", diff)
	}
}

func TestFailedRouteRetriedByResync(t *testing.T) {
	h := newHarness(t, leaf())
	bad := pfx("10.255.0.3/32")
	h.fib.setFail(bad, errInjected)
	h.sp.push(t,
		underlayUpdate("10.255.0.2/32", "fe80::1%swp31"),
		underlayUpdate("10.255.0.3/32", "fe80::1%swp31"),
	)
	st, err := h.r.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := Status{RoutesInstalled: 1, FailedCount: 1, Failed: []string{"10.255.0.3/32 table 254: injected failure"}}
	if diff := cmp.Diff(want, Status{RoutesInstalled: st.RoutesInstalled, FailedCount: st.FailedCount, Failed: st.Failed}); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	// The same best path again retries it (still failing).
	h.fib.takeOps()
	h.sp.push(t, underlayUpdate("10.255.0.3/32", "fe80::1%swp31"))
	if diff := cmp.Diff([]string{"!route 254 10.255.0.3/32 [fe80::1@swp31]"}, h.fib.takeOps()); diff != "" {
		t.Errorf("retry on the same path (-want +got):\n%s", diff)
	}
	// Resync retries and, the kernel being fine now, installs it.
	h.fib.setFail(bad, nil)
	if err := h.r.Resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantKernel := []fib.Route{
		{Table: MainTable, Prefix: pfx("10.255.0.2/32"), NextHops: []fib.NextHop{{Addr: llSpine1, Interface: "swp31"}}},
		{Table: MainTable, Prefix: bad, NextHops: []fib.NextHop{{Addr: llSpine1, Interface: "swp31"}}},
	}
	if diff := cmp.Diff(wantKernel, h.fib.kernel(), cmpOpts); diff != "" {
		t.Errorf("kernel after Resync (-want +got):\n%s", diff)
	}
	st, _ = h.r.Status(t.Context())
	if st.FailedCount != 0 || st.RoutesInstalled != 2 {
		t.Errorf("status after Resync: %d failed, %d installed; want 0, 2", st.FailedCount, st.RoutesInstalled)
	}
}

func TestFailedRouteWithdrawnIsForgotten(t *testing.T) {
	h := newHarness(t, leaf())
	bad := pfx("10.255.0.3/32")
	h.fib.setFail(bad, errInjected)
	h.sp.push(t, underlayUpdate("10.255.0.3/32", "fe80::1%swp31"))
	h.sp.push(t, withdrawal(IPv4Unicast, "", "10.255.0.3/32", ""))
	st, err := h.r.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.FailedCount != 0 {
		t.Errorf("a withdrawn route is still reported failed: %q", st.Failed)
	}
}

func TestFailedReplaceThenWithdrawRemovesOldRoute(t *testing.T) {
	// The kernel keeps the old route when a replace fails: a later
	// withdrawal must still remove it.
	h := newHarness(t, leaf())
	h.sp.push(t, underlayUpdate("10.255.0.3/32", "fe80::1%swp31"))
	h.fib.setFail(pfx("10.255.0.3/32"), errInjected)
	h.sp.push(t, underlayUpdate("10.255.0.3/32", "fe80::2%swp32"))
	h.fib.setFail(pfx("10.255.0.3/32"), nil)
	h.sp.push(t, withdrawal(IPv4Unicast, "", "10.255.0.3/32", ""))
	if k := h.fib.kernel(); len(k) != 0 {
		t.Errorf("kernel still holds %v", k)
	}
}

func TestResyncRemovesForeignRoutes(t *testing.T) {
	h := newHarness(t, leaf())
	h.sp.push(t,
		underlayUpdate("10.255.0.2/32", "fe80::1%swp31"),
		type5("203.0.113.0/24", vtepA, macA, 10, "65001:10"),
	)
	want, wantRem := h.fib.kernel(), h.fib.remoteList()
	// Left over by a previous run.
	h.fib.routes[RouteKey{Table: 10, Prefix: pfx("192.0.2.128/25")}] = fib.Route{Table: 10, Prefix: pfx("192.0.2.128/25"), NextHops: []fib.NextHop{{Addr: llHost1, Interface: "swp1"}}}
	h.fib.routes[RouteKey{Table: MainTable, Prefix: pfx("10.255.0.9/32")}] = fib.Route{Table: MainTable, Prefix: pfx("10.255.0.9/32")}
	stale := remote(vtepB, macB, 10)
	h.fib.remotes[remKey(stale)] = stale
	// And one of ours went missing.
	delete(h.fib.routes, RouteKey{Table: MainTable, Prefix: pfx("10.255.0.2/32")})
	if err := h.r.Resync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, h.fib.kernel(), cmpOpts); diff != "" {
		t.Errorf("kernel after Resync (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantRem, h.fib.remoteList(), cmpOpts); diff != "" {
		t.Errorf("remotes after Resync (-want +got):\n%s", diff)
	}
}

func TestNextHops(t *testing.T) {
	paths := []Path{
		{NextHop: netip.MustParseAddr("fe80::2%swp32"), Interface: "swp32"},
		{NextHop: netip.MustParseAddr("fe80::1%swp31"), Interface: "swp31"},
		{NextHop: netip.MustParseAddr("fe80::1%swp31"), Interface: "swp31"}, // duplicate
		{NextHop: netip.IPv4Unspecified()},                                  // unusable
		{},                                                                  // none
		{NextHop: netip.MustParseAddr("fe80::1"), Interface: "swp33"},       // same address, other link
	}
	want := []fib.NextHop{
		{Addr: llSpine1, Interface: "swp31"},
		{Addr: llSpine1, Interface: "swp33"},
		{Addr: llSpine2, Interface: "swp32"},
	}
	if diff := cmp.Diff(want, nextHops(paths), cmpOpts); diff != "" {
		t.Errorf("nextHops (-want +got):\n%s", diff)
	}
}

func TestVRFWithoutL3VNI(t *testing.T) {
	d := leaf()
	d.VRFs[0].SVI, d.VRFs[0].VXLAN, d.VRFs[0].RouterMAC = "", "", nil
	h := newHarness(t, d)
	h.sp.push(t,
		machineUpdate("blue", "198.51.100.0/26", "swp2", llHost1),
		type5("203.0.113.0/24", vtepA, macA, 20, "65001:20"),
	)
	want := []fib.Route{{Table: 20, Prefix: pfx("198.51.100.0/26"), NextHops: []fib.NextHop{{Addr: llHost1, Interface: "swp2"}}}}
	if diff := cmp.Diff(want, h.fib.kernel(), cmpOpts); diff != "" {
		t.Errorf("kernel (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Path{network()}, h.sp.originated(), cmpOpts); diff != "" {
		t.Errorf("originated: no export, no import without an L3VNI (-want +got):\n%s", diff)
	}
}

func TestVRFTableChangeMovesRoutes(t *testing.T) {
	h := newHarness(t, leaf())
	h.sp.push(t,
		machineUpdate("red", "192.0.2.0/26", "swp1", llHost1),
		type5("203.0.113.0/24", vtepA, macA, 10, "65001:10"),
	)
	d := leaf()
	d.VRFs[1].Table = 11
	if err := h.r.Apply(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	want := []fib.Route{
		{Table: 11, Prefix: pfx("192.0.2.0/26"), NextHops: []fib.NextHop{{Addr: llHost1, Interface: "swp1"}}},
		{Table: 11, Prefix: pfx("203.0.113.0/24"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni10")}},
	}
	if diff := cmp.Diff(want, h.fib.kernel(), cmpOpts); diff != "" {
		t.Errorf("kernel (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]fib.Remote{remote(vtepA, macA, 10)}, h.fib.remoteList(), cmpOpts); diff != "" {
		t.Errorf("remotes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Path{network(), redInject("203.0.113.0/24"), redExport("192.0.2.0/26")}, h.sp.originated(), cmpOpts); diff != "" {
		t.Errorf("originated (-want +got):\n%s", diff)
	}
	st, _ := h.r.Status(t.Context())
	if st.RoutesInstalled != 2 {
		t.Errorf("RoutesInstalled = %d, want 2", st.RoutesInstalled)
	}
}
