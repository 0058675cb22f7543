package e2e

import (
	"context"
	"fmt"
	"github.com/metalfabric/fabric/fabric/fabrictest"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/testing/protocmp"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/integration/scenario"
)

// quiet is how long the test watches a kernel to see that nothing changes.
const quiet = 3 * time.Second

// TestMiniLab brings up containerlab/mini-lab.clab.yml and walks one
// allocation from the API into the leaves' kernels, then proves that agent
// and controller restarts leave the kernel alone.
func TestMiniLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the mini-lab needs root (network namespaces, veth, VRFs)")
	}
	_, probe := fabrictest.NewNetns(t)
	fabrictest.RequireVRF(t, probe) // FABRIC_NO_VM=1 on a kernel without VRFs

	repo := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 22*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m, err := scenario.Start(ctx, filepath.Join(repo, "containerlab", "mini-lab.clab.yml"), filepath.Join(repo, "bin"), testWriter{t}, log)
	if err != nil {
		t.Fatalf("starting mini-lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"controller", "leaf01", "leaf02", "spine01", "spine02"} {
				if b, err := os.ReadFile(m.Lab.NodeLog(n)); err == nil {
					t.Logf("=== %s console.log (tail) ===\n%s", n, tail(string(b), 40))
				}
			}
		}
		if err := m.Close(context.Background()); err != nil {
			t.Errorf("tearing the lab down: %v", err)
		}
	})
	labUp := time.Now()
	api := m.API
	if err := m.WaitRegistered(ctx, 2*time.Minute, m.Switches()...); err != nil {
		t.Fatalf("agents did not register: %v", err)
	}
	if _, err := api.CreateNetwork(ctx, &apiv1.CreateNetworkRequest{Name: "tenant-a", Prefix: "10.0.1.0/24"}); err != nil {
		t.Fatal(err)
	}
	// Nobody cables the machines: the controller learns the wiring from the
	// leaves' LLDP neighbours (the machines run lldpd).
	for _, machine := range []string{"machine01", "machine02"} {
		if err := m.WaitWiring(ctx, scenario.WiringTimeout, machine, scenario.Cabling[machine]); err != nil {
			t.Fatalf("learned wiring: %v", err)
		}
		t.Logf("wiring of %s learned %s after the lab came up", machine, time.Since(labUp).Round(time.Millisecond))
		got, err := api.GetMachine(ctx, &apiv1.GetMachineRequest{Name: machine})
		if err != nil {
			t.Fatalf("GetMachine %s: %v", machine, err)
		}
		if got.GetManual() || !scenario.SameConnections(got.GetLearned(), scenario.Cabling[machine]) {
			t.Errorf("GetMachine %s: manual=%t learned=%v; want learned %v, not manual", machine, got.GetManual(),
				scenario.FormatConnections(got.GetLearned()), scenario.FormatConnections(scenario.Cabling[machine]))
		}
		if got.GetLiveness() != apiv1.Liveness_LIVENESS_ALIVE {
			t.Errorf("GetMachine %s: liveness %v, want alive", machine, got.GetLiveness())
		}
	}
	// The switches see each other too: port ID = the peer's interface name.
	if got, want := neighborsOn(t, ctx, m, "leaf01", "swp31"), []string{"spine01/swp1"}; !slices.Equal(got, want) {
		t.Errorf("leaf01 swp31 neighbours = %v, want %v", got, want)
	}
	if got := neighborsOn(t, ctx, m, "leaf01", "eth0"); len(got) != 0 {
		t.Errorf("leaf01 has neighbours on its management port: %v", got)
	}
	vni, err := m.NetworkVNI(ctx, "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	vrf := fmt.Sprintf("vrf%d", vni)

	for _, machine := range []string{"machine01", "machine02"} {
		lat, err := m.AllocateAndMeasure(ctx, machine, "tenant-a")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("allocate %s -> kernel: %v", machine, lat)
		if err := m.CheckPorts(scenario.Cabling[machine], vrf, vni); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitConverged(ctx, time.Minute, machine); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("leaves hold the L3VNI", func(t *testing.T) {
		for _, leaf := range []string{"leaf01", "leaf02"} {
			if err := m.CheckL3VNI(ctx, leaf, vni, vrf); err != nil {
				t.Error(err)
			}
		}
	})

	// Routing: FRR machines peer with the leaves, same-tenant pings cross
	// the fabric over VXLAN, other tenants are unreachable (RoutingDemo
	// checks all of it with real pings).
	routingOK := t.Run("routing: ping across leaves, tenants isolated", func(t *testing.T) {
		if err := m.RoutingDemo(ctx); err != nil {
			t.Fatal(err)
		}
	})

	// Firewall: fw01 serves tenant-a towards the internet network
	// (FirewallDemo: SNAT to the egress IP, a denied port); the policy is
	// removed afterwards so the subtests below see the fabric as before.
	t.Run("firewall: tenant to internet through fw01 with SNAT and a denied port", func(t *testing.T) {
		if !routingOK {
			t.Skip("routing is not up")
		}
		if err := m.FirewallDemo(ctx); err != nil {
			t.Fatal(err)
		}
		if err := m.RemoveFirewallPolicy(ctx, "tenant-a"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("machine session rejects prefixes outside its allowance", func(t *testing.T) {
		if !routingOK {
			t.Skip("routing is not up")
		}
		ip3 := machineIP(t, ctx, m, "machine03")
		bad := []netip.Prefix{
			netip.PrefixFrom(ip3, 32),                 // another tenant's /32
			netip.MustParsePrefix("203.0.113.128/25"), // a more specific of the internet network exit01 is in
			netip.MustParsePrefix("0.0.0.0/0"),        // a default route
		}
		vrf := fmt.Sprintf("vrf%d", vni)
		// The counters before, once two status reports (every 2 s) agree:
		// a status from before the firewall subtest removed its default
		// route would still count machine01's echo of it as rejected.
		var before *apiv1.BgpSession
		for i := 0; ; i++ {
			s, err := m.Session(ctx, "leaf01", vrf, "swp1")
			if err != nil {
				t.Fatal(err)
			}
			if before != nil && s.GetRejected() == before.GetRejected() && s.GetAccepted() == before.GetAccepted() || i == 10 {
				before = s
				break
			}
			before = s
			time.Sleep(2500 * time.Millisecond)
		}
		if err := m.FRRNetworks(ctx, "machine01", scenario.MachineASN(1), false, bad...); err != nil {
			t.Fatal(err)
		}
		defer m.FRRNetworks(ctx, "machine01", scenario.MachineASN(1), true, bad...)
		deadline := time.Now().Add(2 * time.Minute)
		for {
			s, err := m.Session(ctx, "leaf01", vrf, "swp1")
			if err != nil {
				t.Fatal(err)
			}
			if s.GetRejected() >= before.GetRejected()+uint64(len(bad)) {
				t.Logf("leaf01 swp1 (machine01): received %d, accepted %d, rejected %d (was %d)", s.GetReceived(), s.GetAccepted(), s.GetRejected(), before.GetRejected())
				if s.GetAccepted() != before.GetAccepted() {
					t.Errorf("accepted prefixes changed from %d to %d", before.GetAccepted(), s.GetAccepted())
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("leaf01 swp1 rejected %d prefixes, want at least %d", s.GetRejected(), before.GetRejected()+uint64(len(bad)))
			}
			time.Sleep(500 * time.Millisecond)
		}
		for _, p := range bad {
			for _, leaf := range []string{"leaf01", "leaf02"} {
				key := p.String()
				if p.Bits() == 0 {
					key = "default"
				}
				if r, found, err := m.Route(ctx, leaf, vni, key); err != nil || found {
					t.Errorf("%s table %d has %s (%v, err %v): the allowance did not hold", leaf, vni, p, r, err)
				}
			}
		}
	})

	// The fault suite: a continuous ping between machine01 and machine02,
	// each left with one leaf so every packet crosses leaf01, the spines
	// and VXLAN, while one piece at a time fails.
	fault := func(name string, want func(t *testing.T, st scenario.PingStats), disrupt func(t *testing.T)) {
		t.Run("fault: "+name, func(t *testing.T) {
			if !routingOK {
				t.Skip("routing is not up")
			}
			ip1, ip2 := machineIP(t, ctx, m, "machine01"), machineIP(t, ctx, m, "machine02")
			if err := m.CutMachineLegs(ctx, false); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := m.RestoreMachineLegs(ctx); err != nil {
					t.Errorf("restoring the machines' links: %v", err)
				}
			}()
			if err := m.WaitAcrossLeaves(ctx, vni, ip1, ip2); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			res := make(chan scenario.PingStats, 1)
			go func() {
				st, err := m.PingLoop(ctx, "machine01", ip1, ip2, 50*time.Millisecond, 40000, stop)
				if err != nil {
					t.Error(err)
				}
				res <- st
			}()
			time.Sleep(time.Second) // a baseline
			since := time.Now().UTC().Format("15:04:05")
			disrupt(t)
			close(stop)
			st := <-res
			t.Logf("fault: %s: ping every %s: %d sent, %d lost (%s without forwarding)",
				name, st.Interval, st.Sent, st.Lost(), time.Duration(st.Lost())*st.Interval)
			want(t, st)
			if t.Failed() {
				t.Logf("gaps: %v", st.Gaps)
				for _, n := range []string{"leaf01", "leaf02", "spine01"} {
					t.Logf("=== %s since %s ===\n%s", n, since, m.RoutingLog(n, since))
				}
				for _, n := range []string{"machine01", "machine02"} {
					out, _ := m.Lab.Exec(ctx, n, "vtysh", "-N", n, "-c", "show bgp ipv4 unicast", "-c", "show bgp neighbors", "-c", "show ip route")
					t.Logf("=== %s FRR ===\n%s", n, out)
				}
			}
		})
	}
	noLoss := func(t *testing.T, st scenario.PingStats) {
		if st.Lost() != 0 {
			t.Errorf("%d of %d pings lost; want 0", st.Lost(), st.Sent)
		}
	}
	// settle waits until leaf01 is back in sync with all sessions up, and
	// past its stale-route sweep (all sessions up plus a quiet period).
	settle := func(t *testing.T, restarted time.Time) {
		if err := m.WaitInSync(ctx, 2*time.Minute, "leaf01"); err != nil {
			t.Fatalf("leaf01 did not re-converge: %v", err)
		}
		if err := m.WaitSessionsSince(ctx, "leaf01", restarted, "swp2"); err != nil {
			t.Fatal(err)
		}
		t.Logf("leaf01's BGP sessions (but swp2, down) established again %s after the restart", time.Since(restarted).Round(100*time.Millisecond))
		time.Sleep(8 * time.Second)
	}
	fault("leaf agent restarted (SIGTERM)", noLoss, func(t *testing.T) {
		if err := m.Lab.StopNode(ctx, "leaf01"); err != nil {
			t.Fatal(err)
		}
		restarted := time.Now()
		if err := m.Lab.StartNode(ctx, "leaf01"); err != nil {
			t.Fatal(err)
		}
		settle(t, restarted)
	})
	fault("leaf agent killed (SIGKILL) and restarted", noLoss, func(t *testing.T) {
		if err := m.Lab.KillNode(ctx, "leaf01"); err != nil {
			t.Fatal(err)
		}
		restarted := time.Now()
		if err := m.Lab.StartNode(ctx, "leaf01"); err != nil {
			t.Fatal(err)
		}
		settle(t, restarted)
	})
	fault("controller stopped for 10s, then restarted", noLoss, func(t *testing.T) {
		if err := m.Lab.StopNode(ctx, scenario.ControllerNode); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		if err := m.Lab.StartNode(ctx, scenario.ControllerNode); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitInSync(ctx, 2*time.Minute, m.Switches()...); err != nil {
			t.Fatal(err)
		}
	})
	fault("controller killed during a burst of writes", noLoss, func(t *testing.T) {
		// Concurrent network creations; the controller is killed (SIGKILL)
		// while they run. Each creation either committed whole or not at
		// all: after the restart every network has its own VNI and the
		// allocations are unchanged.
		before, err := api.ListMachines(ctx, &apiv1.ListMachinesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := range 40 {
			wg.Go(func() {
				_, _ = api.CreateNetwork(ctx, &apiv1.CreateNetworkRequest{Name: fmt.Sprintf("burst-%02d", i), Prefix: fmt.Sprintf("10.%d.0.0/24", 100+i)})
			})
		}
		time.Sleep(30 * time.Millisecond)
		if err := m.Lab.KillNode(ctx, scenario.ControllerNode); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if err := m.Lab.StartNode(ctx, scenario.ControllerNode); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitInSync(ctx, 2*time.Minute, m.Switches()...); err != nil {
			t.Fatal(err)
		}
		nets, err := api.ListNetworks(ctx, &apiv1.ListNetworksRequest{})
		if err != nil {
			t.Fatal(err)
		}
		vnis := map[uint32]string{}
		burst := 0
		for _, n := range nets.GetNetworks() {
			if o, dup := vnis[n.GetVni()]; dup {
				t.Errorf("networks %s and %s share VNI %d after the crash", o, n.GetName(), n.GetVni())
			}
			vnis[n.GetVni()] = n.GetName()
			if strings.HasPrefix(n.GetName(), "burst-") {
				burst++
			}
		}
		t.Logf("%d of 40 burst networks committed before the kill", burst)
		after, err := api.ListMachines(ctx, &apiv1.ListMachinesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(allocations(before), allocations(after)); diff != "" {
			t.Errorf("allocations changed across the crash (-before +after):\n%s", diff)
		}
		for _, n := range nets.GetNetworks() {
			if strings.HasPrefix(n.GetName(), "burst-") {
				if _, err := api.DeleteNetwork(ctx, &apiv1.DeleteNetworkRequest{Name: n.GetName()}); err != nil {
					t.Errorf("deleting %s: %v", n.GetName(), err)
				}
			}
		}
	})
	fault("uplink cut (leaf01 swp31 down)", func(t *testing.T, st scenario.PingStats) {
		// Traffic moves to spine02 as soon as the carrier is gone; the goal
		// is under a second.
		if st.Received == 0 || time.Duration(st.Lost())*st.Interval > 5*time.Second {
			t.Errorf("traffic did not reroute over spine02: %d of %d pings lost", st.Lost(), st.Sent)
		}
	}, func(t *testing.T) {
		if err := m.SetLink(ctx, "leaf01", "swp31", false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(4 * time.Second)
		if err := m.SetLink(ctx, "leaf01", "swp31", true); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitSessions(ctx, "leaf01", "swp2"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a cut machine link reroutes", func(t *testing.T) {
		if !routingOK {
			t.Skip("routing is not up")
		}
		ip1, ip2 := machineIP(t, ctx, m, "machine01"), machineIP(t, ctx, m, "machine02")
		stop := make(chan struct{})
		res := make(chan scenario.PingStats, 1)
		go func() {
			st, err := m.PingLoop(ctx, "machine02", ip2, ip1, 20*time.Millisecond, 20000, stop)
			if err != nil {
				t.Error(err)
			}
			res <- st
		}()
		time.Sleep(time.Second)
		// machine01 loses its link to leaf01: leaf01's swp1 loses carrier,
		// its session is reset at once and traffic to machine01 moves to
		// leaf02 (directly, or from leaf01 over VXLAN).
		if err := m.SetLink(ctx, "machine01", "lan0", false); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := m.RestoreMachineLegs(ctx); err != nil {
				t.Errorf("restoring the machines' links: %v", err)
			}
		}()
		time.Sleep(5 * time.Second)
		close(stop)
		st := <-res
		t.Logf("cut machine01's link to leaf01 under ping every 20ms: %d sent, %d lost (about %s without forwarding)",
			st.Sent, st.Lost(), time.Duration(st.Lost())*st.Interval)
		if st.Received == 0 || st.Lost() > st.Sent/2 {
			t.Errorf("traffic did not reroute: %d of %d pings answered", st.Received, st.Sent)
		}
	})

	t.Run("free releases the ports", func(t *testing.T) {
		lat, err := m.FreeAndMeasure(ctx, "machine02")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("free machine02 -> kernel: %v", lat)
		if err := m.CheckPorts(scenario.Cabling["machine02"], "", 0); err != nil {
			t.Fatal(err)
		}
		// machine01 keeps the VRF alive on both leaves.
		if err := m.CheckPorts(scenario.Cabling["machine01"], vrf, vni); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitConverged(ctx, time.Minute, "machine02"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("agent restart leaves the kernel alone", func(t *testing.T) {
		before := portState(t, m, "leaf01", "swp1")
		events := watchLinks(t, ctx, m, "leaf01")
		if err := m.Lab.StopNode(ctx, "leaf01"); err != nil {
			t.Fatal(err)
		}
		if err := m.Lab.StartNode(ctx, "leaf01"); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitInSync(ctx, 2*time.Minute, "leaf01"); err != nil {
			t.Fatalf("leaf01 did not re-converge: %v", err)
		}
		if got := events.stop(quiet); len(got) > 0 {
			t.Errorf("agent restart changed links on leaf01: %v", got)
		}
		if diff := cmp.Diff(before, portState(t, m, "leaf01", "swp1")); diff != "" {
			t.Errorf("leaf01 swp1 after agent restart (-before +after):\n%s", diff)
		}
	})

	t.Run("controller loss and restart", func(t *testing.T) {
		// The wiring must have settled (LLDP after the restarts above)
		// before it is compared across the controller restart.
		for _, machine := range []string{"machine01", "machine02"} {
			if err := m.WaitWiring(ctx, scenario.WiringTimeout, machine, scenario.Cabling[machine]); err != nil {
				t.Fatal(err)
			}
		}
		// ... and the configs the relearned wiring led to must be applied
		// (else the tail of that apply lands while the controller is down).
		if err := m.WaitInSync(ctx, 2*time.Minute, m.Switches()...); err != nil {
			t.Fatal(err)
		}
		nets, err := api.ListNetworks(ctx, &apiv1.ListNetworksRequest{})
		if err != nil {
			t.Fatal(err)
		}
		machines, err := api.ListMachines(ctx, &apiv1.ListMachinesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		before := map[string]scenario.PortVRF{}
		var watches []*linkEvents
		for _, leaf := range []string{"leaf01", "leaf02"} {
			before[leaf] = portState(t, m, leaf, "swp1")
			watches = append(watches, watchLinks(t, ctx, m, leaf))
		}
		if err := m.Lab.StopNode(ctx, scenario.ControllerNode); err != nil {
			t.Fatal(err)
		}
		// Agents lose their streams and retry; the kernels must not move.
		for _, w := range watches {
			if got := w.stop(quiet); len(got) > 0 {
				t.Errorf("controller loss changed links on %s: %v", w.node, got)
			}
		}
		for _, leaf := range []string{"leaf01", "leaf02"} {
			if diff := cmp.Diff(before[leaf], portState(t, m, leaf, "swp1")); diff != "" {
				t.Errorf("%s swp1 while the controller is down (-before +after):\n%s", leaf, diff)
			}
		}
		if err := m.Lab.StartNode(ctx, scenario.ControllerNode); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitRegistered(ctx, 2*time.Minute, m.Switches()...); err != nil {
			t.Fatalf("agents did not reconnect: %v", err)
		}
		// The reconnected agents report their neighbours again.
		for _, machine := range []string{"machine01", "machine02"} {
			if err := m.WaitWiring(ctx, scenario.WiringTimeout, machine, scenario.Cabling[machine]); err != nil {
				t.Fatalf("wiring after controller restart: %v", err)
			}
		}
		nets2, err := api.ListNetworks(ctx, &apiv1.ListNetworksRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(nets, nets2, protocmp.Transform()); diff != "" {
			t.Errorf("networks after controller restart (-before +after):\n%s", diff)
		}
		machines2, err := api.ListMachines(ctx, &apiv1.ListMachinesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		// Liveness and last-seen times move on; the rest must not.
		if diff := cmp.Diff(machines, machines2, protocmp.Transform(),
			protocmp.IgnoreFields(&apiv1.Machine{}, "liveness", "last_seen"),
			protocmp.SortRepeated(func(a, b *apiv1.Connection) bool {
				return a.GetDevice()+":"+a.GetPort() < b.GetDevice()+":"+b.GetPort()
			}),
		); diff != "" {
			t.Errorf("machines after controller restart (-before +after):\n%s", diff)
		}
		// The reconnected agents still get pushes.
		lat, err := m.AllocateAndMeasure(ctx, "machine02", "tenant-a")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("allocate machine02 after controller restart -> kernel: %v", lat)
		if err := m.CheckPorts(scenario.Cabling["machine02"], vrf, vni); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("freeing everything removes the VRF and its L3VNI", func(t *testing.T) {
		for _, machine := range []string{"machine01", "machine02"} {
			if _, err := m.FreeAndMeasure(ctx, machine); err != nil {
				t.Fatal(err)
			}
		}
		for _, leaf := range []string{"leaf01", "leaf02"} {
			if err := m.WaitInSync(ctx, time.Minute, leaf); err != nil {
				t.Fatal(err)
			}
			k, err := m.Kernel(leaf)
			if err != nil {
				t.Fatal(err)
			}
			for _, dev := range []string{vrf, fmt.Sprintf("vxlan%d", vni)} {
				has, err := k.HasLink(dev)
				if err != nil {
					t.Fatal(err)
				}
				if has {
					t.Errorf("%s still has %s after all machines were freed", leaf, dev)
				}
			}
			k.Close()
		}
		if _, err := api.DeleteNetwork(ctx, &apiv1.DeleteNetworkRequest{Name: "tenant-a"}); err != nil {
			t.Errorf("deleting the emptied network: %v", err)
		}
	})

	t.Run("unplugging a link changes the learned wiring", func(t *testing.T) {
		// Pull machine02's second cable (lan1 <-> leaf02:swp2): leaf02's
		// port loses its carrier and its neighbour.
		start := time.Now()
		if out, err := m.Lab.Exec(ctx, "machine02", "ip", "link", "set", "lan1", "down"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		unplugged := []*apiv1.Connection{{Device: "leaf01", Port: "swp2"}}
		if err := m.WaitWiring(ctx, scenario.WiringTimeout, "machine02", unplugged); err != nil {
			t.Fatalf("after unplugging lan1: %v", err)
		}
		t.Logf("unplugged link left the wiring after %s", time.Since(start).Round(time.Millisecond))
		nbrs := neighborsOn(t, ctx, m, "leaf02", "swp2")
		if len(nbrs) != 0 {
			t.Errorf("leaf02 still has neighbours on swp2: %v", nbrs)
		}

		start = time.Now()
		if out, err := m.Lab.Exec(ctx, "machine02", "ip", "link", "set", "lan1", "up"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if err := m.WaitWiring(ctx, scenario.WiringTimeout, "machine02", scenario.Cabling["machine02"]); err != nil {
			t.Fatalf("after plugging lan1 back: %v", err)
		}
		t.Logf("replugged link back in the wiring after %s", time.Since(start).Round(time.Millisecond))
	})

	t.Run("a mis-cabled port is a finding", func(t *testing.T) {
		// The plan says machine02 belongs on leaf01:swp1; machine01 is there.
		plan := []*apiv1.PlannedPort{
			{Port: "swp1", Neighbor: "machine02"},
			{Port: "swp2", Neighbor: "machine02"},
			{Port: "swp31", Neighbor: "spine01"},
		}
		planned := map[string]bool{"swp1": true, "swp2": true, "swp31": true}
		if _, err := api.SetCablingPlan(ctx, &apiv1.SetCablingPlanRequest{Device: "leaf01", Ports: plan}); err != nil {
			t.Fatalf("SetCablingPlan: %v", err)
		}
		want := []*apiv1.Finding{{Device: "leaf01", Port: "swp1", Kind: "mismatch", Expected: "machine02", Actual: "machine01"}}
		var got []*apiv1.Finding
		err := pollUntil(ctx, time.Minute, func() (bool, error) {
			resp, err := api.ListFindings(ctx, &apiv1.ListFindingsRequest{})
			if err != nil {
				return false, err
			}
			got = nil
			for _, f := range resp.GetFindings() {
				if f.GetDevice() == "leaf01" && planned[f.GetPort()] {
					got = append(got, f)
				}
			}
			return cmp.Diff(want, got, protocmp.Transform()) == "", nil
		})
		if err != nil {
			t.Errorf("findings of leaf01: %v; last (-want +got):\n%s", err, cmp.Diff(want, got, protocmp.Transform()))
		}
		// An empty plan removes it, and its findings.
		if _, err := api.SetCablingPlan(ctx, &apiv1.SetCablingPlanRequest{Device: "leaf01"}); err != nil {
			t.Fatalf("clearing the plan: %v", err)
		}
		if err := pollUntil(ctx, time.Minute, func() (bool, error) {
			resp, err := api.ListFindings(ctx, &apiv1.ListFindingsRequest{})
			if err != nil {
				return false, err
			}
			for _, f := range resp.GetFindings() {
				if f.GetDevice() == "leaf01" && planned[f.GetPort()] {
					return false, nil
				}
			}
			return true, nil
		}); err != nil {
			t.Errorf("leaf01 findings after clearing its plan: %v", err)
		}
	})
}

// neighborsOn returns the LLDP neighbours the controller holds for a device
// port.
func neighborsOn(t *testing.T, ctx context.Context, m *scenario.MiniLab, device, port string) []string {
	t.Helper()
	d, err := m.API.GetDevice(ctx, &apiv1.GetDeviceRequest{Hostname: device})
	if err != nil {
		t.Fatalf("GetDevice %s: %v", device, err)
	}
	var out []string
	for _, n := range d.GetNeighbors() {
		if n.GetPort() == port {
			out = append(out, n.GetSystemName()+"/"+n.GetPortId())
		}
	}
	return out
}

// pollUntil calls check until it is true, fails, or timeout passes.
func pollUntil(ctx context.Context, timeout time.Duration, check func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := check()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %s", timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func portState(t *testing.T, m *scenario.MiniLab, node, port string) scenario.PortVRF {
	t.Helper()
	k, err := m.Kernel(node)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	got, err := k.PortVRF(port)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// linkEvents collects the link changes of one node's namespace.
type linkEvents struct {
	node   string
	cancel context.CancelFunc
	done   chan []string
}

func watchLinks(t *testing.T, ctx context.Context, m *scenario.MiniLab, node string) *linkEvents {
	t.Helper()
	k, err := m.Kernel(node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	wctx, cancel := context.WithCancel(ctx)
	updates, err := k.WatchLinks(wctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	// Subscribed first, listed second: a change between the two shows up
	// as an update that differs from the listed state, or as a repeat.
	last, err := k.LinkStates()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	e := &linkEvents{node: node, cancel: cancel, done: make(chan []string, 1)}
	go func() {
		var seen []string
		for u := range updates {
			name := u.Attrs().Name
			// eth0 is the management port: its counters and carrier are not
			// the agent's business.
			if name == "eth0" {
				continue
			}
			state := scenario.LinkState(u.Attrs())
			if u.Header.Type == unix.RTM_DELLINK {
				seen = append(seen, name+" deleted")
				delete(last, name)
				continue
			}
			// Notifications that change neither master nor flags (counters,
			// bridge timers) are not changes.
			if old, ok := last[name]; ok && old == state {
				continue
			}
			last[name] = state
			seen = append(seen, name+" "+state)
		}
		e.done <- seen
	}()
	return e
}

// stop waits the quiet period, stops watching and returns what changed.
func (e *linkEvents) stop(wait time.Duration) []string {
	time.Sleep(wait)
	e.cancel()
	select {
	case got := <-e.done:
		return got
	case <-time.After(5 * time.Second):
		return []string{"link watch did not stop"}
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// testWriter sends lab and scenario output to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func machineIP(t *testing.T, ctx context.Context, m *scenario.MiniLab, name string) netip.Addr {
	t.Helper()
	ip, err := m.MachineIP(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	return ip
}

// allocations maps allocated machines to network/IP.
func allocations(r *apiv1.ListMachinesResponse) map[string]string {
	out := map[string]string{}
	for _, mc := range r.GetMachines() {
		if a := mc.GetAllocation(); a != nil {
			out[mc.GetName()] = a.GetNetwork() + "/" + a.GetIp()
		}
	}
	return out
}
