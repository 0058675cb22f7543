package scenario

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"
)

// The firewall part of the mini-lab: fw01 (fabric-agent --role firewall)
// joins the fabric on both leaves, serves tenant-a and the internet
// network, and tenant-a's machines reach inet01 (a host behind exit01) only
// through it, source-translated to the firewall's egress IP, with one
// denied port.

// Addresses of the internet side the firewall demo sets up.
var (
	// FirewallEgressIP is tenant-a's egress (SNAT) address, from the
	// internet network's prefix.
	FirewallEgressIP = netip.MustParseAddr("203.0.113.200")
	// InetHostIP is inet01's address behind exit01 (exit01 has .1).
	InetHostIP  = netip.MustParseAddr("198.51.100.10")
	inetGateway = netip.MustParseAddr("198.51.100.1")
)

// Ports inet01 listens on: one the policy allows, one it denies.
const (
	AllowedPort = 80
	DeniedPort  = 8080
)

// firewallPolicyFile is tenant-a's policy as `fabricctl firewall set`
// reads it.
var firewallPolicyFile = fmt.Sprintf(`nat: true
egressIPs: [%s]
egress:
  - {action: drop, protocol: tcp, ports: ["%d"], comment: "no 8080 to the internet"}
  - {action: accept, comment: "everything else"}
`, FirewallEgressIP, DeniedPort)

// FirewallDemo runs after RoutingDemo (which creates the internet network as
// external and allocates exit01 into it): it gives inet01 its address
// behind exit01, sets tenant-a's firewall policy (NAT to FirewallEgressIP,
// tcp DeniedPort dropped, the rest accepted), and proves with real traffic
// from machine01 that inet01 answers, sees the egress IP as the source, and
// that DeniedPort is blocked while AllowedPort is not. It leaves the policy
// in place.
func (m *MiniLab) FirewallDemo(ctx context.Context) error {
	fmt.Fprintf(m.Out, "\n=== firewall: fw01 between tenant-a and the internet ===\n")
	if err := m.WaitRegistered(ctx, registerTimeout, "fw01"); err != nil {
		return err
	}
	if err := m.setupInternetHost(ctx); err != nil {
		return err
	}
	if err := m.setFirewallPolicy(ctx, "tenant-a", firewallPolicyFile); err != nil {
		return err
	}
	vniA, err := m.NetworkVNI(ctx, "tenant-a")
	if err != nil {
		return err
	}
	vniInet, err := m.NetworkVNI(ctx, "internet")
	if err != nil {
		return err
	}
	fwLo, err := m.Loopback(ctx, "fw01")
	if err != nil {
		return err
	}
	ip1, err := m.MachineIP(ctx, "machine01")
	if err != nil {
		return err
	}
	viaFW := func(r kernelRoute) bool {
		g := r.gateways()
		return len(g) == 1 && g[0] == fwLo.String()
	}
	start := time.Now()
	fmt.Fprintf(m.Out, "\nwaiting for the firewall's routes...\n")
	// fw01 leaks: tenant default into the internet VRF, tenant prefix back.
	for _, w := range []struct {
		table  uint32
		prefix string
		dev    string
	}{{vniA, "default", fmt.Sprintf("vrf%d", vniInet)}, {vniInet, "10.0.1.0/24", fmt.Sprintf("vrf%d", vniA)}} {
		r, err := m.WaitRoute(ctx, "fw01", w.table, w.prefix, "leaked into "+w.dev, func(r kernelRoute) bool { return r.Dev == w.dev })
		if err != nil {
			return m.firewallDebug(ctx, err)
		}
		fmt.Fprintf(m.Out, "fw01 table %d: %s dev %s proto %s\n", w.table, r.Dst, r.Dev, r.Protocol)
	}
	// The leaves route tenant-a's default to fw01's VTEP, and the egress
	// IP (only it) in the internet VRF.
	for _, leaf := range []string{"leaf01", "leaf02"} {
		r, err := m.WaitRoute(ctx, leaf, vniA, "default", "via fw01's VTEP "+fwLo.String(), viaFW)
		if err != nil {
			return m.firewallDebug(ctx, err)
		}
		fmt.Fprintf(m.Out, "%s table %d (tenant-a): %s\n", leaf, vniA, r)
	}
	r, err := m.WaitRoute(ctx, "leaf01", vniInet, FirewallEgressIP.String()+"/32", "via fw01's VTEP", viaFW)
	if err != nil {
		return m.firewallDebug(ctx, err)
	}
	fmt.Fprintf(m.Out, "leaf01 table %d (internet): %s\n", vniInet, r)
	if _, found, err := m.Route(ctx, "leaf01", vniInet, "10.0.1.0/24"); err != nil || found {
		return fmt.Errorf("leaf01's internet table has tenant-a's private prefix 10.0.1.0/24 (err %v)", err)
	}
	for _, w := range []struct{ node, prefix string }{{"machine01", "default"}, {"exit01", FirewallEgressIP.String() + "/32"}} {
		r, err := m.WaitRoute(ctx, w.node, 254, w.prefix, "learned over BGP", func(r kernelRoute) bool { return len(r.gateways()) > 0 })
		if err != nil {
			return m.firewallDebug(ctx, err)
		}
		fmt.Fprintf(m.Out, "%s: %s\n", w.node, r)
	}
	fmt.Fprintf(m.Out, "firewall routes in place %s after the policy was set\n", time.Since(start).Round(time.Millisecond))

	// Traffic: inet01 listens on both ports and records who connects.
	ls, err := listenIn(m.Lab.NetNS("inet01"), InetHostIP, AllowedPort, DeniedPort)
	if err != nil {
		return err
	}
	defer ls.Close()
	var n int
	var out string
	if err := poll(ctx, routingTimeout, func(ctx context.Context) (bool, string, error) {
		n, out = m.Ping(ctx, "machine01", ip1, InetHostIP, 3)
		return n > 0, "machine01 -> inet01 ping: no answer:\n" + out, nil
	}); err != nil {
		return m.firewallDebug(ctx, err)
	}
	fmt.Fprintf(m.Out, "ok: machine01 (%s) -> inet01 (%s) ping: %d/3 answered\n", ip1, InetHostIP, n)
	if err := dialFrom(ctx, m.Lab.NetNS("machine01"), ip1, InetHostIP, AllowedPort, 5*time.Second); err != nil {
		return m.firewallDebug(ctx, fmt.Errorf("machine01 -> inet01 tcp %d (allowed): %w", AllowedPort, err))
	}
	src := ls.WaitPeers(ctx, AllowedPort, 2*time.Second)
	if len(src) == 0 || src[0] != FirewallEgressIP {
		return m.firewallDebug(ctx, fmt.Errorf("inet01 saw tcp %d from %v, want the firewall's egress IP %s (SNAT)", AllowedPort, src, FirewallEgressIP))
	}
	fmt.Fprintf(m.Out, "ok: machine01 -> inet01 tcp %d connected; inet01 saw the source %s (SNAT to tenant-a's egress IP)\n", AllowedPort, src[0])
	err = dialFrom(ctx, m.Lab.NetNS("machine01"), ip1, InetHostIP, DeniedPort, 3*time.Second)
	if err == nil || len(ls.Peers(DeniedPort)) > 0 {
		return m.firewallDebug(ctx, fmt.Errorf("machine01 -> inet01 tcp %d (denied) connected (peers seen %v)", DeniedPort, ls.Peers(DeniedPort)))
	}
	fmt.Fprintf(m.Out, "ok: machine01 -> inet01 tcp %d (denied by the egress policy) failed: %v; inet01 saw no connection\n", DeniedPort, err)
	// The allowed port still works after the denied one (no collateral).
	if err := dialFrom(ctx, m.Lab.NetNS("machine01"), ip1, InetHostIP, AllowedPort, 5*time.Second); err != nil {
		return m.firewallDebug(ctx, fmt.Errorf("machine01 -> inet01 tcp %d (allowed, again): %w", AllowedPort, err))
	}
	fmt.Fprintf(m.Out, "ok: machine01 -> inet01 tcp %d connects again\n", AllowedPort)

	if err := m.Fabricctl(ctx, "device", "show", "fw01"); err != nil {
		return err
	}
	ns := m.Lab.NetNS("fw01")
	for _, args := range [][]string{
		{"ip", "-n", ns, "route", "show", "table", fmt.Sprint(vniA)},
		{"ip", "-n", ns, "route", "show", "table", fmt.Sprint(vniInet)},
		{"ip", "netns", "exec", ns, "nft", "list", "counters", "table", "inet", "fabric"},
	} {
		out, err := execOut(ctx, args[0], args[1:]...)
		if err != nil {
			out = fmt.Sprintf("(%v)\n", err)
		}
		fmt.Fprintf(m.Out, "\n$ %s\n%s", strings.Join(args, " "), firewallCounterLines(out))
	}
	return nil
}

// firewallCounterLines keeps nft's counter listing short: the counters that
// counted something, one line each.
func firewallCounterLines(out string) string {
	if !strings.Contains(out, "counter ") {
		return out
	}
	var lines []string
	name := ""
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "counter "):
			name = strings.TrimSuffix(strings.TrimPrefix(l, "counter "), " {")
		case strings.HasPrefix(l, "packets ") && !strings.HasPrefix(l, "packets 0 "):
			lines = append(lines, name+": "+l)
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// setFirewallPolicy sets a network's firewall policy the way an operator
// does: the YAML in a file, `fabricctl firewall set NETWORK -f FILE`.
func (m *MiniLab) setFirewallPolicy(ctx context.Context, network, policy string) error {
	dir, err := os.MkdirTemp("", "fabric-lab-fw")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, network+".yaml")
	if err := os.WriteFile(file, []byte(policy), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(m.Out, "\n$ cat %s.yaml\n%s", network, policy)
	return m.Fabricctl(ctx, "firewall", "set", network, "-f", file)
}

// setupInternetHost gives inet01 its address and a default route via
// exit01, and lets exit01 forward.
func (m *MiniLab) setupInternetHost(ctx context.Context) error {
	steps := [][]string{
		{"ip", "-n", m.Lab.NetNS("exit01"), "addr", "replace", inetGateway.String() + "/24", "dev", "eth2"},
		{"ip", "-n", m.Lab.NetNS("exit01"), "link", "set", "eth2", "up"},
		{"ip", "netns", "exec", m.Lab.NetNS("exit01"), "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"ip", "-n", m.Lab.NetNS("inet01"), "addr", "replace", InetHostIP.String() + "/24", "dev", "eth1"},
		{"ip", "-n", m.Lab.NetNS("inet01"), "link", "set", "eth1", "up"},
		{"ip", "-n", m.Lab.NetNS("inet01"), "route", "replace", "default", "via", inetGateway.String(), "dev", "eth1"},
	}
	for _, s := range steps {
		if out, err := execOut(ctx, s[0], s[1:]...); err != nil {
			return fmt.Errorf("setting up the internet host: %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	fmt.Fprintf(m.Out, "inet01: %s/24 behind exit01 (%s)\n", InetHostIP, inetGateway)
	return nil
}

// firewallDebug prints what helps to understand a firewall failure and
// returns err.
func (m *MiniLab) firewallDebug(ctx context.Context, err error) error {
	fmt.Fprintf(m.Out, "\n--- firewall state after the failure ---\n")
	ns := m.Lab.NetNS("fw01")
	for _, args := range [][]string{
		{"ip", "-n", ns, "-br", "link"},
		{"ip", "-n", ns, "route", "show", "table", "all", "proto", "200"},
		{"ip", "-n", ns, "route", "show", "table", "all", "proto", "201"},
		{"ip", "netns", "exec", ns, "nft", "list", "ruleset"},
		{"ip", "netns", "exec", ns, "conntrack", "-L"},
		{"ip", "-n", m.Lab.NetNS("exit01"), "route"},
		{"ip", "-n", m.Lab.NetNS("machine01"), "route"},
	} {
		out, e := execOut(ctx, args[0], args[1:]...)
		if e != nil {
			out = fmt.Sprintf("(%v) %s\n", e, out)
		}
		fmt.Fprintf(m.Out, "\n$ %s\n%s", strings.Join(args, " "), out)
	}
	if b, e := os.ReadFile(m.Lab.NodeLog("fw01")); e == nil {
		fmt.Fprintf(m.Out, "\n=== fw01: last lines of %s ===\n%s\n", m.Lab.NodeLog("fw01"), tailLines(string(b), 30))
	}
	_ = m.Fabricctl(ctx, "device", "show", "fw01")
	return err
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// inNetNS runs fn on a thread in the named network namespace; sockets fn
// creates stay in that namespace.
func inNetNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("getting current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening netns %s: %w", ns, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", ns, err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: Go discards it.
		return fmt.Errorf("leaving netns %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Listeners accept TCP connections in a lab node and record each peer's
// address by port.
type Listeners struct {
	mu    sync.Mutex
	ls    []net.Listener
	peers map[int][]netip.Addr
	wg    sync.WaitGroup
}

// listenIn listens on addr's ports inside a namespace.
func listenIn(ns string, addr netip.Addr, ports ...int) (*Listeners, error) {
	l := &Listeners{peers: make(map[int][]netip.Addr)}
	err := inNetNS(ns, func() error {
		for _, p := range ports {
			ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, uint16(p)).String())
			if err != nil {
				return err
			}
			l.ls = append(l.ls, ln)
		}
		return nil
	})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("listening in %s: %w", ns, err)
	}
	for i, ln := range l.ls {
		port := ports[i]
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
					l.mu.Lock()
					l.peers[port] = append(l.peers[port], ap.Addr().Unmap())
					l.mu.Unlock()
				}
				c.Close()
			}
		}()
	}
	return l, nil
}

// Peers returns the addresses that connected to port so far.
func (l *Listeners) Peers(port int) []netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]netip.Addr(nil), l.peers[port]...)
}

// WaitPeers waits up to d for a connection to port to be accepted and
// returns the peers seen.
func (l *Listeners) WaitPeers(ctx context.Context, port int, d time.Duration) []netip.Addr {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil && len(l.Peers(port)) == 0 {
		time.Sleep(50 * time.Millisecond)
	}
	return l.Peers(port)
}

// Close stops listening.
func (l *Listeners) Close() {
	for _, ln := range l.ls {
		ln.Close()
	}
	l.wg.Wait()
}

// dialFrom connects from a namespace, bound to src, to dst:port, and closes
// the connection; the error tells whether it was established in time.
func dialFrom(ctx context.Context, ns string, src, dst netip.Addr, port int, timeout time.Duration) error {
	var conn net.Conn
	err := inNetNS(ns, func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		var err error
		conn, err = d.DialContext(ctx, "tcp", netip.AddrPortFrom(dst, uint16(port)).String())
		return err
	})
	if err != nil {
		return err
	}
	return conn.Close()
}

// PublicIP is machine02's public address in the ingress demo, from the
// internet network's prefix.
var PublicIP = netip.MustParseAddr("203.0.113.50")

// Ports machine02 listens on in the ingress demo: one an ingress rule
// allows, one nothing allows.
const (
	IngressAllowedPort = 22
	IngressDeniedPort  = 23
)

var firewallIngressPolicyFile = firewallPolicyFile + fmt.Sprintf(`publicPrefixes: [%s/32]
ingress:
  - {action: accept, protocol: tcp, ports: ["%d"], comment: "ssh to the public IP"}
`, PublicIP, IngressAllowedPort)

// FirewallIngressDemo runs after FirewallDemo: machine02 is allocated again
// with the public address PublicIP (--announce) and announces it over BGP,
// tenant-a's policy lists it as public with one ingress rule, and inet01
// reaches PublicIP on the allowed port (machine02 sees inet01's own
// address), not on another.
func (m *MiniLab) FirewallIngressDemo(ctx context.Context) error {
	fmt.Fprintf(m.Out, "\n=== firewall: ingress from the internet to machine02's public IP %s ===\n", PublicIP)
	host := netip.PrefixFrom(PublicIP, 32)
	if err := m.Fabricctl(ctx, "machine", "free", "machine02"); err != nil {
		return err
	}
	if err := m.Fabricctl(ctx, "machine", "allocate", "machine02", "--network", "tenant-a", "--announce", host.String()); err != nil {
		return err
	}
	if err := m.WaitConverged(ctx, convergeTimeout, "machine02"); err != nil {
		return err
	}
	if out, err := m.Lab.Exec(ctx, "machine02", "ip", "addr", "replace", host.String(), "dev", "lo"); err != nil {
		return fmt.Errorf("machine02: adding %s to lo: %v: %s", host, err, out)
	}
	if err := m.FRRNetworks(ctx, "machine02", MachineASN(2), false, host); err != nil {
		return err
	}
	if err := m.setFirewallPolicy(ctx, "tenant-a", firewallIngressPolicyFile); err != nil {
		return err
	}
	vniInet, err := m.NetworkVNI(ctx, "internet")
	if err != nil {
		return err
	}
	r, err := m.WaitRoute(ctx, "fw01", vniInet, host.String(), "leaked into tenant-a's VRF", func(r kernelRoute) bool { return r.Dev != "" && r.Protocol == "201" })
	if err != nil {
		return m.firewallDebug(ctx, err)
	}
	fmt.Fprintf(m.Out, "fw01 table %d: %s dev %s proto %s\n", vniInet, r.Dst, r.Dev, r.Protocol)
	r, err = m.WaitRoute(ctx, "exit01", 254, host.String(), "learned over BGP", func(r kernelRoute) bool { return len(r.gateways()) > 0 })
	if err != nil {
		return m.firewallDebug(ctx, err)
	}
	fmt.Fprintf(m.Out, "exit01: %s\n", r)

	ls, err := listenIn(m.Lab.NetNS("machine02"), PublicIP, IngressAllowedPort, IngressDeniedPort)
	if err != nil {
		return err
	}
	defer ls.Close()
	if err := poll(ctx, routingTimeout, func(ctx context.Context) (bool, string, error) {
		err := dialFrom(ctx, m.Lab.NetNS("inet01"), InetHostIP, PublicIP, IngressAllowedPort, 3*time.Second)
		return err == nil, fmt.Sprintf("inet01 -> %s tcp %d (allowed): %v", PublicIP, IngressAllowedPort, err), nil
	}); err != nil {
		return m.firewallDebug(ctx, err)
	}
	src := ls.WaitPeers(ctx, IngressAllowedPort, 2*time.Second)
	if len(src) == 0 || src[0] != InetHostIP {
		return m.firewallDebug(ctx, fmt.Errorf("machine02 saw tcp %d from %v, want inet01's %s", IngressAllowedPort, src, InetHostIP))
	}
	fmt.Fprintf(m.Out, "ok: inet01 -> %s tcp %d (allowed by an ingress rule) connected; machine02 saw %s\n", PublicIP, IngressAllowedPort, src[0])
	err = dialFrom(ctx, m.Lab.NetNS("inet01"), InetHostIP, PublicIP, IngressDeniedPort, 3*time.Second)
	if err == nil || len(ls.Peers(IngressDeniedPort)) > 0 {
		return m.firewallDebug(ctx, fmt.Errorf("inet01 -> %s tcp %d (no ingress rule) connected", PublicIP, IngressDeniedPort))
	}
	fmt.Fprintf(m.Out, "ok: inet01 -> %s tcp %d (no ingress rule) failed: %v\n", PublicIP, IngressDeniedPort, err)
	// Only the public address is reachable from the internet, never the
	// tenant's private one.
	ip2, err := m.MachineIP(ctx, "machine02")
	if err != nil {
		return err
	}
	if n, out := m.Ping(ctx, "inet01", InetHostIP, ip2, 2); n != 0 {
		return fmt.Errorf("inet01 reached machine02's private address %s:\n%s", ip2, out)
	}
	fmt.Fprintf(m.Out, "ok: inet01 -> machine02's private address %s: no answer\n", ip2)
	return nil
}

// RemoveFirewallPolicy removes a tenant's firewall policy and waits until
// the firewall's default route is gone from machine01 and from the leaves'
// tenant-a tables (machines re-advertise a default they learned, which
// would skew later session counters).
func (m *MiniLab) RemoveFirewallPolicy(ctx context.Context, network string) error {
	since := time.Now().UTC().Format(time.TimeOnly)
	if err := m.Fabricctl(ctx, "firewall", "set", network, "-f", "/dev/null"); err != nil {
		return err
	}
	vni, err := m.NetworkVNI(ctx, network)
	if err != nil {
		return err
	}
	for _, w := range []struct {
		node  string
		table uint32
	}{{"leaf01", vni}, {"leaf02", vni}, {"machine01", 254}, {"machine02", 254}} {
		if err := poll(ctx, routingTimeout, func(ctx context.Context) (bool, string, error) {
			r, found, err := m.Route(ctx, w.node, w.table, "default")
			if err != nil {
				return false, "", err
			}
			return !found, fmt.Sprintf("%s table %d still has %s", w.node, w.table, r), nil
		}); err != nil {
			for _, n := range []string{"fw01", "leaf01", "spine01"} {
				fmt.Fprintf(m.Out, "\n=== %s since %s ===\n%s\n", n, since, m.RoutingLog(n, since))
				_ = m.Fabricctl(ctx, "device", "show", n)
			}
			return m.firewallDebug(ctx, err)
		}
	}
	fmt.Fprintf(m.Out, "firewall policy of %s removed: no default route left on the leaves and machines\n", network)
	return nil
}
