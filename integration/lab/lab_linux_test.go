//go:build linux

package lab

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requirePrivileges skips tests that create namespaces, veths and mounts.
func requirePrivileges(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces, veths and bind mounts")
	}
	for _, bin := range []string{"ip", "ping", "mount", "sh"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("skipping: %s is not installed", bin)
		}
	}
}

// uniqueLab returns a lab name no parallel test run uses.
func uniqueLab(prefix string) string {
	return fmt.Sprintf("%s%d%04x", prefix, os.Getpid()%100000, rand.Uint32()&0xffff)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func labNS(t *testing.T, lab string) []string {
	t.Helper()
	all, err := listNetNS()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ns := range all {
		if strings.HasPrefix(ns, NetNSName(lab, "")) {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out
}

func alive(pid int) bool { return pidAlive(pid) }

// eventually polls f until it succeeds or d passes.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rootNetState is what the host root namespace shows of interfaces and addresses.
type rootNetState struct {
	ifaces map[string]bool
	addrs  []netip.Prefix
	routes string
}

func readRootNet(t *testing.T) rootNetState {
	t.Helper()
	s := rootNetState{ifaces: map[string]bool{}}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		s.ifaces[i.Name] = true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			s.addrs = append(s.addrs, p)
		}
	}
	out, err := exec.Command("ip", "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route: %v: %s", err, out)
	}
	s.routes = string(out)
	return s
}

func TestLabUpDown(t *testing.T) {
	requirePrivileges(t)
	t.Parallel()
	ctx := t.Context()
	name := uniqueLab("lab")
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "file"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "mnt")         // missing: created by the runner
	nodeMnt := filepath.Join(dir, "nd")      // __clabNodeDir__ mounted here
	stateMnt := filepath.Join(dir, "state")  // missing source in the node dir
	dataMnt := filepath.Join(dir, "td.json") // __clabDir__/topology-data.json
	topoPath := filepath.Join(dir, "test.clab.yml")
	topoYAML := fmt.Sprintf(`name: %s
mgmt:
  ipv4-subnet: 172.31.250.0/24
topology:
  defaults:
    kind: linux
    image: alpine:3
  nodes:
    a:
      cmd: sleep 1000
      binds:
        - data:%s:ro
        - __clabNodeDir__:%s
      exec:
        - ip addr add 10.0.0.1/31 dev e1
    b:
      cmd: sh -c 'echo started $GREETING; exec sleep 1000'
      env: {GREETING: hello}
      binds:
        - __clabNodeDir__/state:%s
        - __clabDir__/topology-data.json:%s:ro
      exec:
        - ip addr add 10.0.0.0/31 dev e1
        - ip addr add 10.0.1.0/31 dev e2
    c:
      mgmt-ipv4: 172.31.250.100
      exec:
        - ip addr add 10.0.1.1/31 dev e2
  links:
    - endpoints: ["a:e1", "b:e1"]
    - endpoints: ["b:e2", "c:e2"]
`, name, mnt, nodeMnt, stateMnt, dataMnt)
	if err := os.WriteFile(topoPath, []byte(topoYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	topo, err := Load(topoPath)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { _ = Down(context.Background(), name) })

	before := readRootNet(t)
	start := time.Now()
	l, err := Up(ctx, topo, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Logf("Up took %v", time.Since(start))

	wantNS := []string{NetNSName(name, "a"), NetNSName(name, "b"), NetNSName(name, "c"), MgmtNetNSName(name)}
	slices.Sort(wantNS)
	if got := labNS(t, name); !slices.Equal(got, wantNS) {
		t.Fatalf("namespaces = %v, want %v", got, wantNS)
	}
	if got, want := l.MgmtIP("a"), netip.MustParseAddr("172.31.250.2"); got != want {
		t.Errorf("MgmtIP(a) = %v, want %v", got, want)
	}
	if got, want := l.MgmtIP("c"), netip.MustParseAddr("172.31.250.100"); got != want {
		t.Errorf("MgmtIP(c) = %v, want %v", got, want)
	}

	run := func(node string, argv ...string) (string, error) {
		out, err := l.Exec(ctx, node, argv...)
		return string(out), err
	}
	ping := func(from, to string, extra ...string) func() error {
		return func() error {
			out, err := run(from, append(append([]string{"ping", "-c1", "-W1"}, extra...), to)...)
			if err != nil {
				return fmt.Errorf("%w: %s", err, out)
			}
			return nil
		}
	}

	t.Run("links", func(t *testing.T) {
		eventually(t, 5*time.Second, "ping a -> b over e1", ping("a", "10.0.0.0"))
		eventually(t, 5*time.Second, "ping c -> b over e2", ping("c", "10.0.1.0"))
		out, err := run("a", "cat", "/sys/class/net/e1/mtu")
		if err != nil || strings.TrimSpace(out) != "9500" {
			t.Errorf("e1 mtu = %q, %v; want 9500", out, err)
		}
	})
	t.Run("mgmt", func(t *testing.T) {
		eventually(t, 5*time.Second, "ping c -> a over eth0", ping("c", l.MgmtIP("a").String(), "-I", "eth0"))
		eventually(t, 5*time.Second, "ping a -> c over eth0", ping("a", l.MgmtIP("c").String(), "-I", "eth0"))
	})
	t.Run("binds and env", func(t *testing.T) {
		out, err := run("a", "cat", filepath.Join(mnt, "file"))
		if err != nil || out != "hello\n" {
			t.Errorf("reading the bind in a = %q, %v; want hello", out, err)
		}
		if out, err := run("a", "touch", filepath.Join(mnt, "x")); err == nil {
			t.Errorf("writing the ro bind succeeded: %s", out)
		}
		if _, err := run("a", "touch", filepath.Join(nodeMnt, "from-a")); err != nil {
			t.Errorf("writing the rw bind: %v", err)
		}
		if _, err := os.Stat(filepath.Join(l.Dir(), "a", "from-a")); err != nil {
			t.Errorf("file written through __clabNodeDir__ bind not in node dir: %v", err)
		}
		// The bind mounts stayed inside the node's mount namespace.
		if ents, err := os.ReadDir(mnt); err != nil || len(ents) != 0 {
			t.Errorf("host view of %s = %v, %v; want an empty directory", mnt, ents, err)
		}
		if _, err := run("b", "touch", filepath.Join(stateMnt, "s")); err != nil {
			t.Errorf("writing the bind of the created __clabNodeDir__/state: %v", err)
		}
		if _, err := os.Stat(filepath.Join(l.Dir(), "b", "state", "s")); err != nil {
			t.Errorf("file written through the state bind not in the node dir: %v", err)
		}
		if out, err := run("b", "cat", dataMnt); err != nil || !strings.Contains(out, `"mgmt-ipv4": "172.31.250.100"`) {
			t.Errorf("topology-data.json through the bind = %q, %v", out, err)
		}
		out, err = run("b", "sh", "-c", "echo $GREETING")
		if err != nil || out != "hello\n" {
			t.Errorf("env in b = %q, %v", out, err)
		}
		eventually(t, 5*time.Second, "console.log of b", func() error {
			b, err := os.ReadFile(l.NodeLog("b"))
			if err != nil || !bytes.Contains(b, []byte("started hello")) {
				return fmt.Errorf("console.log = %q, %v", b, err)
			}
			return nil
		})
	})
	t.Run("host root namespace untouched", func(t *testing.T) {
		after := readRootNet(t)
		ours := []string{"e1", "e2", "br-mgmt", "mg-0", "mg-1", "mg-2"}
		for _, n := range ours {
			if after.ifaces[n] && !before.ifaces[n] {
				t.Errorf("root namespace gained interface %s", n)
			}
		}
		for n := range after.ifaces {
			if !before.ifaces[n] {
				t.Logf("note: root namespace gained interface %s (another test?)", n)
			}
		}
		for _, p := range after.addrs {
			if topo.Mgmt.IPv4Subnet.Contains(p.Addr()) || netip.MustParsePrefix("10.0.0.0/16").Contains(p.Addr()) {
				t.Errorf("root namespace has lab address %s", p)
			}
		}
		for _, s := range []string{"172.31.250.", "10.0.0.", "10.0.1."} {
			if strings.Contains(after.routes, s) {
				t.Errorf("root namespace has a lab route:\n%s", after.routes)
			}
		}
	})

	st, err := l.Status()
	if err != nil {
		t.Fatal(err)
	}
	oldPIDs := map[string]int{}
	for _, s := range st {
		oldPIDs[s.Node] = s.CmdPID
		if s.HasCommand != (s.CmdPID != 0) || !s.NetNSUp {
			t.Errorf("status %+v: want namespace up and cmd running iff it has one", s)
		}
	}

	t.Run("stop and start node", func(t *testing.T) {
		pid := oldPIDs["a"]
		if err := l.StopNode(ctx, "a"); err != nil {
			t.Fatalf("StopNode: %v", err)
		}
		if alive(pid) {
			t.Errorf("cmd of a (pid %d) still alive after StopNode", pid)
		}
		if pids, _ := pidsInNetNS([]string{l.NetNS("a")}); len(pids[l.NetNS("a")]) != 0 {
			t.Errorf("processes left in a: %v", pids)
		}
		eventually(t, 5*time.Second, "ping a -> b after StopNode", ping("a", "10.0.0.0"))
		if err := l.StopNode(ctx, "a"); err != nil {
			t.Errorf("second StopNode: %v", err)
		}
		if err := l.StartNode(ctx, "a"); err != nil {
			t.Fatalf("StartNode: %v", err)
		}
		if err := l.StartNode(ctx, "a"); err == nil {
			t.Errorf("StartNode on a running node succeeded")
		}
		st, _ := l.Status()
		if st[0].CmdPID == 0 || st[0].CmdPID == pid {
			t.Errorf("after StartNode: status %+v, want a new cmd pid", st[0])
		}
		b, _ := os.ReadFile(l.NodeLog("a"))
		if n := bytes.Count(b, []byte("starting sleep 1000")); n != 2 {
			t.Errorf("console.log of a has %d start lines, want 2:\n%s", n, b)
		}
		oldPIDs["a"] = st[0].CmdPID
	})

	// A second Up of the same lab (as after a crash) replaces the first.
	start = time.Now()
	l2, err := Up(ctx, topo, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("second Up: %v", err)
	}
	t.Logf("second Up (with teardown of the first) took %v", time.Since(start))
	for node, pid := range oldPIDs {
		if pid != 0 && alive(pid) {
			t.Errorf("cmd of %s from the first Up (pid %d) survived the second Up", node, pid)
		}
	}
	eventually(t, 5*time.Second, "ping after second Up", func() error {
		out, err := l2.Exec(ctx, "a", "ping", "-c1", "-W1", "10.0.0.0")
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	})
	st, _ = l2.Status()
	var pids []int
	for _, s := range st {
		pids = append(pids, s.Processes...)
	}
	if len(pids) != 2 {
		t.Errorf("processes after second Up = %v, want 2", pids)
	}

	start = time.Now()
	if err := l2.Down(ctx); err != nil {
		t.Fatalf("Down: %v", err)
	}
	t.Logf("Down took %v", time.Since(start))
	if got := labNS(t, name); len(got) != 0 {
		t.Errorf("namespaces left after Down: %v", got)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d alive after Down", pid)
		}
	}
	if _, err := os.Stat(statePath(name)); !os.IsNotExist(err) {
		t.Errorf("state file left after Down: %v", err)
	}
	if err := Down(ctx, name); err != nil {
		t.Errorf("Down of a lab that is gone: %v", err)
	}
}

func TestUpFailureTearsDown(t *testing.T) {
	requirePrivileges(t)
	t.Parallel()
	name := uniqueLab("fail")
	topo, err := Parse([]byte(fmt.Sprintf(`name: %s
topology:
  defaults: {kind: linux}
  nodes:
    a: {cmd: sleep 1000}
    b: {exec: ["sh -c 'echo boom >&2; exit 3'"]}
  links:
    - endpoints: [a:e1, b:e1]
`, name)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Down(context.Background(), name) })

	// A missing bind source fails before anything is created.
	bad := *topo
	bad.Nodes = slices.Clone(topo.Nodes)
	bad.Nodes[0].Binds = []Bind{{Src: filepath.Join(t.TempDir(), "missing"), Dst: "/x"}}
	if _, err := Up(t.Context(), &bad); err == nil || !strings.Contains(err.Error(), "node a: bind") {
		t.Errorf("Up with a missing bind source: error = %v, want the bind named", err)
	}
	if got := labNS(t, name); len(got) != 0 {
		t.Errorf("namespaces after failed bind check: %v", got)
	}

	_, err = Up(t.Context(), topo, WithLogger(testLogger(t)))
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "node b: exec") {
		t.Fatalf("Up error = %v, want the failing exec with its output", err)
	}
	if got := labNS(t, name); len(got) != 0 {
		t.Errorf("namespaces left after failed Up: %v", got)
	}

	// A cmd that cannot start fails Up too.
	topo.Nodes[1].Exec = nil
	topo.Nodes[0].Cmd = "/nonexistent/daemon --flag"
	_, err = Up(t.Context(), topo, WithLogger(testLogger(t)))
	if err == nil {
		// The exec of the missing binary may still be running when Up checks;
		// then the failure is not visible yet and Up succeeds.
		t.Logf("Up with a missing cmd binary succeeded (cmd had not exited yet)")
	} else if !strings.Contains(err.Error(), "node a: cmd") {
		t.Errorf("Up error = %v, want the failing cmd", err)
	}
	if err := Down(t.Context(), name); err != nil {
		t.Fatal(err)
	}
	if got := labNS(t, name); len(got) != 0 {
		t.Errorf("namespaces left: %v", got)
	}

	// Cancelling ctx during Up tears down.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	topo.Nodes[0].Cmd = "sleep 1000"
	if _, err := Up(ctx, topo); err == nil {
		t.Errorf("Up with a cancelled context succeeded")
	}
	if got := labNS(t, name); len(got) != 0 {
		t.Errorf("namespaces left after cancelled Up: %v", got)
	}
}

// TestDownForeignLab tears down namespaces and processes this process did
// not create through Up (a crashed "fabric-lab up"), without touching a lab
// whose name extends this one's.
func TestDownForeignLab(t *testing.T) {
	requirePrivileges(t)
	t.Parallel()
	ctx := t.Context()
	name := uniqueLab("frgn")
	other := name + "-x" // its namespaces also start with clab-<name>-
	for _, ns := range []string{NetNSName(name, "a"), MgmtNetNSName(name), NetNSName(other, "a")} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
		}
	}
	t.Cleanup(func() {
		_ = Down(context.Background(), name)
		_ = Down(context.Background(), other)
	})
	if err := writeState(state{Name: other, Namespaces: []string{MgmtNetNSName(other), NetNSName(other, "a")}}); err != nil {
		t.Fatal(err)
	}
	// One process that obeys SIGTERM and one that ignores it.
	var pids []int
	for _, script := range []string{"exec sleep 1000", "trap '' TERM; sleep 1000 & wait"} {
		c := exec.Command("ip", "netns", "exec", NetNSName(name, "a"), "sh", "-c", script)
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, c.Process.Pid)
		go func() { _ = c.Wait() }() // reap
	}
	eventually(t, 5*time.Second, "processes in namespace", func() error {
		m, err := pidsInNetNS([]string{NetNSName(name, "a")})
		if err != nil || len(m[NetNSName(name, "a")]) < 3 {
			return fmt.Errorf("pids %v, %v", m, err)
		}
		return nil
	})
	start := time.Now()
	if err := Down(ctx, name, WithStopTimeout(300*time.Millisecond), WithLogger(testLogger(t))); err != nil {
		t.Fatalf("Down: %v", err)
	}
	t.Logf("Down took %v", time.Since(start))
	if got := labNS(t, name); !slices.Equal(got, []string{NetNSName(other, "a")}) {
		t.Errorf("namespaces after Down(%s) = %v, want only the other lab's", name, got)
	}
	for _, pid := range pids {
		eventually(t, 2*time.Second, "process gone", func() error {
			if alive(pid) {
				return fmt.Errorf("pid %d alive", pid)
			}
			return nil
		})
	}
	if err := Down(ctx, other); err != nil {
		t.Fatalf("Down(%s): %v", other, err)
	}
	if got := labNS(t, name); len(got) != 0 {
		t.Errorf("namespaces left: %v", got)
	}
}
