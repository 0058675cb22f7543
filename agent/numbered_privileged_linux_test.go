//go:build linux

package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/metalfabric/fabric/bgp"
	"github.com/metalfabric/fabric/bgp/fib"
	"github.com/metalfabric/fabric/bgp/gobgp"
	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/fabric"
)

// The numbered-underlay test runs two agents, each with its fabric and BGP
// reconcilers, in two network namespaces joined by a veth. GoBGP opens its
// sockets from its own goroutines, so each agent lives in a helper process
// (this test binary re-executed under "ip netns exec") whose every thread
// is in its namespace; the helper serves its own fake controller on its
// namespace's loopback.
const (
	numberedHelperEnv = "FABRIC_NUMBERED_HELPER" // the config as protojson
)

// TestNumberedUnderlayHelper is not a test: it is the body of the helper
// processes of TestPrivilegedNumberedUnderlay (and skips otherwise). It
// runs an agent with routing on the config in numberedHelperEnv, prints
// "ready" after the first status report without errors, then pushes every
// config it reads from stdin (protojson, one per line) and prints
// "applied" once the agent reports it without errors; it stops when stdin
// closes.
func TestNumberedUnderlayHelper(t *testing.T) {
	js := os.Getenv(numberedHelperEnv)
	if js == "" {
		t.Skip("helper process of TestPrivilegedNumberedUnderlay (started by it)")
	}
	cfg := &apiv1.DeviceConfig{}
	if err := protojson.Unmarshal([]byte(js), cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := SetRouterSysctls(); err != nil {
		log.Warn("kernel settings for routing", "err", err)
	}
	prog, err := fib.New(fib.WithLogger(log))
	if err != nil {
		t.Fatalf("FIB programmer: %v", err)
	}
	defer prog.Close()
	routing := bgp.NewReconciler(gobgp.New(gobgp.WithLogger(log)), bgp.ProgrammerFIB{P: prog},
		bgp.WithLogger(log), bgp.WithListenPort(179))
	h, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctl := newFakeController(cfg)
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	a := runAgent(t, addr, fabric.NewNetlink(h), WithRouting(routing), WithLogger(log))
	wait := func(version uint64) {
		for {
			v, errs := statusSummary(ctl.waitStatus(t))
			if v == version && errs == nil {
				return
			}
			log.Info("status", "version", v, "errors", errs)
		}
	}
	wait(cfg.GetVersion())
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		next := &apiv1.DeviceConfig{}
		if err := protojson.Unmarshal(sc.Bytes(), next); err != nil {
			t.Fatalf("config from stdin: %v", err)
		}
		ctl.push(next)
		wait(next.GetVersion())
		fmt.Println("applied")
	}
	a.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = routing.Stop(ctx)
}

// TestPrivilegedNumberedUnderlay: a leaf and a spine agent with the
// configs the controller compiles for a numbered link (leaf dials from
// 10.254.0.0/31, spine listens on 10.254.0.1/31) put the /31s on their
// ports, establish the session over them, exchange their loopbacks and
// install them via the peer's /31 address (protocol 200): the loopbacks
// ping each other.
func TestPrivilegedNumberedUnderlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, BGP on port 179)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2's ip")
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	nsA, nsB := fmt.Sprintf("fabnum-%d-a", os.Getpid()), fmt.Sprintf("fabnum-%d-b", os.Getpid())
	for _, ns := range []string{nsA, nsB} {
		run("ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	// Ports stay down: the agents set them up.
	run("ip", "link", "add", "swp51", "netns", nsA, "type", "veth", "peer", "name", "swp1", "netns", nsB)

	leaf := &apiv1.DeviceConfig{
		Hostname: "leaf1", Version: 3, Role: apiv1.Role_ROLE_LEAF, Asn: 65001, Loopback: "10.255.0.1/32",
		Underlay: []*apiv1.UnderlayPeer{{Port: "swp51", Peer: "spine1", PeerAsn: 65101, Address: "10.254.0.0/31", PeerAddress: "10.254.0.1"}},
	}
	spine := &apiv1.DeviceConfig{
		Hostname: "leaf1", Version: 3, Role: apiv1.Role_ROLE_SPINE, Asn: 65101, Loopback: "10.255.0.2/32",
		Underlay: []*apiv1.UnderlayPeer{{Port: "swp1", Peer: "leaf1", PeerAsn: 65001, Passive: true, Address: "10.254.0.1/31", PeerAddress: "10.254.0.0"}},
	}
	leafAgent := startNumberedHelper(t, nsA, leaf)
	startNumberedHelper(t, nsB, spine)

	for _, c := range []struct{ ns, port, addr string }{{nsA, "swp51", "10.254.0.0/31"}, {nsB, "swp1", "10.254.0.1/31"}} {
		if out := run("ip", "-n", c.ns, "-4", "addr", "show", "dev", c.port); !strings.Contains(out, "inet "+c.addr) || !strings.Contains(out, "UP") {
			t.Errorf("%s %s: want up with %s:\n%s", c.ns, c.port, c.addr, out)
		}
	}
	routeVia := func(ns, dst, via, dev string) func() (bool, string) {
		return func() (bool, string) {
			out, _ := exec.Command("ip", "-n", ns, "-4", "route", "show", dst+"/32").CombinedOutput()
			s := string(out)
			return strings.Contains(s, "via "+via+" dev "+dev) && strings.Contains(s, "proto 200"), s
		}
	}
	poll(t, 60*time.Second, "leaf1's route to the spine's loopback", routeVia(nsA, "10.255.0.2", "10.254.0.1", "swp51"))
	poll(t, 10*time.Second, "spine1's route to the leaf's loopback", routeVia(nsB, "10.255.0.1", "10.254.0.0", "swp1"))
	poll(t, 10*time.Second, "ping loopback to loopback", func() (bool, string) {
		out, err := exec.Command("ip", "netns", "exec", nsA, "ping", "-c1", "-W1", "-I", "10.255.0.1", "10.255.0.2").CombinedOutput()
		return err == nil, string(out)
	})

	// The session goes away (the link is gone for the controller): the
	// leaf removes the /31 it added, and the route learnt over it.
	leaf.Version, leaf.Underlay = 4, nil
	leafAgent.apply(t, leaf)
	if out := run("ip", "-n", nsA, "-4", "addr", "show", "dev", "swp51"); strings.Contains(out, "10.254.0.0") {
		t.Errorf("%s swp51 keeps the /31 after the session went away:\n%s", nsA, out)
	}
	poll(t, 10*time.Second, "leaf1's route to the spine's loopback removed", func() (bool, string) {
		ok, out := routeVia(nsA, "10.255.0.2", "10.254.0.1", "swp51")()
		return !ok, out
	})
}

// numberedHelper is a running helper agent.
type numberedHelper struct {
	ns     string
	stdin  io.WriteCloser
	lines  chan string
	stderr *syncBuffer
}

// apply hands the helper's agent cfg and waits until it applied it.
func (h *numberedHelper) apply(t *testing.T, cfg *apiv1.DeviceConfig) {
	t.Helper()
	js, err := protojson.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.stdin.Write(append(js, '\n')); err != nil {
		t.Fatalf("helper in %s: %v", h.ns, err)
	}
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				t.Fatalf("helper in %s exited before applying version %d:\n%s", h.ns, cfg.GetVersion(), h.stderr.String())
			}
			if l == "applied" {
				return
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("helper in %s did not apply version %d in 30 s:\n%s", h.ns, cfg.GetVersion(), h.stderr.String())
		}
	}
}

// startNumberedHelper starts the helper agent in ns on cfg and waits for
// its "ready"; the test's end closes its stdin and waits for it.
func startNumberedHelper(t *testing.T, ns string, cfg *apiv1.DeviceConfig) *numberedHelper {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	js, err := protojson.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^TestNumberedUnderlayHelper$", "-test.timeout=0", "-test.v")
	cmd.Env = append(os.Environ(), numberedHelperEnv+"="+string(js), "FABRIC_NO_VM=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	h := &numberedHelper{ns: ns, stdin: stdin, lines: make(chan string, 100), stderr: logs}
	t.Cleanup(func() {
		_ = stdin.Close()
		go func() {
			for range h.lines { // what the helper prints on its way out
			}
		}()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("helper in %s, stderr:\n%s", ns, logs.String())
		}
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
		_ = cmd.Wait()
		close(done)
	}()
	var out []string
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				t.Fatalf("helper in %s exited before ready:\n%s\nstderr:\n%s", ns, strings.Join(out, "\n"), logs.String())
			}
			if l == "ready" {
				return h
			}
			out = append(out, l)
		case <-time.After(60 * time.Second):
			t.Fatalf("helper in %s not ready after 60 s:\n%s\nstderr:\n%s", ns, strings.Join(out, "\n"), logs.String())
		}
	}
}

// poll calls check until it reports true or the timeout passes.
func poll(t *testing.T, timeout time.Duration, what string, check func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s; last:\n%s", what, timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// syncBuffer is a helper's output, written by one goroutine and read by
// the test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
