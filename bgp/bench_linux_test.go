//go:build linux

package bgp_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metalfabric/fabric/agent"
)

var (
	benchFlag   = flag.Bool("bgp.bench", false, "run TestBenchBGPToKernel (make bench)")
	benchRounds = flag.Int("bgp.bench.rounds", 3, "TestBenchBGPToKernel: rounds (each measures both DUTs, the order alternating)")
)

const (
	benchPrefixes = 100_000
	mainTable     = 254
	// Route protocols: ours (package fib's default) and zebra's "bgp".
	protoProject = 200
	protoZebra   = 186

	feederASN = 65000
)

// benchFeederConf is the feeder's bgpd config: benchPrefixes IPv4 /32s
// (10.128.0.0 upwards) as network statements, originated without a route
// in any table (import-check off). Neighbours are added per DUT, shut down.
func benchFeederConf() string {
	var b strings.Builder
	fmt.Fprintf(&b, "frr defaults datacenter\nhostname feeder\nrouter bgp %d\n bgp router-id 10.254.0.1\n no bgp ebgp-requires-policy\n no bgp network import-check\n address-family ipv4 unicast\n", feederASN)
	base := netip.MustParseAddr("10.128.0.0").As4()
	for i := range benchPrefixes {
		a := base
		a[1] += byte(i >> 16)
		a[2], a[3] = byte(i>>8), byte(i)
		fmt.Fprintf(&b, "  network %s/32\n", netip.AddrFrom4(a))
	}
	b.WriteString(" exit-address-family\n")
	return b.String()
}

// benchFRRDUTConf is the peer DUT: FRR with the session our reconciler
// configures (unnumbered eBGP, any external AS, IPv4 unicast and EVPN, the
// loopback /32 originated), in FRR's data-centre defaults.
func benchFRRDUTConf(iface string) string {
	return fmt.Sprintf(`frr defaults datacenter
hostname dut
router bgp 65002
 bgp router-id 10.255.0.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor %[1]s interface remote-as external
 neighbor %[1]s timers connect 1
 address-family ipv4 unicast
  network 10.255.0.2/32
 exit-address-family
 address-family l2vpn evpn
  neighbor %[1]s activate
 exit-address-family
`, iface)
}

// dutResult is one DUT's measurement.
type dutResult struct {
	load        time.Duration // feeder's "no shutdown" to all prefixes in the kernel
	established time.Duration // feeder's "no shutdown" to Established
	first, half time.Duration // ... to the first route, to half of them in the kernel
	rssKiB      int64         // after the load
	hwmKiB      int64
	cpu         time.Duration // CPU time of the DUT's processes during the load
}

func (r dutResult) String() string {
	return fmt.Sprintf("established after %v, first route in the kernel after %v, half after %v, all %d after %v (%v after Established), RSS %.1f MiB (peak %.1f), CPU %v",
		r.established.Round(time.Millisecond), r.first.Round(time.Millisecond), r.half.Round(time.Millisecond), benchPrefixes, r.load.Round(time.Millisecond), (r.load - r.established).Round(time.Millisecond),
		float64(r.rssKiB)/1024, float64(r.hwmKiB)/1024, r.cpu.Round(time.Millisecond))
}

// TestBenchBGPToKernel: an FRR feeder announces 100k IPv4 /32s over an
// unnumbered eBGP session; the time from the feeder's "no neighbor X
// shutdown" until all of them are in the DUT's main table (counted with a
// netlink dump every 200 ms from this process) is measured for our stack
// (the agent's reconciler + GoBGP + FIB programmer in a helper process) and
// for FRR (zebra + bgpd), each in a fresh namespace, the order alternating
// per round. Prints the medians of the load time, of the RSS after the
// load, and of the DUT's CPU time during the load.
//
//	go test ./bgp/ -run '^TestBenchBGPToKernel$' -count=1 -v -args -bgp.bench [-bgp.bench.rounds N]
//
// BGP_BENCH_CPUPROFILE=FILE writes a CPU profile of our DUT per round
// (FILE.rN), from the helper's start to the end of the load;
// BGP_BENCH_MEMPROFILE=FILE a heap profile at the end of the load.
func TestBenchBGPToKernel(t *testing.T) {
	if !*benchFlag {
		t.Skip("benchmark: run with -args -bgp.bench (make bench)")
	}
	if os.Geteuid() != 0 {
		t.Skip("benchmark: needs root (network namespaces, FRR)")
	}
	for _, b := range []string{frrDir + "/zebra", frrDir + "/bgpd"} {
		if _, err := os.Stat(b); err != nil {
			t.Skipf("benchmark: needs FRR (%s): %v", b, err)
		}
	}
	for _, b := range []string{"vtysh", "ip", "sysctl"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("benchmark: needs %s", b)
		}
	}
	prefix := fmt.Sprintf("bgpb%d", os.Getpid())

	// The feeder: loading its table is not measured.
	feedNS := prefix + "-feed"
	addNetns(t, feedNS)
	start := time.Now()
	feeder := startFRRInstance(t, feedNS, benchFeederConf())
	waitUntil(t, 2*time.Minute, "the feeder's BGP table", func() (bool, string) {
		n, err := feederPrefixes(feeder)
		return err == nil && n == benchPrefixes, fmt.Sprint(n, err)
	})
	t.Logf("feeder: %d prefixes in its BGP table after %v", benchPrefixes, time.Since(start).Round(time.Millisecond))

	profile, memProfile := os.Getenv(benchProfileEnv), os.Getenv(benchMemProfileEnv)
	var proj, peer []dutResult
	for round := range *benchRounds {
		runProject := func() {
			var prof, mprof string
			if profile != "" {
				prof = fmt.Sprintf("%s.r%d", profile, round)
			}
			if memProfile != "" {
				mprof = fmt.Sprintf("%s.r%d", memProfile, round)
			}
			r := benchDUT(t, feeder, fmt.Sprintf("%s-p%d", prefix, round), fmt.Sprintf("fp%d", round), protoProject, func(ns string) dutProcs {
				d := startProjectDUT(t, ns, "eth0", 65001, netip.MustParseAddr("10.255.0.1"), prof, mprof)
				t.Cleanup(d.stop)
				return dutProcs{
					pids: []int{d.pid()},
					resolved: func() (bool, string) {
						return strings.Contains(d.logs.String(), "unnumbered neighbour resolved"), "no \"unnumbered neighbour resolved\" in the helper's log"
					},
					loaded: func() { _ = d.stopProfile() },
					stop:   d.stop,
					logs:   func() string { return d.logs.String() },
				}
			})
			t.Logf("round %d: project: %v", round, r)
			proj = append(proj, r)
		}
		runPeer := func() {
			r := benchDUT(t, feeder, fmt.Sprintf("%s-f%d", prefix, round), fmt.Sprintf("ff%d", round), protoZebra, func(ns string) dutProcs {
				for k, v := range agent.RouterSysctls { // the same kernel settings as ours
					nsRun(t, ns, "sysctl", "-qw", strings.ReplaceAll(k, "/", ".")+"="+v)
				}
				f := startFRRInstance(t, ns, benchFRRDUTConf("eth0"))
				resolved := func() (bool, string) {
					n, err := feederNeighbour(f, "eth0")
					return err == nil && n.resolved(), fmt.Sprintf("%+v %v", n, err)
				}
				return dutProcs{pids: f.pids(), resolved: resolved, loaded: func() {}, stop: f.stop, logs: func() string { return "" }}
			})
			t.Logf("round %d: peer (FRR): %v", round, r)
			peer = append(peer, r)
		}
		if round%2 == 0 {
			runProject()
			runPeer()
		} else {
			runPeer()
			runProject()
		}
	}
	if profile != "" {
		t.Logf("CPU profiles of our DUT: %s.r0 .. %s.r%d", profile, profile, *benchRounds-1)
	}
	pl, fl := median(proj, func(r dutResult) time.Duration { return r.load }), median(peer, func(r dutResult) time.Duration { return r.load })
	pe, fe := median(proj, func(r dutResult) time.Duration { return r.established }), median(peer, func(r dutResult) time.Duration { return r.established })
	prss, frss := median(proj, func(r dutResult) int64 { return r.rssKiB }), median(peer, func(r dutResult) int64 { return r.rssKiB })
	pcpu, fcpu := median(proj, func(r dutResult) time.Duration { return r.cpu }), median(peer, func(r dutResult) time.Duration { return r.cpu })
	t.Logf("median of %d rounds: established project %v peer %v; after Established project %v peer %v", len(proj),
		pe.Round(time.Millisecond), fe.Round(time.Millisecond),
		median(proj, func(r dutResult) time.Duration { return r.load - r.established }).Round(time.Millisecond),
		median(peer, func(r dutResult) time.Duration { return r.load - r.established }).Round(time.Millisecond))
	fmt.Printf("bench: bgp_feed_100k_to_kernel project=%s peer=%s ratio=%.2f\n", pl.Round(time.Millisecond), fl.Round(time.Millisecond), float64(pl)/float64(fl))
	fmt.Printf("bench: bgp_feed_100k_rss project=%.1fMiB peer=%.1fMiB ratio=%.2f\n", float64(prss)/1024, float64(frss)/1024, float64(prss)/float64(frss))
	// CPU time of the DUT's processes during the load (ours: the helper;
	// FRR: zebra+bgpd): on a busy machine it shows the cost without the
	// waiting for a core.
	fmt.Printf("bench: bgp_feed_100k_cpu project=%s peer=%s ratio=%.2f\n", pcpu.Round(time.Millisecond), fcpu.Round(time.Millisecond), float64(pcpu)/float64(fcpu))
}

// dutProcs is a started DUT: its processes (for RSS and CPU), whether it
// knows the feeder's link-local address, a hook run when the load is
// complete, stop, and its logs for failures.
type dutProcs struct {
	pids     []int
	resolved func() (bool, string)
	loaded   func()
	stop     func()
	logs     func() string
}

// benchDUT measures one DUT: a fresh namespace ns joined to the feeder by a
// veth (feedIf in the feeder, eth0 in ns), a shut-down feeder neighbour on
// it, the DUT started by start; once both sides know each other's
// link-local address the feeder's neighbour is brought up and the DUT's
// main table is counted every 200 ms until it holds every prefix with
// protocol proto. Everything of the DUT is removed again before returning.
func benchDUT(t *testing.T, feeder *frrInstance, ns, feedIf string, proto uint8, start func(ns string) dutProcs) dutResult {
	t.Helper()
	delNS := addNetns(t, ns)
	mustRun(t, "ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", feedIf, "netns", feeder.ns)
	nsRun(t, ns, "ip", "link", "set", "eth0", "up")
	nsRun(t, feeder.ns, "ip", "link", "set", feedIf, "up")
	if out, err := feeder.vtysh("configure terminal", fmt.Sprintf("router bgp %d", feederASN),
		"neighbor "+feedIf+" interface remote-as external", "neighbor "+feedIf+" timers connect 1", "neighbor "+feedIf+" shutdown"); err != nil {
		t.Fatalf("feeder neighbour %s: %v\n%s", feedIf, err, out)
	}
	unconfigure := func() {
		feeder.vtysh("configure terminal", fmt.Sprintf("router bgp %d", feederASN), "no neighbor "+feedIf)
	}
	t.Cleanup(unconfigure)

	counter, err := newRouteCounter(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer counter.close()

	d := start(ns)
	defer func() {
		if t.Failed() {
			t.Logf("DUT %s logs:\n%s", ns, d.logs())
		}
	}()
	// Each side learns the other's link-local address (from router
	// advertisements, or our speaker by pinging ff02::1); wait for both, so
	// the measurement starts with a session that can come up at once.
	waitUntil(t, 60*time.Second, "the feeder to learn the link-local address of "+ns, func() (bool, string) {
		n, err := feederNeighbour(feeder, feedIf)
		return err == nil && n.resolved(), fmt.Sprintf("%+v %v", n, err)
	})
	waitUntil(t, 60*time.Second, ns+" to learn the feeder's link-local address", d.resolved)

	cpu0 := dutCPU(t, d.pids)
	start0 := time.Now()
	if out, err := feeder.vtysh("configure terminal", fmt.Sprintf("router bgp %d", feederASN), "no neighbor "+feedIf+" shutdown"); err != nil {
		t.Fatalf("feeder neighbour %s up: %v\n%s", feedIf, err, out)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var res dutResult
	for {
		n, err := counter.count(mainTable, proto)
		if err != nil {
			t.Fatalf("counting routes in %s: %v", ns, err)
		}
		if n > 0 && res.first == 0 {
			res.first = time.Since(start0)
		}
		if n >= benchPrefixes/2 && res.half == 0 {
			res.half = time.Since(start0)
		}
		if n >= benchPrefixes {
			res.load = time.Since(start0)
			break
		}
		if time.Since(start0) > 5*time.Minute {
			nb, _ := feederNeighbour(feeder, feedIf)
			t.Fatalf("%s: %d of %d routes after %v (feeder's neighbour: %+v)", ns, n, benchPrefixes, time.Since(start0), nb)
		}
		<-tick.C
	}
	for _, pid := range d.pids {
		rss, hwm, _, err := procStatus(pid)
		if err != nil {
			t.Fatalf("reading /proc of %d: %v", pid, err)
		}
		res.rssKiB += rss
		res.hwmKiB += hwm
	}
	res.cpu = dutCPU(t, d.pids) - cpu0
	d.loaded()
	nb, err := feederNeighbour(feeder, feedIf)
	if err != nil || nb.State != "Established" {
		t.Fatalf("feeder's neighbour %s: %+v %v", feedIf, nb, err)
	}
	res.established = time.Since(start0) - time.Duration(nb.UpMsec)*time.Millisecond

	// Tear down now (the cleanups only catch failures): the next DUT
	// runs on a quiet machine.
	d.stop()
	unconfigure()
	delNS()
	// The kernel frees a deleted namespace's 100k routes in a worker;
	// let it finish before the next measurement.
	time.Sleep(2 * time.Second)
	return res
}

// dutCPU returns the CPU time (user+system) the processes used so far.
func dutCPU(t *testing.T, pids []int) time.Duration {
	t.Helper()
	var sum time.Duration
	for _, pid := range pids {
		_, _, cpu, err := procStatus(pid)
		if err != nil {
			t.Fatalf("reading /proc of %d: %v", pid, err)
		}
		sum += cpu
	}
	return sum
}

// feederPrefixes returns the number of prefixes in the feeder's IPv4
// unicast BGP table.
func feederPrefixes(f *frrInstance) (int, error) {
	out, err := f.vtysh("show bgp ipv4 unicast statistics json")
	if err != nil {
		return 0, err
	}
	var st struct {
		IPv4Unicast []struct {
			TotalPrefixes int `json:"totalPrefixes"`
		} `json:"ipv4Unicast"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return 0, fmt.Errorf("%w: %s", err, out)
	}
	if len(st.IPv4Unicast) == 0 {
		return 0, fmt.Errorf("no IPv4 unicast statistics: %s", out)
	}
	return st.IPv4Unicast[0].TotalPrefixes, nil
}

// neighbourState is what the feeder tells about one neighbour.
type neighbourState struct {
	State  string `json:"bgpState"`
	UpMsec int64  `json:"bgpTimerUpMsec"`
	// Addr is an interface neighbour's link-local address, once learnt
	// from its router advertisements.
	Addr string `json:"bgpNeighborAddr"`
}

func (n neighbourState) resolved() bool { return n.Addr != "" }

// feederNeighbour returns the feeder's view of neighbour iface.
func feederNeighbour(f *frrInstance, iface string) (neighbourState, error) {
	out, err := f.vtysh("show bgp neighbors " + iface + " json")
	if err != nil {
		return neighbourState{}, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return neighbourState{}, fmt.Errorf("%w: %s", err, out)
	}
	for _, raw := range m {
		var n neighbourState
		if err := json.Unmarshal(raw, &n); err != nil {
			return n, err
		}
		return n, nil
	}
	return neighbourState{}, fmt.Errorf("no neighbour %s: %s", iface, out)
}

func median[T any, V int64 | time.Duration](rs []T, f func(T) V) V {
	if len(rs) == 0 {
		return 0
	}
	vs := make([]V, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}
