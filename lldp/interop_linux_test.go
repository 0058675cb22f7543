//go:build linux

package lldp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// TestInteropLLDPD runs our agent on one end of a veth and Debian's lldpd
// on the other, each in a network namespace of its own, and checks both
// directions: lldpcli shows our chassis, port and system name; we see
// lldpd's. Then the shutdown frames: ours makes lldpd forget us, lldpd's
// (sent when it exits) makes us forget it.
func TestInteropLLDPD(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces, veths and raw sockets")
	}
	lldpdBin, err := exec.LookPath("lldpd")
	if err != nil {
		t.Skip("skipping: lldpd not installed (Debian package lldpd)")
	}
	lldpcliBin, err := exec.LookPath("lldpcli")
	if err != nil {
		t.Skip("skipping: lldpcli not installed (Debian package lldpd)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: ip (iproute2) not installed")
	}

	id := fmt.Sprintf("%d", os.Getpid()%1000000)
	nsOurs, nsPeer := "lldpt-a-"+id, "lldpt-b-"+id
	vethOurs, vethPeer := "lla"+id, "llb"+id
	mustRun(t, "ip", "netns", "add", nsOurs)
	t.Cleanup(func() { run(t, "ip", "netns", "del", nsOurs) })
	mustRun(t, "ip", "netns", "add", nsPeer)
	t.Cleanup(func() { run(t, "ip", "netns", "del", nsPeer) })
	mustRun(t, "ip", "link", "add", vethOurs, "netns", nsOurs, "type", "veth", "peer", "name", vethPeer, "netns", nsPeer)
	mustRun(t, "ip", "-n", nsOurs, "link", "set", vethOurs, "up")
	mustRun(t, "ip", "-n", nsPeer, "link", "set", vethPeer, "up")
	peerMAC := linkMAC(t, nsPeer, vethPeer)

	// lldpd in the peer namespace, foreground, its own control socket and
	// configuration (1 s interval, so TTL 4 s).
	// Not t.TempDir: lldpd's unprivileged half (user _lldpd) must reach
	// the socket, and t.TempDir's parent is 0700.
	dir, err := os.MkdirTemp("", "lldpd-interop-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "lldpd.sock")
	conf := filepath.Join(dir, "lldpd.conf")
	if err := os.WriteFile(conf, []byte("configure lldp tx-interval 1\nconfigure system hostname peer-sw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lldpd := exec.Command("ip", "netns", "exec", nsPeer, lldpdBin, "-d", "-u", sock, "-O", conf,
		"-I", vethPeer, "-S", "lldpd interop peer")
	var lldpdOut lockedBuffer
	lldpd.Stdout, lldpd.Stderr = &lldpdOut, &lldpdOut
	lldpd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := lldpd.Start(); err != nil {
		t.Fatalf("starting lldpd: %v", err)
	}
	lldpdDone := make(chan struct{})
	go func() { _ = lldpd.Wait(); close(lldpdDone) }()
	stopLLDPD := func() {
		select {
		case <-lldpdDone:
			return
		default:
		}
		_ = syscall.Kill(-lldpd.Process.Pid, syscall.SIGTERM)
		select {
		case <-lldpdDone:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-lldpd.Process.Pid, syscall.SIGKILL)
			<-lldpdDone
		}
	}
	t.Cleanup(func() {
		stopLLDPD()
		if t.Failed() {
			t.Logf("lldpd output:\n%s", lldpdOut.String())
		}
	})

	// Our agent, its socket opened inside our namespace.
	ns, err := netns.GetFromName(nsOurs)
	if err != nil {
		t.Fatalf("opening namespace %s: %v", nsOurs, err)
	}
	t.Cleanup(func() { ns.Close() })
	chassis := net.HardwareAddr{0x02, 0x42, 0x00, 0x00, 0xbe, 0xef}
	mgmt := netip.MustParseAddr("10.255.0.1")
	a, err := New(chassis, WithDialer(dialInNS(ns)), WithLogger(testLogger(t)),
		WithSystemName("fabric-leaf-test"), WithSystemDescription("metalfabric lldp interop"),
		WithMgmtAddrs(mgmt), WithInterval(time.Second), WithRetry(100*time.Millisecond, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, a, vethOurs)

	// lldpd sees us.
	lldpcli := func() ([]lldpcliNeighbor, error) {
		out, err := exec.Command("ip", "netns", "exec", nsPeer, lldpcliBin, "-u", sock, "-f", "json",
			"show", "neighbors").Output()
		if err != nil {
			return nil, fmt.Errorf("lldpcli show neighbors: %w", err)
		}
		return parseLLDPCLI(out)
	}
	var got []lldpcliNeighbor
	var lastErr error
	waitFor(t, "lldpd to list us", func() bool {
		got, lastErr = lldpcli()
		return len(got) > 0
	})
	want := lldpcliNeighbor{
		Interface: vethPeer, SystemName: "fabric-leaf-test", ChassisType: "mac", ChassisID: chassis.String(),
		PortType: "ifname", PortID: vethOurs, SystemDescription: "metalfabric lldp interop", MgmtIP: mgmt.String(),
		TTL: "4",
	}
	if len(got) != 1 || got[0] != want {
		t.Errorf("lldpcli show neighbors: got %+v (err %v), want [%+v]", got, lastErr, want)
	}

	// We see lldpd.
	e := waitEvent(t, a.Events(), "lldpd's neighbour", isEvent(Added, vethOurs, "peer-sw"))
	n := e.Neighbor
	if n.ChassisID != MACChassisID(peerMAC) {
		t.Errorf("lldpd's chassis ID %v (subtype %d), want MAC %v", n.ChassisID, n.ChassisID.Subtype, peerMAC)
	}
	if n.PortID.String() != peerMAC.String() && n.PortID.String() != vethPeer {
		t.Errorf("lldpd's port ID %v, want its MAC %v or name %s", n.PortID, peerMAC, vethPeer)
	}
	if n.PortDescription != vethPeer || n.SystemDescription != "lldpd interop peer" || n.TTL != 4*time.Second {
		t.Errorf("lldpd's neighbour %+v: want port description %s, system description %q, TTL 4s",
			n, vethPeer, "lldpd interop peer")
	}
	if n.Capabilities.Supported == 0 {
		t.Errorf("lldpd's capabilities empty: %+v", n.Capabilities)
	}

	// Our shutdown frame: lldpd forgets us at once (well before TTL 4 s
	// would; the wait is bounded anyway).
	if err := a.SetPorts(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	e = waitEvent(t, a.Events(), "lldpd's neighbour gone with our port", isEvent(Removed, vethOurs, "peer-sw"))
	if e.Reason != ReasonPortGone {
		t.Errorf("removal reason %q, want %q", e.Reason, ReasonPortGone)
	}
	waitFor(t, "lldpd to drop us after our shutdown frame", func() bool {
		got, lastErr = lldpcli()
		return lastErr == nil && len(got) == 0
	})

	// Back on, then lldpd exits: its shutdown frame removes it from us.
	if err := a.SetPorts(t.Context(), []Port{{Name: vethOurs}}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, a.Events(), "lldpd's neighbour again", isEvent(Added, vethOurs, "peer-sw"))
	stopLLDPD()
	e = waitEvent(t, a.Events(), "lldpd's neighbour removed", isEvent(Removed, vethOurs, "peer-sw"))
	if e.Reason != ReasonShutdown {
		t.Errorf("removal reason %q, want %q (lldpd sends a shutdown LLDPDU on exit)", e.Reason, ReasonShutdown)
	}
	t.Logf("counters: %+v", a.Counters())
	if c := a.Counters(); c.Malformed != 0 {
		t.Errorf("%d malformed frames from lldpd", c.Malformed)
	}
}

// dialInNS opens ports inside ns: the socket keeps the namespace it was
// created in, whatever thread uses it later.
func dialInNS(ns netns.NsHandle) Dialer {
	return func(ctx context.Context, port string) (Conn, error) {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			return nil, fmt.Errorf("getting current namespace: %w", err)
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			return nil, fmt.Errorf("entering namespace: %w", err)
		}
		c, err := ListenPort(ctx, port)
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine
			// instead of running others in the wrong namespace.
			if c != nil {
				_ = c.Close()
			}
			return nil, fmt.Errorf("leaving namespace: %w", err)
		}
		runtime.UnlockOSThread()
		return c, err
	}
}

type lldpcliNeighbor struct {
	Interface, SystemName, ChassisType, ChassisID, PortType, PortID string
	SystemDescription, MgmtIP, TTL                                  string
}

// parseLLDPCLI reads `lldpcli -f json show neighbors`. lldpcli's JSON
// turns lists of one into objects, so both shapes are accepted.
func parseLLDPCLI(b []byte) ([]lldpcliNeighbor, error) {
	var doc struct {
		LLDP json.RawMessage `json:"lldp"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parsing lldpcli output: %w", err)
	}
	var out []lldpcliNeighbor
	for _, lldp := range objects(doc.LLDP) {
		for _, ifaces := range objects(lldp["interface"]) {
			for ifName, raw := range ifaces {
				for _, iface := range objects(raw) {
					n := lldpcliNeighbor{Interface: ifName}
					for _, ch := range objects(iface["chassis"]) {
						for name, raw := range ch {
							n.SystemName = name
							var c struct {
								ID     struct{ Type, Value string } `json:"id"`
								Descr  string                       `json:"descr"`
								MgmtIP json.RawMessage              `json:"mgmt-ip"`
							}
							_ = json.Unmarshal(raw, &c)
							n.ChassisType, n.ChassisID, n.SystemDescription = c.ID.Type, c.ID.Value, c.Descr
							var ip string
							if json.Unmarshal(c.MgmtIP, &ip) != nil {
								var ips []string
								_ = json.Unmarshal(c.MgmtIP, &ips)
								ip = strings.Join(ips, ",")
							}
							n.MgmtIP = ip
						}
					}
					var p struct {
						ID  struct{ Type, Value string } `json:"id"`
						TTL string                       `json:"ttl"`
					}
					_ = json.Unmarshal(iface["port"], &p)
					n.PortType, n.PortID, n.TTL = p.ID.Type, p.ID.Value, p.TTL
					out = append(out, n)
				}
			}
		}
	}
	return out, nil
}

// objects decodes a JSON object or a list of objects.
func objects(raw json.RawMessage) []map[string]json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	if raw[0] == '[' {
		var l []map[string]json.RawMessage
		_ = json.Unmarshal(raw, &l)
		return l
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return []map[string]json.RawMessage{m}
}

func linkMAC(t *testing.T, ns, dev string) net.HardwareAddr {
	t.Helper()
	out := mustRun(t, "ip", "-n", ns, "-j", "link", "show", dev)
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("parsing ip link output %q: %v", out, err)
	}
	mac, err := net.ParseMAC(links[0].Address)
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

func mustRun(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Logf("cleanup: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRawSocketPortChurn runs two of our agents over a real veth (each end
// in its own namespace) and takes the link down, up, away and back: the
// agents drop the neighbours, keep retrying, never crash, and learn each
// other again.
func TestRawSocketPortChurn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces, veths and raw sockets")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: ip (iproute2) not installed")
	}
	id := fmt.Sprintf("%d", os.Getpid()%1000000)
	nsA, nsB := "lldpc-a-"+id, "lldpc-b-"+id
	vA, vB := "lca"+id, "lcb"+id
	mustRun(t, "ip", "netns", "add", nsA)
	t.Cleanup(func() { run(t, "ip", "netns", "del", nsA) })
	mustRun(t, "ip", "netns", "add", nsB)
	t.Cleanup(func() { run(t, "ip", "netns", "del", nsB) })
	addVeth := func() {
		mustRun(t, "ip", "link", "add", vA, "netns", nsA, "type", "veth", "peer", "name", vB, "netns", nsB)
		mustRun(t, "ip", "-n", nsA, "link", "set", vA, "up")
		mustRun(t, "ip", "-n", nsB, "link", "set", vB, "up")
	}
	addVeth()

	agent := func(nsName, name string, mac net.HardwareAddr, port string) *Agent {
		ns, err := netns.GetFromName(nsName)
		if err != nil {
			t.Fatalf("opening namespace %s: %v", nsName, err)
		}
		t.Cleanup(func() { ns.Close() })
		a, err := New(mac, WithDialer(dialInNS(ns)), WithLogger(testLogger(t)), WithSystemName(name),
			WithInterval(time.Second), WithRetry(50*time.Millisecond, 200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		startAgent(t, a, port)
		return a
	}
	a := agent(nsA, "sw-a", testMAC, vA)
	b := agent(nsB, "sw-b", testMAC2, vB)
	waitEvent(t, a.Events(), "a learns b", isEvent(Added, vA, "sw-b"))
	waitEvent(t, b.Events(), "b learns a", isEvent(Added, vB, "sw-a"))

	// Link down on a's side: a's socket reports it, a forgets b.
	mustRun(t, "ip", "-n", nsA, "link", "set", vA, "down")
	e := waitEvent(t, a.Events(), "a drops b on link down", isEvent(Removed, vA, "sw-b"))
	if e.Reason != ReasonPortGone {
		t.Errorf("reason %q, want %q", e.Reason, ReasonPortGone)
	}
	mustRun(t, "ip", "-n", nsA, "link", "set", vA, "up")
	waitEvent(t, a.Events(), "a learns b after link up", isEvent(Added, vA, "sw-b"))

	// The veth vanishes: both forget, both keep retrying.
	mustRun(t, "ip", "-n", nsA, "link", "del", vA)
	waitEvent(t, a.Events(), "a drops b on delete", isEvent(Removed, vA, "sw-b"))
	waitEvent(t, b.Events(), "b drops a on delete", isEvent(Removed, vB, "sw-a"))
	waitFor(t, "open retries on both sides", func() bool {
		return a.Counters().OpenErrors > 0 && b.Counters().OpenErrors > 0
	})
	addVeth()
	waitEvent(t, a.Events(), "a learns b on the new veth", isEvent(Added, vA, "sw-b"))
	waitEvent(t, b.Events(), "b learns a on the new veth", isEvent(Added, vB, "sw-a"))
	t.Logf("a: %+v", a.Counters())
	t.Logf("b: %+v", b.Counters())
}

// TestRawSocketBridgePort: on a switch the machine ports are bridge ports;
// LLDP frames (a link-local group address the bridge does not forward)
// must still reach the port's socket, and ours must leave through it.
func TestRawSocketBridgePort(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces, veths, bridges and raw sockets")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: ip (iproute2) not installed")
	}
	id := fmt.Sprintf("%d", os.Getpid()%1000000)
	nsA, nsB := "lldpbr-a-"+id, "lldpbr-b-"+id
	vA, vB, br := "lba"+id, "lbb"+id, "lbr"+id
	mustRun(t, "ip", "netns", "add", nsA)
	t.Cleanup(func() { run(t, "ip", "netns", "del", nsA) })
	mustRun(t, "ip", "netns", "add", nsB)
	t.Cleanup(func() { run(t, "ip", "netns", "del", nsB) })
	mustRun(t, "ip", "link", "add", vA, "netns", nsA, "type", "veth", "peer", "name", vB, "netns", nsB)
	mustRun(t, "ip", "-n", nsA, "link", "add", br, "type", "bridge")
	mustRun(t, "ip", "-n", nsA, "link", "set", vA, "master", br)
	mustRun(t, "ip", "-n", nsA, "link", "set", br, "up")
	mustRun(t, "ip", "-n", nsA, "link", "set", vA, "up")
	mustRun(t, "ip", "-n", nsB, "link", "set", vB, "up")

	agent := func(nsName, name string, mac net.HardwareAddr, port string) *Agent {
		ns, err := netns.GetFromName(nsName)
		if err != nil {
			t.Fatalf("opening namespace %s: %v", nsName, err)
		}
		t.Cleanup(func() { ns.Close() })
		a, err := New(mac, WithDialer(dialInNS(ns)), WithLogger(testLogger(t)), WithSystemName(name),
			WithInterval(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		startAgent(t, a, port)
		return a
	}
	sw := agent(nsA, "leaf", testMAC, vA)
	machine := agent(nsB, "machine", testMAC2, vB)
	waitEvent(t, sw.Events(), "switch learns machine on its bridge port", isEvent(Added, vA, "machine"))
	waitEvent(t, machine.Events(), "machine learns switch", isEvent(Added, vB, "leaf"))
}
