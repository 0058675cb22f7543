package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
)

// The routing part of the mini-lab: machines running FRR peer eBGP
// unnumbered with their leaves, the leaves carry their /32s as EVPN type-5
// routes, and the checks send real pings.

// MachineASN is the AS number of a lab machine's FRR (private, 4-byte,
// outside the controller's switch pool).
func MachineASN(i int) uint32 { return 4250000000 + uint32(i) }

// MoreCabling is the wiring of the nodes the routing demo adds.
var MoreCabling = map[string][]*apiv1.Connection{
	"machine03": {{Device: "leaf02", Port: "swp3"}},
	"exit01":    {{Device: "leaf01", Port: "swp10"}},
}

// routingTimeout bounds waits for BGP sessions and routes (FRR's connect
// timers, the agents' link-local discovery, TCG slowness).
const routingTimeout = 3 * time.Minute

// ConfigureFRR gives a lab machine its address on lo and an FRR BGP config:
// unnumbered eBGP on ifaces, announcing its /32 and the extra prefixes.
func (m *MiniLab) ConfigureFRR(ctx context.Context, node string, asn uint32, ip netip.Addr, ifaces []string, extra ...netip.Prefix) error {
	if out, err := m.Lab.Exec(ctx, node, "ip", "addr", "replace", ip.String()+"/32", "dev", "lo"); err != nil {
		return fmt.Errorf("%s: adding %s to lo: %v: %s", node, ip, err, out)
	}
	cmds := []string{"configure terminal",
		fmt.Sprintf("router bgp %d", asn),
		"bgp router-id " + ip.String(),
		"no bgp ebgp-requires-policy",
		"bgp bestpath as-path multipath-relax",
		// The extra prefixes (an exit router's default) have no route
		// behind them in the lab: announce them anyway.
		"no bgp network import-check",
	}
	for _, i := range ifaces {
		cmds = append(cmds, fmt.Sprintf("neighbor %s interface remote-as external", i), fmt.Sprintf("neighbor %s timers connect 2", i))
	}
	cmds = append(cmds, "address-family ipv4 unicast", "network "+ip.String()+"/32")
	for _, p := range extra {
		cmds = append(cmds, "network "+p.String())
	}
	cmds = append(cmds, "exit-address-family", "end")
	argv := []string{"vtysh", "-N", node}
	for _, c := range cmds {
		argv = append(argv, "-c", c)
	}
	if out, err := m.Lab.Exec(ctx, node, argv...); err != nil {
		return fmt.Errorf("%s: configuring FRR: %v: %s", node, err, out)
	}
	fmt.Fprintf(m.Out, "%s: FRR AS %d, %s/32 on lo, unnumbered sessions on %s\n", node, asn, ip, strings.Join(ifaces, ","))
	return nil
}

// kernelRoute is one route of `ip -j route show`.
type kernelRoute struct {
	Dst      string `json:"dst"`
	Gateway  string `json:"gateway"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
	Via      *struct {
		Host string `json:"host"`
	} `json:"via"`
	Flags    []string `json:"flags"`
	Nexthops []struct {
		Gateway string `json:"gateway"`
		Dev     string `json:"dev"`
		Via     *struct {
			Host string `json:"host"`
		} `json:"via"`
	} `json:"nexthops"`
}

// String renders a route like `ip route` does, briefly.
func (r kernelRoute) String() string {
	hop := func(gw, dev string, via *struct {
		Host string `json:"host"`
	}) string {
		if via != nil {
			gw = via.Host
		}
		return "via " + gw + " dev " + dev
	}
	if len(r.Nexthops) == 0 {
		return r.Dst + " " + hop(r.Gateway, r.Dev, r.Via) + " " + strings.Join(r.Flags, " ")
	}
	var hs []string
	for _, h := range r.Nexthops {
		hs = append(hs, hop(h.Gateway, h.Dev, h.Via))
	}
	return r.Dst + " " + strings.Join(hs, " | ")
}

// gateways returns the route's next-hop addresses.
func (r kernelRoute) gateways() []string {
	var out []string
	add := func(gw string, via *struct {
		Host string `json:"host"`
	}) {
		if via != nil {
			gw = via.Host
		}
		if gw != "" {
			out = append(out, gw)
		}
	}
	add(r.Gateway, r.Via)
	for _, h := range r.Nexthops {
		add(h.Gateway, h.Via)
	}
	return out
}

// Route reads one route of a table in a node's namespace; ok is false when
// there is none.
func (m *MiniLab) Route(ctx context.Context, node string, table uint32, prefix string) (kernelRoute, bool, error) {
	out, err := execOut(ctx, "ip", "-n", m.Lab.NetNS(node), "-j", "route", "show", "table", fmt.Sprint(table), "exact", prefix)
	if err != nil {
		return kernelRoute{}, false, err
	}
	var rs []kernelRoute
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		return kernelRoute{}, false, fmt.Errorf("parsing ip -j route: %w", err)
	}
	if len(rs) == 0 {
		return kernelRoute{}, false, nil
	}
	return rs[0], true, nil
}

// WaitRoute waits until a node's table holds a route for prefix that
// satisfies ok.
func (m *MiniLab) WaitRoute(ctx context.Context, node string, table uint32, prefix string, what string, ok func(kernelRoute) bool) (kernelRoute, error) {
	var got kernelRoute
	err := poll(ctx, routingTimeout, func(ctx context.Context) (bool, string, error) {
		r, found, err := m.Route(ctx, node, table, prefix)
		if err != nil {
			return false, "", err
		}
		if !found {
			return false, fmt.Sprintf("%s: no route %s in table %d (want %s)", node, prefix, table, what), nil
		}
		got = r
		return ok(r), fmt.Sprintf("%s: route %s in table %d is %s (want %s)", node, prefix, table, r, what), nil
	})
	return got, err
}

// Ping sends count pings from a node (source address src) and returns the
// number answered and ping's output. It never fails on loss.
func (m *MiniLab) Ping(ctx context.Context, node string, src, dst netip.Addr, count int) (int, string) {
	out, _ := m.Lab.Exec(ctx, node, "ping", "-n", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "1", "-I", src.String(), dst.String())
	s := string(out)
	received := 0
	for _, line := range strings.Split(s, "\n") {
		if i := strings.Index(line, " received"); i > 0 {
			f := strings.Fields(line[:i])
			if len(f) > 0 {
				fmt.Sscan(f[len(f)-1], &received)
			}
		}
	}
	return received, s
}

// VXLANTxPackets reads a VXLAN device's transmitted packet counter.
func (m *MiniLab) VXLANTxPackets(ctx context.Context, node, dev string) (uint64, error) {
	out, err := execOut(ctx, "ip", "-n", m.Lab.NetNS(node), "-j", "-s", "link", "show", "dev", dev)
	if err != nil {
		return 0, err
	}
	var ls []struct {
		Stats struct {
			TX struct {
				Packets uint64 `json:"packets"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &ls); err != nil || len(ls) == 0 {
		return 0, fmt.Errorf("parsing ip -s link of %s on %s: %v", dev, node, err)
	}
	return ls[0].Stats.TX.Packets, nil
}

// SetLink sets a link of a node up or down.
func (m *MiniLab) SetLink(ctx context.Context, node, link string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if out, err := execOut(ctx, "ip", "-n", m.Lab.NetNS(node), "link", "set", link, state); err != nil {
		return fmt.Errorf("setting %s %s on %s: %v: %s", link, state, node, err, out)
	}
	return nil
}

// MachineIP returns an allocated machine's address.
func (m *MiniLab) MachineIP(ctx context.Context, name string) (netip.Addr, error) {
	mc, err := m.API.GetMachine(ctx, &apiv1.GetMachineRequest{Name: name})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("reading machine %s: %w", name, err)
	}
	return netip.ParseAddr(mc.GetAllocation().GetIp())
}

// Loopback returns a switch's loopback address (its VTEP).
func (m *MiniLab) Loopback(ctx context.Context, name string) (netip.Addr, error) {
	d, err := m.API.GetDevice(ctx, &apiv1.GetDeviceRequest{Hostname: name})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("reading device %s: %w", name, err)
	}
	p, err := netip.ParsePrefix(d.GetLoopback())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("device %s loopback %q: %w", name, d.GetLoopback(), err)
	}
	return p.Addr(), nil
}

// RoutingDemo runs after Demo (tenant-a holds machine01 and machine02): it
// adds tenant-b (machine03) and the internet network (exit01, announcing a
// default route), configures FRR on the machines, and proves forwarding
// with pings: same-tenant machines reach each other (also when each has
// only one leaf left, so the traffic must cross the fabric over VXLAN), and
// machines of different tenants cannot.
func (m *MiniLab) RoutingDemo(ctx context.Context) error {
	for _, args := range [][]string{
		{"network", "create", "tenant-b", "--prefix", "10.0.2.0/24"},
		{"network", "create", "internet", "--prefix", "203.0.113.0/24", "--external"},
	} {
		if err := m.Fabricctl(ctx, args...); err != nil {
			return err
		}
	}
	for _, machine := range []string{"machine03", "exit01"} {
		if err := m.WaitWiring(ctx, WiringTimeout, machine, MoreCabling[machine]); err != nil {
			return err
		}
	}
	if err := m.Fabricctl(ctx, "machine", "allocate", "machine03", "--network", "tenant-b"); err != nil {
		return err
	}
	if err := m.Fabricctl(ctx, "machine", "allocate", "exit01", "--network", "internet", "--announce", "0.0.0.0/0"); err != nil {
		return err
	}
	for _, machine := range []string{"machine01", "machine02", "machine03", "exit01"} {
		if err := m.WaitConverged(ctx, convergeTimeout, machine); err != nil {
			return err
		}
	}
	ips := make(map[string]netip.Addr)
	for _, name := range []string{"machine01", "machine02", "machine03", "exit01"} {
		ip, err := m.MachineIP(ctx, name)
		if err != nil {
			return err
		}
		ips[name] = ip
	}
	fmt.Fprintf(m.Out, "\nconfiguring FRR on the machines:\n")
	frr := []struct {
		node   string
		ifaces []string
		extra  []netip.Prefix
	}{
		{"machine01", []string{"lan0", "lan1"}, nil},
		{"machine02", []string{"lan0", "lan1"}, nil},
		{"machine03", []string{"lan0"}, nil},
		{"exit01", []string{"eth1"}, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}},
	}
	for i, f := range frr {
		if err := m.ConfigureFRR(ctx, f.node, MachineASN(i+1), ips[f.node], f.ifaces, f.extra...); err != nil {
			return err
		}
	}
	vniA, err := m.NetworkVNI(ctx, "tenant-a")
	if err != nil {
		return err
	}
	vniInet, err := m.NetworkVNI(ctx, "internet")
	if err != nil {
		return err
	}
	lo := make(map[string]netip.Addr)
	for _, leaf := range []string{"leaf01", "leaf02"} {
		if lo[leaf], err = m.Loopback(ctx, leaf); err != nil {
			return err
		}
	}
	start := time.Now()
	fmt.Fprintf(m.Out, "\nwaiting for the machines' routes in the leaves' VRF tables...\n")
	for _, w := range []struct {
		leaf, machine string
		table         uint32
	}{
		{"leaf01", "machine01", vniA}, {"leaf01", "machine02", vniA},
		{"leaf02", "machine01", vniA}, {"leaf02", "machine02", vniA},
		{"leaf01", "exit01", vniInet},
	} {
		r, err := m.WaitRoute(ctx, w.leaf, w.table, ips[w.machine].String()+"/32", "via the machine's link-local", func(r kernelRoute) bool {
			return len(r.gateways()) > 0 && strings.HasPrefix(r.gateways()[0], "fe80:")
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(m.Out, "%s table %d: %s\n", w.leaf, w.table, r)
	}
	r, err := m.WaitRoute(ctx, "leaf01", vniInet, "default", "the exit router's default route", func(r kernelRoute) bool { return len(r.gateways()) > 0 })
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Out, "leaf01 table %d (internet): %s\n", vniInet, r)
	fmt.Fprintf(m.Out, "BGP routes in the kernel %s after FRR was configured\n", time.Since(start).Round(time.Millisecond))

	// The machines learn each other's /32 from the leaves.
	for _, w := range [][2]string{{"machine01", "machine02"}, {"machine02", "machine01"}} {
		r, err := m.WaitRoute(ctx, w[0], 254, ips[w[1]].String()+"/32", "learned over BGP", func(r kernelRoute) bool { return len(r.gateways()) > 0 })
		if err != nil {
			return m.routingDebug(ctx, err)
		}
		fmt.Fprintf(m.Out, "%s: %s\n", w[0], r)
	}
	// Same tenant, both machines on both leaves.
	if n, out := m.Ping(ctx, "machine01", ips["machine01"], ips["machine02"], 5); n == 0 {
		return m.routingDebug(ctx, fmt.Errorf("machine01 cannot reach machine02 in tenant-a:\n%s", out))
	}
	fmt.Fprintf(m.Out, "ok: machine01 -> machine02 (tenant-a) answered\n")
	// Different tenants.
	if n, out := m.Ping(ctx, "machine01", ips["machine01"], ips["machine03"], 3); n != 0 {
		return fmt.Errorf("machine01 (tenant-a) reached machine03 (tenant-b): tenants are not isolated:\n%s", out)
	}
	if _, found, err := m.Route(ctx, "leaf01", vniA, ips["machine03"].String()+"/32"); err != nil || found {
		return fmt.Errorf("leaf01's tenant-a table has a route to machine03 (tenant-b) (err %v)", err)
	}
	fmt.Fprintf(m.Out, "ok: machine01 (tenant-a) -> machine03 (tenant-b): no answer, and no route in tenant-a's table\n")

	// Across the fabric: machine01 keeps only leaf01, machine02 only
	// leaf02, so leaf01 must route to machine02 over VXLAN to leaf02.
	fmt.Fprintf(m.Out, "\ncutting machine01's link to leaf02 and machine02's link to leaf01...\n")
	if err := m.SetLink(ctx, "machine01", "lan1", false); err != nil {
		return err
	}
	if err := m.SetLink(ctx, "machine02", "lan0", false); err != nil {
		return err
	}
	cut := time.Now()
	r, err = m.WaitRoute(ctx, "leaf01", vniA, ips["machine02"].String()+"/32", "via leaf02's VTEP "+lo["leaf02"].String(), func(r kernelRoute) bool {
		g := r.gateways()
		return len(g) == 1 && g[0] == lo["leaf02"].String()
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Out, "leaf01 table %d: %s (%s after the cut)\n", vniA, r, time.Since(cut).Round(time.Millisecond))
	if _, err := m.WaitRoute(ctx, "leaf02", vniA, ips["machine01"].String()+"/32", "via leaf01's VTEP", func(r kernelRoute) bool {
		g := r.gateways()
		return len(g) == 1 && g[0] == lo["leaf01"].String()
	}); err != nil {
		return err
	}
	vx := fmt.Sprintf("vxlan%d", vniA)
	before, err := m.VXLANTxPackets(ctx, "leaf01", vx)
	if err != nil {
		return err
	}
	n, out := m.Ping(ctx, "machine01", ips["machine01"], ips["machine02"], 10)
	after, err := m.VXLANTxPackets(ctx, "leaf01", vx)
	if err != nil {
		return err
	}
	if n == 0 {
		return m.routingDebug(ctx, fmt.Errorf("machine01 cannot reach machine02 across the leaves:\n%s", out))
	}
	if after-before < uint64(n) {
		return fmt.Errorf("leaf01's %s sent %d packets for %d answered pings: the traffic did not cross VXLAN", vx, after-before, n)
	}
	fmt.Fprintf(m.Out, "ok: machine01 -> machine02 across the leaves: %d/10 answered, leaf01's %s sent %d packets\n", n, vx, after-before)
	if n, out := m.Ping(ctx, "machine01", ips["machine01"], ips["machine03"], 3); n != 0 {
		return fmt.Errorf("machine01 (tenant-a) reached machine03 (tenant-b) across the leaves:\n%s", out)
	}
	fmt.Fprintf(m.Out, "ok: machine01 -> machine03 (tenant-b, on leaf02) across the leaves: no answer\n")

	for _, args := range [][]string{{"device", "show", "leaf01"}} {
		if err := m.Fabricctl(ctx, args...); err != nil {
			return err
		}
	}
	for _, args := range [][]string{
		{"ip", "-n", m.Lab.NetNS("leaf01"), "route", "show", "table", fmt.Sprint(vniA)},
		{"ip", "-n", m.Lab.NetNS("leaf01"), "route", "show", "proto", "200"},
		{"ip", "-n", m.Lab.NetNS("leaf01"), "neigh", "show", "nud", "permanent"},
		{"bridge", "-n", m.Lab.NetNS("leaf01"), "fdb", "show", "dev", vx},
	} {
		out, err := execOut(ctx, args[0], args[1:]...)
		if err != nil {
			out = fmt.Sprintf("(%v)\n", err)
		}
		fmt.Fprintf(m.Out, "\n$ %s\n%s", strings.Join(args, " "), out)
	}
	out2, _ := m.Lab.Exec(ctx, "machine01", "vtysh", "-N", "machine01", "-c", "show bgp summary")
	fmt.Fprintf(m.Out, "\n$ vtysh -N machine01 -c 'show bgp summary'   (in machine01)\n%s", out2)

	// Restore the machines' second links.
	return m.RestoreMachineLegs(ctx)
}

// routingDebug prints what helps to understand a routing failure and
// returns err.
func (m *MiniLab) routingDebug(ctx context.Context, err error) error {
	fmt.Fprintf(m.Out, "\n--- routing state after the failure ---\n")
	for _, node := range []string{"machine01", "machine02"} {
		out, _ := m.Lab.Exec(ctx, node, "vtysh", "-N", node, "-c", "show bgp ipv4 unicast", "-c", "show ip route")
		fmt.Fprintf(m.Out, "\n%s:\n%s", node, out)
	}
	for _, leaf := range []string{"leaf01", "leaf02"} {
		for _, args := range [][]string{
			{"ip", "-n", m.Lab.NetNS(leaf), "route", "show", "table", "all", "proto", "200"},
			{"ip", "-n", m.Lab.NetNS(leaf), "neigh", "show"},
			{"ip", "-n", m.Lab.NetNS(leaf), "-d", "link", "show", "type", "vrf"},
			{"ip", "netns", "exec", m.Lab.NetNS(leaf), "sysctl", "-n", "net.ipv4.ip_forward"},
		} {
			out, _ := execOut(ctx, args[0], args[1:]...)
			fmt.Fprintf(m.Out, "\n%s $ %s\n%s", leaf, strings.Join(args, " "), out)
		}
		_ = m.Fabricctl(ctx, "device", "show", leaf)
	}
	return err
}

// PingStats is the outcome of a ping run.
type PingStats struct {
	Sent, Received int
	Interval       time.Duration
	// Gaps are the periods without answers, "HH:MM:SS.mmm .. HH:MM:SS.mmm"
	// (UTC, to compare with the nodes' logs).
	Gaps []string
}

// pingTime turns ping -D's "[1700000000.123456] ..." into a UTC time of day.
func pingTime(line string) string {
	var sec float64
	if _, err := fmt.Sscanf(line, "[%f]", &sec); err != nil {
		return "?"
	}
	return time.Unix(0, int64(sec*1e9)).UTC().Format("15:04:05.000")
}

// Lost returns the number of unanswered pings.
func (p PingStats) Lost() int { return p.Sent - p.Received }

// PingLoop pings dst from a node every interval until stop is closed (at
// most max pings) and returns the counts. It runs ping in the node's
// namespace; the result comes from ping's own summary.
func (m *MiniLab) PingLoop(ctx context.Context, node string, src, dst netip.Addr, interval time.Duration, max int, stop <-chan struct{}) (PingStats, error) {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c, err := m.Lab.Command(pctx, node, "ping", "-n", "-D", "-O", "-i", fmt.Sprintf("%.3f", interval.Seconds()), "-W", "1",
		"-c", fmt.Sprint(max), "-I", src.String(), dst.String())
	if err != nil {
		return PingStats{}, err
	}
	var out strings.Builder
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		return PingStats{}, fmt.Errorf("starting ping in %s: %w", node, err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-stop:
		// SIGINT makes ping print its summary and exit.
		_ = c.Process.Signal(interruptSignal)
		<-done
	case <-done:
	}
	st := PingStats{Interval: interval}
	var gapStart string
	for _, line := range strings.Split(out.String(), "\n") {
		switch {
		case strings.Contains(line, "packets transmitted"):
			fmt.Sscanf(line, "%d packets transmitted, %d received", &st.Sent, &st.Received)
		case strings.Contains(line, "no answer yet"):
			if gapStart == "" {
				gapStart = pingTime(line)
			}
		case strings.Contains(line, "bytes from"):
			if gapStart != "" {
				st.Gaps = append(st.Gaps, gapStart+" .. "+pingTime(line))
				gapStart = ""
			}
		}
	}
	if gapStart != "" {
		st.Gaps = append(st.Gaps, gapStart+" .. (end)")
	}
	if st.Sent == 0 {
		return st, fmt.Errorf("ping in %s sent nothing: %s", node, out.String())
	}
	return st, nil
}

// CutMachineLegs leaves machine01 only on leaf01 and machine02 only on
// leaf02 (up=false), or restores both legs (up=true): with one leg each,
// their traffic crosses the fabric over VXLAN.
func (m *MiniLab) CutMachineLegs(ctx context.Context, up bool) error {
	if err := m.SetLink(ctx, "machine01", "lan1", up); err != nil {
		return err
	}
	return m.SetLink(ctx, "machine02", "lan0", up)
}

// WaitAcrossLeaves waits until leaf01 routes machine02's address via
// leaf02's VTEP and leaf02 routes machine01's via leaf01's.
func (m *MiniLab) WaitAcrossLeaves(ctx context.Context, table uint32, ip1, ip2 netip.Addr) error {
	for _, w := range []struct {
		leaf, peer string
		ip         netip.Addr
	}{{"leaf01", "leaf02", ip2}, {"leaf02", "leaf01", ip1}} {
		vtep, err := m.Loopback(ctx, w.peer)
		if err != nil {
			return err
		}
		if _, err := m.WaitRoute(ctx, w.leaf, table, w.ip.String()+"/32", "via "+w.peer+"'s VTEP", func(r kernelRoute) bool {
			g := r.gateways()
			return len(g) == 1 && g[0] == vtep.String()
		}); err != nil {
			return err
		}
	}
	return nil
}

// WaitSessions waits until every BGP session a switch reports is
// established, but those on the except ports (links known to be down).
func (m *MiniLab) WaitSessions(ctx context.Context, name string, except ...string) error {
	return m.WaitSessionsSince(ctx, name, time.Time{}, except...)
}

// WaitSessionsSince is WaitSessions for sessions that came up after since
// (a status still showing the sessions of an agent's previous run does not
// count).
func (m *MiniLab) WaitSessionsSince(ctx context.Context, name string, since time.Time, except ...string) error {
	return poll(ctx, routingTimeout, func(ctx context.Context) (bool, string, error) {
		d, err := m.API.GetDevice(ctx, &apiv1.GetDeviceRequest{Hostname: name})
		if err != nil {
			return false, "", err
		}
		ss := d.GetRouting().GetSessions()
		if len(ss) == 0 {
			return false, name + " reports no BGP sessions", nil
		}
		for _, s := range ss {
			if slices.Contains(except, s.GetPeer()) {
				continue
			}
			if s.GetState() != "established" {
				return false, fmt.Sprintf("%s: session %s %s is %s", name, s.GetVrf(), s.GetPeer(), s.GetState()), nil
			}
			if up := s.GetUptime().AsDuration(); !since.IsZero() && up > time.Since(since) {
				return false, fmt.Sprintf("%s: session %s %s is up for %s, since before %s", name, s.GetVrf(), s.GetPeer(), up, since.Format(time.TimeOnly)), nil
			}
		}
		return true, "", nil
	})
}

// FRRNetworks adds (or with no=true removes) network statements on a lab
// machine's FRR.
func (m *MiniLab) FRRNetworks(ctx context.Context, node string, asn uint32, no bool, prefixes ...netip.Prefix) error {
	argv := []string{"vtysh", "-N", node, "-c", "configure terminal", "-c", fmt.Sprintf("router bgp %d", asn), "-c", "address-family ipv4 unicast"}
	for _, p := range prefixes {
		cmd := "network " + p.String()
		if no {
			cmd = "no " + cmd
		}
		argv = append(argv, "-c", cmd)
	}
	if out, err := m.Lab.Exec(ctx, node, append(argv, "-c", "end")...); err != nil {
		return fmt.Errorf("%s: changing FRR networks: %v: %s", node, err, out)
	}
	return nil
}

// Session returns a switch's BGP session on a port as it reported it.
func (m *MiniLab) Session(ctx context.Context, device, vrf, port string) (*apiv1.BgpSession, error) {
	d, err := m.API.GetDevice(ctx, &apiv1.GetDeviceRequest{Hostname: device})
	if err != nil {
		return nil, err
	}
	for _, s := range d.GetRouting().GetSessions() {
		if s.GetPeer() == port && s.GetVrf() == vrf {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%s reports no session on %s in %q", device, port, vrf)
}

// RoutingLog returns the routing-related lines of a node's console log at or
// after since (HH:MM:SS), for diagnosing a fault.
func (m *MiniLab) RoutingLog(node, since string) string {
	b, err := os.ReadFile(m.Lab.NodeLog(node))
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		i := strings.Index(line, "time=")
		if i < 0 || len(line) < i+24 || line[i+16:i+24] < since {
			continue
		}
		if strings.Contains(line, "lldp") {
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// RestoreMachineLegs brings all of machine01's and machine02's links up and
// waits until the fabric has settled again: both machines' full wiring
// learned over LLDP, their configs converged, and each leaf routing both
// machines directly (via the machine's link-local on its port).
func (m *MiniLab) RestoreMachineLegs(ctx context.Context) error {
	for _, l := range [][2]string{{"machine01", "lan0"}, {"machine01", "lan1"}, {"machine02", "lan0"}, {"machine02", "lan1"}} {
		if err := m.SetLink(ctx, l[0], l[1], true); err != nil {
			return err
		}
	}
	for _, machine := range []string{"machine01", "machine02"} {
		if err := m.WaitWiring(ctx, WiringTimeout, machine, Cabling[machine]); err != nil {
			return err
		}
		// LLDP has to see the machine again on the restored port first.
		if err := m.WaitConverged(ctx, routingTimeout, machine); err != nil {
			// Whatever the leaves were doing is the clue.
			m.DumpGoroutines("leaf01")
			m.DumpGoroutines("leaf02")
			return err
		}
	}
	vni, err := m.NetworkVNI(ctx, "tenant-a")
	if err != nil {
		return err
	}
	for _, machine := range []string{"machine01", "machine02"} {
		ip, err := m.MachineIP(ctx, machine)
		if err != nil {
			return err
		}
		for _, leaf := range []string{"leaf01", "leaf02"} {
			if _, err := m.WaitRoute(ctx, leaf, vni, ip.String()+"/32", "via the machine's link-local", func(r kernelRoute) bool {
				g := r.gateways()
				return len(g) > 0 && strings.HasPrefix(g[0], "fe80:")
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// DumpGoroutines makes a node's cmd (a Go daemon) print its goroutines and
// exit (SIGQUIT), and writes the dump from its console log to m.Out: for a
// daemon that stopped making progress. The lab does not restart it.
func (m *MiniLab) DumpGoroutines(node string) {
	sts, err := m.Lab.Status()
	if err != nil {
		fmt.Fprintf(m.Out, "goroutine dump of %s: %v\n", node, err)
		return
	}
	for _, st := range sts {
		if st.Node != node || st.CmdPID == 0 {
			continue
		}
		if err := syscallKill(st.CmdPID, sigQuit); err != nil {
			fmt.Fprintf(m.Out, "goroutine dump of %s: %v\n", node, err)
			return
		}
		time.Sleep(2 * time.Second)
		b, err := os.ReadFile(m.Lab.NodeLog(node))
		if err != nil {
			fmt.Fprintf(m.Out, "goroutine dump of %s: %v\n", node, err)
			return
		}
		s := string(b)
		if i := strings.LastIndex(s, "SIGQUIT"); i >= 0 {
			s = s[i:]
		}
		fmt.Fprintf(m.Out, "=== goroutines of %s ===\n%s\n", node, s)
	}
}
