package bgp

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/metalfabric/fabric/bgp/fib"
)

func TestApplyFirstConfig(t *testing.T) {
	sp, f := newFakeSpeaker(), newFakeFIB()
	r := NewReconciler(sp, f, WithListenPort(-1))
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	if err := r.Apply(t.Context(), leaf()); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Start 4200000001",
		"AddVRF blue",
		"AddVRF red",
		"AddPeer swp31",
		"AddPeer swp32",
		"AddPeer blue/swp2",
		"AddPeer red/swp1",
		"Advertise ipv4-unicast 10.255.0.1/32",
	}
	if diff := cmp.Diff(want, sp.takeCalls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	wantGlobal := Global{ASN: testASN, RouterID: routerID, ListenPort: -1, Multipath: true, GracefulRestart: GracefulRestartTime, SelectionDeferral: SelectionDeferral}
	if diff := cmp.Diff(wantGlobal, sp.global, cmpOpts); diff != "" {
		t.Errorf("global (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Path{{Family: IPv4Unicast, Prefix: pfx("10.255.0.1/32")}}, sp.originated(), cmpOpts); diff != "" {
		t.Errorf("originated (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(leaf().peers(), slices.SortedFunc(func(yield func(Peer) bool) {
		for _, p := range sp.peers {
			if !yield(p) {
				return
			}
		}
	}, func(a, b Peer) int { return comparePeerKey(a.Key(), b.Key()) }), cmpOpts); diff != "" {
		t.Errorf("speaker peers (-want +got):\n%s", diff)
	}
	if o := f.takeOps(); len(o) != 0 {
		t.Errorf("Apply touched the FIB without any best path: %q", o)
	}
}

func TestApplyIdempotent(t *testing.T) {
	h := newHarness(t, leaf())
	// With routes, exports and imports in place too.
	h.sp.push(t,
		underlayUpdate("10.255.0.2/32", "fe80::1%swp31"),
		machineUpdate("red", "192.0.2.0/26", "swp1", llHost1),
		type5("203.0.113.0/24", vtepA, macA, 10, "65001:10"),
	)
	h.sp.takeCalls()
	h.fib.takeOps()
	for i := range 3 {
		if err := h.r.Apply(t.Context(), leaf()); err != nil {
			t.Fatal(err)
		}
		if c := h.sp.takeCalls(); len(c) != 0 {
			t.Errorf("Apply #%d of the same config: speaker calls %q, want none", i+2, c)
		}
		if o := h.fib.takeOps(); len(o) != 0 {
			t.Errorf("Apply #%d of the same config: FIB ops %q, want none", i+2, o)
		}
	}
}

func TestApplyAddsBeforeDeletes(t *testing.T) {
	h := newHarness(t, leaf())
	d := leaf()
	d.Underlay = []UnderlayPeer{{Interface: "swp33"}}
	d.Networks = []netip.Prefix{pfx("10.255.0.11/32")}
	d.VRFs = []TenantVRF{{
		Name: "green", VNI: 30, Table: 30, SVI: "l3vni30", VXLAN: "vx30", VLAN: 30, RouterMAC: macRed,
		Machines: []MachinePeer{{Interface: "swp3"}},
	}}
	if err := h.r.Apply(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	calls := h.sp.takeCalls()
	lastAdd, firstDel := -1, len(calls)
	for i, c := range calls {
		switch {
		case strings.HasPrefix(c, "Add"), strings.HasPrefix(c, "Advertise"), strings.HasPrefix(c, "UpdatePeer"):
			lastAdd = i
		case strings.HasPrefix(c, "Delete"), strings.HasPrefix(c, "Withdraw"):
			firstDel = min(firstDel, i)
		}
	}
	if lastAdd > firstDel {
		t.Errorf("a delete came before an add: %q", calls)
	}
	wantSet := []string{
		"AddPeer green/swp3", "AddPeer swp33", "AddVRF green", "Advertise ipv4-unicast 10.255.0.11/32",
		"DeletePeer blue/swp2", "DeletePeer red/swp1", "DeletePeer swp31", "DeletePeer swp32",
		"DeleteVRF blue", "DeleteVRF red", "Withdraw ipv4-unicast 10.255.0.1/32",
	}
	if diff := cmp.Diff(wantSet, slices.Sorted(slices.Values(calls))); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	// A VRF's sessions go before the VRF; the new VRF comes before its
	// sessions.
	for _, pair := range [][2]string{{"DeletePeer red/swp1", "DeleteVRF red"}, {"DeletePeer blue/swp2", "DeleteVRF blue"}, {"AddVRF green", "AddPeer green/swp3"}} {
		if slices.Index(calls, pair[0]) > slices.Index(calls, pair[1]) {
			t.Errorf("%q came after %q: %q", pair[0], pair[1], calls)
		}
	}
}

func TestApplySessionChanges(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Desired)
		want   []string
	}{
		{"machine allowance changes in place", func(d *Desired) {
			d.VRFs[1].Machines[0].Allowed = append(d.VRFs[1].Machines[0].Allowed, pfx("192.0.3.0/24"))
		}, []string{"UpdatePeer red/swp1"}},
		{"max prefixes changes in place", func(d *Desired) { d.VRFs[1].Machines[0].MaxPrefixes = 20 }, []string{"UpdatePeer red/swp1"}},
		{"allowance nil -> reject all in place", func(d *Desired) { d.VRFs[1].Machines[0].Allowed = nil }, []string{"UpdatePeer red/swp1"}},
		{"description changes in place", func(d *Desired) { d.Underlay[0].Description = "spine1b" }, []string{"UpdatePeer swp31"}},
		{"underlay ASN change resets", func(d *Desired) { d.Underlay[1].ASN = 65100 }, []string{"DeletePeer swp32", "AddPeer swp32"}},
		{"machine moves to another VRF", func(d *Desired) {
			d.VRFs[0].Machines = append(d.VRFs[0].Machines, d.VRFs[1].Machines[0])
			d.VRFs[1].Machines = nil
		}, []string{"AddPeer blue/swp1", "DeletePeer red/swp1"}},
		{"underlay session removed", func(d *Desired) { d.Underlay = d.Underlay[:1] }, []string{"DeletePeer swp32"}},
		{"underlay session numbered", func(d *Desired) { d.Underlay[1].Address = netip.MustParseAddr("10.254.0.1") }, []string{"AddPeer 10.254.0.1", "DeletePeer swp32"}},
		{"network added", func(d *Desired) { d.Networks = append(d.Networks, pfx("10.255.1.0/24")) }, []string{"Advertise ipv4-unicast 10.255.1.0/24"}},
		{"network removed", func(d *Desired) { d.Networks = nil }, []string{"Withdraw ipv4-unicast 10.255.0.1/32"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, leaf())
			d := leaf()
			tt.mutate(&d)
			if err := h.r.Apply(t.Context(), d); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, h.sp.takeCalls()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			// The speaker holds exactly the new sessions.
			for _, p := range d.peers() {
				got, ok := h.sp.peers[p.Key()]
				if !ok || !samePeer(got, p) {
					t.Errorf("speaker session %s = %+v, want %+v", p.Key(), got, p)
				}
			}
			if len(h.sp.peers) != len(d.peers()) {
				t.Errorf("speaker has %d sessions, want %d", len(h.sp.peers), len(d.peers()))
			}
			if err := h.r.Apply(t.Context(), d); err != nil {
				t.Fatal(err)
			}
			if c := h.sp.takeCalls(); len(c) != 0 {
				t.Errorf("second Apply: calls %q", c)
			}
		})
	}
}

func TestApplyFailedCallIsRetried(t *testing.T) {
	h := newHarness(t, leaf())
	d := leaf()
	d.Underlay = append(d.Underlay, UnderlayPeer{Interface: "swp33"})
	h.sp.fail["AddPeer"] = errInjected
	if err := h.r.Apply(t.Context(), d); err == nil || !strings.Contains(err.Error(), "adding BGP session swp33") {
		t.Errorf("Apply: %v, want the failed session", err)
	}
	delete(h.sp.fail, "AddPeer")
	h.sp.takeCalls()
	if err := h.r.Apply(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"AddPeer swp33"}, h.sp.takeCalls()); diff != "" {
		t.Errorf("retry calls (-want +got):\n%s", diff)
	}
}

func TestApplyASNChangeRestarts(t *testing.T) {
	h := newHarness(t, leaf())
	h.sp.push(t, underlayUpdate("10.255.0.2/32", "fe80::1%swp31"))
	kernel := h.fib.kernel()
	h.fib.takeOps()
	d := leaf()
	d.ASN = 65010
	if err := h.r.Apply(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Stop", "Start 65010", "AddVRF blue", "AddVRF red", "AddPeer swp31", "AddPeer swp32",
		"AddPeer blue/swp2", "AddPeer red/swp1", "Advertise ipv4-unicast 10.255.0.1/32",
	}
	if diff := cmp.Diff(want, h.sp.takeCalls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if o := h.fib.takeOps(); len(o) != 0 {
		t.Errorf("restart touched the FIB: %q", o)
	}
	if diff := cmp.Diff(kernel, h.fib.kernel(), cmpOpts); diff != "" {
		t.Errorf("kernel routes changed over the restart (-want +got):\n%s", diff)
	}
	if h.sp.vrfs["red"].ExportRTs[0] != "65010:10" {
		t.Errorf("red export RT %v, want 65010:10", h.sp.vrfs["red"].ExportRTs)
	}
	// The new watch works.
	h.sp.push(t, underlayUpdate("10.255.0.3/32", "fe80::2%swp32"))
	if got := len(h.fib.kernel()); got != 2 {
		t.Errorf("kernel holds %d routes after the restart, want 2", got)
	}
}

func TestVRFRemoved(t *testing.T) {
	h := newHarness(t, leaf())
	h.sp.push(t,
		machineUpdate("red", "192.0.2.0/26", "swp1", llHost1),
		type5("203.0.113.0/24", vtepA, macA, 10, "65001:10"),
		type5("203.0.113.0/24", vtepA, macA, 20, "65001:20"), // same prefix into blue too
		machineUpdate("blue", "198.51.100.0/25", "swp2", llHost1),
	)
	h.sp.takeCalls()
	h.fib.takeOps()
	if err := h.r.Apply(t.Context(), withoutVRF(leaf(), "red")); err != nil {
		t.Fatal(err)
	}
	calls := h.sp.takeCalls()
	wantCalls := []string{
		"Withdraw ipv4-unicast red/203.0.113.0/24,l2vpn-evpn [10.255.0.1:10]192.0.2.0/26",
		"DeletePeer red/swp1",
		"DeleteVRF red",
	}
	if diff := cmp.Diff(wantCalls, calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	wantOps := []string{
		"-route 10 192.0.2.0/26",
		"-route 10 203.0.113.0/24",
		"-remote vx10 10.254.0.2 02:00:00:00:00:0a",
	}
	if diff := cmp.Diff(wantOps, h.fib.takeOps()); diff != "" {
		t.Errorf("FIB ops (-want +got):\n%s", diff)
	}
	// Blue is untouched.
	wantKernel := []fib.Route{
		{Table: 20, Prefix: pfx("198.51.100.0/25"), NextHops: []fib.NextHop{{Addr: llHost1, Interface: "swp2"}}},
		{Table: 20, Prefix: pfx("203.0.113.0/24"), NextHops: []fib.NextHop{onlink(vtepA, "l3vni20")}},
	}
	if diff := cmp.Diff(wantKernel, h.fib.kernel(), cmpOpts); diff != "" {
		t.Errorf("kernel (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]fib.Remote{remote(vtepA, macA, 20)}, h.fib.remoteList(), cmpOpts); diff != "" {
		t.Errorf("remotes (-want +got):\n%s", diff)
	}
	var got []string
	for _, p := range h.sp.originated() {
		got = append(got, describe([]Path{p}))
	}
	want := []string{
		"ipv4-unicast 10.255.0.1/32",
		"ipv4-unicast blue/203.0.113.0/24",
		"l2vpn-evpn [10.255.0.1:20]198.51.100.0/25",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("originated (-want +got):\n%s", diff)
	}
	st, err := h.r.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.RoutesInstalled != 2 || st.EVPNExported != 1 || st.EVPNImported != 1 {
		t.Errorf("status %+v, want 2 routes, 1 export, 1 import", st)
	}

	// Adding it back brings back what the RIB still holds for it (the
	// import; the machine session is new and has announced nothing).
	if err := h.r.Apply(t.Context(), leaf()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]fib.Remote{remote(vtepA, macA, 10), remote(vtepA, macA, 20)}, h.fib.remoteList(), cmpOpts); diff != "" {
		t.Errorf("remotes after re-adding red (-want +got):\n%s", diff)
	}
}

func TestVRFAdded(t *testing.T) {
	d := withoutVRF(leaf(), "red")
	h := newHarness(t, d)
	// A type-5 route for red's VNI arrives before red exists: ignored.
	h.sp.push(t, type5("203.0.113.0/24", vtepA, macA, 10, "65001:10"))
	if o := h.fib.takeOps(); len(o) != 0 {
		t.Errorf("import for an unknown VNI: FIB ops %q", o)
	}
	if err := h.r.Apply(t.Context(), leaf()); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"+remote vx10 10.254.0.2 02:00:00:00:00:0a",
		"+route 10 203.0.113.0/24 [10.254.0.2@l3vni10 onlink]",
	}
	if diff := cmp.Diff(want, h.fib.takeOps()); diff != "" {
		t.Errorf("FIB ops (-want +got):\n%s", diff)
	}
	calls := h.sp.takeCalls()
	if !slices.Contains(calls, "Advertise ipv4-unicast red/203.0.113.0/24") {
		t.Errorf("import not handed to red's machines: %q", calls)
	}
	if slices.Index(calls, "AddVRF red") > slices.Index(calls, "Advertise ipv4-unicast red/203.0.113.0/24") {
		t.Errorf("inject before the VRF exists: %q", calls)
	}
}

func TestLinkDown(t *testing.T) {
	tests := []struct {
		iface string
		want  []string
	}{
		{"swp31", []string{"ResetPeer swp31"}},
		{"swp1", []string{"ResetPeer red/swp1"}},
		{"swp9", nil},
	}
	for _, tt := range tests {
		t.Run(tt.iface, func(t *testing.T) {
			h := newHarness(t, leaf())
			h.r.LinkDown(t.Context(), tt.iface)
			if diff := cmp.Diff(tt.want, h.sp.takeCalls()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNumberedUnderlayPeer: a numbered underlay session is a speaker peer
// keyed by its address, with the unnumbered one's families, graceful
// restart and passive flag, and is reset when its port loses carrier.
func TestNumberedUnderlayPeer(t *testing.T) {
	d := leaf()
	d.Underlay[0].Address = netip.MustParseAddr("10.254.0.1")
	d.Underlay[0].Passive = true
	h := newHarness(t, d)
	want := Peer{Address: netip.MustParseAddr("10.254.0.1"), ASN: d.Underlay[0].ASN, Families: []Family{IPv4Unicast, EVPN},
		GracefulRestart: true, Description: d.Underlay[0].Description, Passive: true}
	if diff := cmp.Diff(want, h.sp.peers[PeerKey{Name: "10.254.0.1"}], cmpOpts); diff != "" {
		t.Errorf("speaker peer (-want +got):\n%s", diff)
	}
	if _, ok := h.sp.peers[PeerKey{Name: "swp31"}]; ok {
		t.Errorf("the numbered session also has an unnumbered peer on swp31")
	}
	h.sp.takeCalls()
	h.r.LinkDown(t.Context(), "swp31")
	if diff := cmp.Diff([]string{"ResetPeer 10.254.0.1"}, h.sp.takeCalls()); diff != "" {
		t.Errorf("link down calls (-want +got):\n%s", diff)
	}
}

func TestStopKeepsKernelRoutes(t *testing.T) {
	h := newHarness(t, leaf())
	h.sp.push(t,
		underlayUpdate("10.255.0.2/32", "fe80::1%swp31"),
		type5("203.0.113.0/24", vtepA, macA, 10, "65001:10"),
	)
	h.fib.takeOps()
	h.sp.takeCalls()
	if err := h.r.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"Stop"}, h.sp.takeCalls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if o := h.fib.takeOps(); len(o) != 0 {
		t.Errorf("Stop touched the FIB: %q", o)
	}
	if len(h.fib.kernel()) != 2 || len(h.fib.remoteList()) != 1 {
		t.Errorf("kernel after Stop: %v %v", h.fib.kernel(), h.fib.remoteList())
	}
	// Stopped: a second Stop does nothing; a Resync must not wipe the
	// routes graceful restart keeps forwarding.
	if err := h.r.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c := h.sp.takeCalls(); len(c) != 0 {
		t.Errorf("second Stop: calls %q", c)
	}
	if err := h.r.Resync(t.Context()); err == nil {
		t.Errorf("Resync of a stopped reconciler succeeded")
	}
	if len(h.fib.kernel()) != 2 || h.fib.syncCount() != 0 {
		t.Errorf("Resync after Stop removed the kept routes: %v", h.fib.kernel())
	}
	// Starting again works (new watch).
	if err := h.r.Apply(t.Context(), leaf()); err != nil {
		t.Fatal(err)
	}
	h.sp.push(t, underlayUpdate("10.255.0.2/32", "fe80::1%swp31"))
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSweepOnceEstablished(t *testing.T) {
	stale := fib.Route{Table: MainTable, Prefix: pfx("10.255.9.9/32"), NextHops: []fib.NextHop{{Addr: llSpine1, Interface: "swp31"}}}
	sp, f := newFakeSpeaker(), newFakeFIB()
	f.routes[RouteKey{Table: MainTable, Prefix: stale.Prefix}] = stale // left by a previous run
	sp.setStates(PeerState{Key: PeerKey{Name: "swp31"}, State: StateEstablished}, PeerState{Key: PeerKey{Name: "swp32"}, State: StateActive})
	r := NewReconciler(sp, f, WithListenPort(-1), WithSweep(20*time.Millisecond, time.Hour))
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	if err := r.Apply(t.Context(), withoutVRF(withoutVRF(leaf(), "red"), "blue")); err != nil {
		t.Fatal(err)
	}
	sp.push(t, underlayUpdate("10.255.0.2/32", "fe80::1%swp31"))
	// Not every session is up: it keeps polling and does not sweep.
	waitFor(t, "two polls of the sessions", func() bool {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		return sp.peersCalls >= 2
	})
	if n := f.syncCount(); n != 0 {
		t.Fatalf("swept %d times while a session is down", n)
	}
	sp.setStates(PeerState{Key: PeerKey{Name: "swp31"}, State: StateEstablished}, PeerState{Key: PeerKey{Name: "swp32"}, State: StateEstablished})
	waitFor(t, "the sweep", func() bool { return f.syncCount() >= 1 })
	want := []fib.Route{{Table: MainTable, Prefix: pfx("10.255.0.2/32"), NextHops: []fib.NextHop{{Addr: llSpine1, Interface: "swp31"}}}}
	if diff := cmp.Diff(want, f.kernel(), cmpOpts); diff != "" {
		t.Errorf("kernel after the sweep (-want +got):\n%s", diff)
	}
	// Once: the sweeper stops polling.
	sp.mu.Lock()
	polls := sp.peersCalls
	sp.mu.Unlock()
	// A further Resync from outside is still possible; the sweeper's own
	// goroutine is done, which Stop (in Cleanup) must not hang on.
	if err := r.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.peersCalls != polls || f.syncCount() != 1 {
		t.Errorf("after the sweep: %d more polls, %d syncs; want none and 1", sp.peersCalls-polls, f.syncCount())
	}
}

func TestSweepAtTheLatestAfterMax(t *testing.T) {
	sp, f := newFakeSpeaker(), newFakeFIB()
	f.routes[RouteKey{Table: 10, Prefix: pfx("192.0.2.0/24")}] = fib.Route{Table: 10, Prefix: pfx("192.0.2.0/24")}
	sp.setStates(PeerState{Key: PeerKey{Name: "swp31"}, State: StateConnect})
	r := NewReconciler(sp, f, WithListenPort(-1), WithSweep(time.Hour, 10*time.Millisecond))
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	if err := r.Apply(t.Context(), leaf()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sweep", func() bool { return f.syncCount() >= 1 })
	if k := f.kernel(); len(k) != 0 {
		t.Errorf("stale route not swept: %v", k)
	}
}

func TestSweepWaitsForQuiet(t *testing.T) {
	sp, f := newFakeSpeaker(), newFakeFIB()
	sp.setStates(PeerState{Key: PeerKey{Name: "swp31"}, State: StateEstablished})
	r := NewReconciler(sp, f, WithListenPort(-1), WithSweep(1100*time.Millisecond, time.Hour))
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	if err := r.Apply(t.Context(), withoutVRF(withoutVRF(leaf(), "red"), "blue")); err != nil {
		t.Fatal(err)
	}
	// Sessions are up, but best paths keep changing (a restarted peer
	// still sending its table): no sweep.
	start := time.Now()
	for i := 0; time.Since(start) < 3300*time.Millisecond; i++ {
		hop := "fe80::1%swp31"
		if i%2 == 1 {
			hop = "fe80::2%swp31"
		}
		sp.push(t, underlayUpdate("10.255.0.2/32", hop))
		if n := f.syncCount(); n != 0 {
			t.Fatalf("swept after %v while best paths were still changing", time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, "the sweep once quiet", func() bool { return f.syncCount() >= 1 })
}

// A reconciler told that the kernel kept a previous run's routes starts the
// speaker restarting (RFC 4724), once: a later restart of the speaker (an
// ASN change) is not a graceful restart any more.
func TestApplyRestarting(t *testing.T) {
	sp := newFakeSpeaker()
	r := NewReconciler(sp, newFakeFIB(), WithListenPort(-1), WithRestarting(true))
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	ctx := t.Context()
	d := leaf()
	if err := r.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	if !sp.global.Restarting || sp.global.SelectionDeferral != SelectionDeferral {
		t.Errorf("first start: Restarting=%t SelectionDeferral=%v, want true %v", sp.global.Restarting, sp.global.SelectionDeferral, SelectionDeferral)
	}
	d.ASN++
	if err := r.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	if sp.global.Restarting {
		t.Error("the speaker restarted for an ASN change still claims a graceful restart")
	}
}

// A restarting reconciler re-originates, before any session is added, the
// exports and imports the kernel shows from the previous run; those no best
// path confirms are withdrawn by the sweep, those confirmed stay untouched.
func TestRestartAdoptsOriginations(t *testing.T) {
	sp, f := newFakeSpeaker(), newFakeFIB()
	machine := netip.MustParseAddr("fe80::1")
	remote := netip.MustParseAddr("10.255.0.2")
	// The previous run's kernel: a machine route in red (via swp1) and an
	// import in red (via the SVI), plus one more machine route nobody will
	// announce again.
	f.routes[RouteKey{Table: 10, Prefix: pfx("192.0.2.1/32")}] = fib.Route{Table: 10, Prefix: pfx("192.0.2.1/32"), NextHops: []fib.NextHop{{Addr: machine, Interface: "swp1"}}}
	f.routes[RouteKey{Table: 10, Prefix: pfx("192.0.2.9/32")}] = fib.Route{Table: 10, Prefix: pfx("192.0.2.9/32"), NextHops: []fib.NextHop{{Addr: machine, Interface: "swp1"}}}
	f.routes[RouteKey{Table: 10, Prefix: pfx("203.0.113.5/32")}] = fib.Route{Table: 10, Prefix: pfx("203.0.113.5/32"), NextHops: []fib.NextHop{{Addr: remote, Interface: "l3vni10", OnLink: true}}}
	r := NewReconciler(sp, f, WithListenPort(-1), WithRestarting(true), WithSweep(10*time.Millisecond, time.Hour))
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	if err := r.Apply(t.Context(), leaf()); err != nil {
		t.Fatal(err)
	}
	calls := sp.takeCalls()
	// The underlay sessions come first (a GR helper reconnecting early must
	// not be refused), then the VRFs and the re-originations, then the
	// machine sessions; the speaker holds every update back until its
	// peers' End-of-RIB anyway.
	underlay := slices.Index(calls, "AddPeer swp31")
	firstVRF := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, "AddVRF") })
	machinePeer := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, "AddPeer") && strings.Contains(c, "/") })
	adopted := slices.IndexFunc(calls, func(c string) bool { return strings.Contains(c, "l2vpn-evpn") })
	if underlay != 1 || firstVRF < underlay || adopted < firstVRF || machinePeer < adopted {
		t.Fatalf("calls %q: want Start, the underlay sessions, the VRFs, the re-originations, then the machine sessions", calls)
	}
	want := []Path{
		{Family: EVPN, Prefix: pfx("192.0.2.1/32"), NextHop: ourVTEP, RD: RD(routerID, 10), RouteTargets: []string{RT(testASN, 10)}, RouterMAC: macRed, VNI: 10},
		{Family: EVPN, Prefix: pfx("192.0.2.9/32"), NextHop: ourVTEP, RD: RD(routerID, 10), RouteTargets: []string{RT(testASN, 10)}, RouterMAC: macRed, VNI: 10},
		{Family: IPv4Unicast, Prefix: pfx("10.255.0.1/32")},
		{Family: IPv4Unicast, VRF: "red", Prefix: pfx("203.0.113.5/32"), LocalPref: importLocalPref},
	}
	if diff := cmp.Diff(sortPaths(want), sortPaths(sp.originated()), cmpOpts); diff != "" {
		t.Errorf("originated after the restart (-want +got):\n%s", diff)
	}
	kernelBefore := f.kernel()
	// The speaker reports our own re-originations as best paths (GoBGP
	// does), and an import of the machine's prefix from another leaf
	// arrives before the machine's session is back: nothing adopted may be
	// withdrawn, and the kernel must not move (this withdrew the import
	// handed to the machines, which dropped it on our End-of-RIB).
	var own []Update
	for _, p := range sp.originated() {
		p.Local = true
		own = append(own, Update{Family: p.Family, VRF: p.VRF, RD: p.RD, Prefix: p.Prefix, Paths: []Path{p}})
	}
	sp.push(t, own...)
	sp.push(t, type5("192.0.2.1/32", netip.MustParseAddr("10.255.0.3"), macRed, 10, RT(4200000003, 10)))
	if diff := cmp.Diff(sortPaths(want), sortPaths(sp.originated()), cmpOpts); diff != "" {
		t.Errorf("originated while the sessions come back (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(kernelBefore, f.kernel(), cmpOpts); diff != "" {
		t.Errorf("kernel while the sessions come back (-want +got):\n%s", diff)
	}
	// The machine announces 192.0.2.1 again, the remote VTEP its prefix;
	// 192.0.2.9 is gone. All sessions up: the sweep withdraws 192.0.2.9.
	sp.push(t, machineUpdate("red", "192.0.2.1/32", "swp1", machine), type5("203.0.113.5/32", remote, macRed, 10, RT(4200000002, 10)))
	sp.setStates(PeerState{Key: PeerKey{Name: "swp31"}, State: StateEstablished})
	deadline := time.Now().Add(10 * time.Second)
	for slices.ContainsFunc(sp.originated(), func(p Path) bool { return p.Prefix == pfx("192.0.2.9/32") }) {
		if time.Now().After(deadline) {
			t.Fatal("the sweep did not withdraw the unconfirmed export 192.0.2.9/32")
		}
		time.Sleep(20 * time.Millisecond)
	}
	want = slices.DeleteFunc(want, func(p Path) bool { return p.Prefix == pfx("192.0.2.9/32") })
	// The other leaf's import of 192.0.2.1 is handed to the machines too.
	want = append(want, Path{Family: IPv4Unicast, VRF: "red", Prefix: pfx("192.0.2.1/32"), LocalPref: importLocalPref})
	if diff := cmp.Diff(sortPaths(want), sortPaths(sp.originated()), cmpOpts); diff != "" {
		t.Errorf("originated after the sweep (-want +got):\n%s", diff)
	}
}

func sortPaths(ps []Path) []Path {
	return slices.SortedFunc(slices.Values(ps), func(a, b Path) int {
		return strings.Compare(string(a.Family)+a.VRF+a.Prefix.String(), string(b.Family)+b.VRF+b.Prefix.String())
	})
}
