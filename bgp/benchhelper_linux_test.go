//go:build linux

package bgp_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/metalfabric/fabric/agent"
	"github.com/metalfabric/fabric/bgp"
	"github.com/metalfabric/fabric/bgp/fib"
	"github.com/metalfabric/fabric/bgp/gobgp"
)

// Helpers of TestBenchBGPToKernel: the project's routing stack in a helper
// process, FRR instances in namespaces, and a cheap netlink route counter.

// The helper process is the test binary re-executed under "ip netns exec"
// with benchHelperEnv=1: GoBGP opens its sockets from its own goroutines, so
// the speaker must live in a process whose every thread is in the DUT's
// namespace.
const (
	benchHelperEnv = "BGP_BENCH_HELPER"
	// benchIfaceEnv, benchASNEnv and benchRouterIDEnv configure the helper.
	benchIfaceEnv    = "BGP_BENCH_IFACE"
	benchASNEnv      = "BGP_BENCH_ASN"
	benchRouterIDEnv = "BGP_BENCH_ROUTER_ID"
	// BGP_BENCH_CPUPROFILE=FILE makes the helper (our DUT) write a CPU
	// profile from its start until the load is complete; FILE gets the
	// round number appended (FILE.r0, FILE.r1, ...).
	benchProfileEnv = "BGP_BENCH_CPUPROFILE"
	// BGP_BENCH_MEMPROFILE=FILE makes the helper write a heap profile when
	// the load is complete (FILE.rN as well).
	benchMemProfileEnv = "BGP_BENCH_MEMPROFILE"
)

// TestBGPBenchHelper is not a test: it is the body of the helper process
// that TestBenchBGPToKernel starts (and skips otherwise).
func TestBGPBenchHelper(t *testing.T) {
	if os.Getenv(benchHelperEnv) != "1" {
		t.Skip("helper process of TestBenchBGPToKernel (started by it)")
	}
	os.Exit(runBenchHelper())
}

// runBenchHelper wires the routing stack exactly as cmd/fabric-agent does
// (router sysctls, fib.New, gobgp.New, bgp.NewReconciler over
// ProgrammerFIB, listen port 179), applies one Desired, prints "ready" and
// then serves line commands on stdin: "profile-stop" ends the CPU profile.
// EOF stops the reconciler (as the agent does on SIGTERM) and exits.
func runBenchHelper() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	asn, err := strconv.ParseUint(os.Getenv(benchASNEnv), 10, 32)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: ASN:", err)
		return 1
	}
	rid, err := netip.ParseAddr(os.Getenv(benchRouterIDEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: router id:", err)
		return 1
	}
	var prof *os.File
	if name := os.Getenv(benchProfileEnv); name != "" {
		if prof, err = os.Create(name); err != nil {
			fmt.Fprintln(os.Stderr, "helper: profile:", err)
			return 1
		}
		if err := pprof.StartCPUProfile(prof); err != nil {
			fmt.Fprintln(os.Stderr, "helper: profile:", err)
			return 1
		}
	}
	stopProfile := func() {
		if prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
			prof = nil
		}
	}
	defer stopProfile()

	// As cmd/fabric-agent's run.
	if err := agent.SetRouterSysctls(); err != nil {
		log.Warn("kernel settings for routing", "err", err)
	}
	prog, err := fib.New(fib.WithLogger(log))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: FIB programmer:", err)
		return 1
	}
	defer prog.Close()
	routing := bgp.NewReconciler(gobgp.New(gobgp.WithLogger(log)), bgp.ProgrammerFIB{P: prog},
		bgp.WithLogger(log), bgp.WithListenPort(179))
	ctx := context.Background()
	d := bgp.Desired{
		ASN:      uint32(asn),
		RouterID: rid,
		Networks: []netip.Prefix{netip.PrefixFrom(rid, 32)},
		Underlay: []bgp.UnderlayPeer{{Interface: os.Getenv(benchIfaceEnv), Description: "feeder"}},
	}
	if err := routing.Apply(ctx, d); err != nil {
		fmt.Fprintln(os.Stderr, "helper: apply:", err)
		return 1
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "profile-stop":
			stopProfile()
			if name := os.Getenv(benchMemProfileEnv); name != "" {
				if err := writeHeapProfile(name); err != nil {
					log.Warn("heap profile", "err", err)
				}
			}
			fmt.Println("ok")
		default:
			fmt.Println("unknown command")
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := routing.Stop(sctx); err != nil {
		log.Warn("stopping BGP", "err", err)
	}
	return 0
}

func writeHeapProfile(name string) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	runtime.GC() // the profile shows the heap as of the last GC
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// projectDUT is the helper process running our stack.
type projectDUT struct {
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *bufio.Reader
	logs   *syncLog
	done   chan struct{}
}

// syncLog is the helper's stderr, written by one goroutine and read by the
// test.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(line + "\n")
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProjectDUT starts the helper in ns and waits for its "ready".
func startProjectDUT(t *testing.T, ns, iface string, asn uint32, rid netip.Addr, profile, memProfile string) *projectDUT {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, exe, "-test.run=^TestBGPBenchHelper$", "-test.timeout=0")
	cmd.Env = append(os.Environ(), benchHelperEnv+"=1", benchIfaceEnv+"="+iface,
		benchASNEnv+"="+strconv.FormatUint(uint64(asn), 10), benchRouterIDEnv+"="+rid.String())
	if profile != "" {
		cmd.Env = append(cmd.Env, benchProfileEnv+"="+profile)
	}
	if memProfile != "" {
		cmd.Env = append(cmd.Env, benchMemProfileEnv+"="+memProfile)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	logR, logW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, logW
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the helper: %v", err)
	}
	inR.Close()
	outW.Close()
	logW.Close()
	d := &projectDUT{cmd: cmd, stdin: inW, stdout: bufio.NewReader(outR), logs: &syncLog{}, done: make(chan struct{})}
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(logR)
		for sc.Scan() {
			d.logs.add(sc.Text())
		}
	}()
	go func() {
		<-logDone
		cmd.Wait()
		close(d.done)
	}()
	line, err := d.stdout.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		d.stop()
		t.Fatalf("helper did not get ready (%q, %v); its log:\n%s", line, err, d.logs.String())
	}
	return d
}

func (d *projectDUT) pid() int { return d.cmd.Process.Pid }

// stopProfile ends the helper's CPU profile.
func (d *projectDUT) stopProfile() error {
	if _, err := d.stdin.WriteString("profile-stop\n"); err != nil {
		return err
	}
	line, err := d.stdout.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ok" {
		return fmt.Errorf("helper answered %q: %v", line, err)
	}
	return nil
}

// stop closes the helper's stdin (it stops the reconciler and exits) and
// kills it when it does not exit in time. Safe to call twice.
func (d *projectDUT) stop() {
	d.stdin.Close()
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// FRR in namespaces: zebra and bgpd with their pathspace under
// /var/run/frr/<ns> (as bgp/gobgp's FRR tests). bgpd reads its config file
// itself (-f): for the feeder's 100k network statements that takes about a
// second, where vtysh -f would send them one by one.
const frrDir = "/usr/lib/frr"

type frrInstance struct {
	ns  string
	dir string
}

// startFRRInstance starts zebra, then bgpd with bgpdConf as its startup
// config; stop (also registered as a cleanup) kills both.
func startFRRInstance(t *testing.T, ns, bgpdConf string) *frrInstance {
	t.Helper()
	f := &frrInstance{ns: ns, dir: filepath.Join("/var/run/frr", ns)}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "chown", "frr:frr", f.dir)
	t.Cleanup(f.stop)
	conf := filepath.Join(f.dir, "bgpd.conf")
	if err := os.WriteFile(conf, []byte(bgpdConf), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "chown", "frr:frr", conf)
	mustRun(t, "ip", "netns", "exec", ns, frrDir+"/zebra", "-d", "-N", ns, "-f", "/dev/null", "--log", "file:"+filepath.Join(f.dir, "zebra.log"))
	mustRun(t, "ip", "netns", "exec", ns, frrDir+"/bgpd", "-d", "-N", ns, "-f", conf, "--log", "file:"+filepath.Join(f.dir, "bgpd.log"))
	waitUntil(t, 30*time.Second, "FRR vty in "+ns, func() (bool, string) {
		out, err := exec.Command("vtysh", "-N", ns, "-c", "show bgp ipv4 unicast statistics json").Output()
		return err == nil && len(out) > 0, string(out)
	})
	return f
}

// pids returns zebra's and bgpd's process ids.
func (f *frrInstance) pids() []int {
	var out []int
	for _, d := range []string{"zebra", "bgpd"} {
		b, err := os.ReadFile(filepath.Join(f.dir, d+".pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			out = append(out, pid)
		}
	}
	return out
}

// stop kills bgpd and zebra (by the pids they wrote) and removes their
// directory. Safe to call twice.
func (f *frrInstance) stop() {
	for _, pid := range f.pids() {
		if p, err := os.FindProcess(pid); err == nil {
			p.Signal(syscall.SIGKILL)
			for i := 0; i < 100 && p.Signal(syscall.Signal(0)) == nil; i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	os.RemoveAll(f.dir)
}

// vtysh runs vtysh commands (each its own -c) and returns stdout.
func (f *frrInstance) vtysh(cmds ...string) (string, error) {
	args := []string{"-N", f.ns}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	// stdout only: vtysh warns about its missing config on stderr.
	var stderr strings.Builder
	cmd := exec.Command("vtysh", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("vtysh %q: %w: %s%s", cmds, err, out, stderr.String())
	}
	return string(out), nil
}

// procStatus reads VmRSS and VmHWM (KiB) and the CPU time of a process.
func procStatus(pid int) (rss, hwm int64, cpu time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			rss, _ = strconv.ParseInt(f[0], 10, 64)
		case "VmHWM":
			hwm, _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return rss, hwm, 0, err
	}
	// Fields after the ")" of the command name: utime and stime are the
	// 12th and 13th.
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return rss, hwm, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ
	return rss, hwm, time.Duration(ut+st) * time.Second / hz, nil
}

// routeCounter counts the routes of one table and protocol in a namespace
// with a netlink dump. With strict checking the kernel filters the dump by
// table and protocol itself; the counter still checks both in each message
// header and parses nothing else, so a poll of 100k routes stays cheap.
type routeCounter struct {
	fd  int
	seq uint32
	buf []byte
}

func newRouteCounter(ns string) (*routeCounter, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("opening netns %s: %w", ns, err)
	}
	defer h.Close()
	// A goroutine of its own: when it cannot return to the original
	// namespace it exits with its thread still locked, and the runtime
	// throws that thread away.
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- result{-1, err}
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			ch <- result{-1, fmt.Errorf("entering netns %s: %w", ns, err)}
			return
		}
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{fd, err}
	}()
	res := <-ch
	fd, serr := res.fd, res.err
	if serr != nil {
		return nil, fmt.Errorf("netlink socket: %w", serr)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	// Best effort: without it the kernel dumps every table and the
	// counter filters.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1)
	return &routeCounter{fd: fd, buf: make([]byte, 1<<20)}, nil
}

func (c *routeCounter) close() { unix.Close(c.fd) }

// count returns the number of IPv4 routes in table with protocol proto,
// retrying an interrupted dump.
func (c *routeCounter) count(table uint32, proto uint8) (int, error) {
	for range 10 {
		n, err := c.dump(table, proto)
		if errors.Is(err, errDumpInterrupted) {
			continue
		}
		return n, err
	}
	return 0, errDumpInterrupted
}

var errDumpInterrupted = errors.New("netlink dump interrupted")

func (c *routeCounter) dump(table uint32, proto uint8) (int, error) {
	c.seq++
	const reqLen = unix.SizeofNlMsghdr + unix.SizeofRtMsg + 8
	req := make([]byte, reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], reqLen)
	ne.PutUint16(req[4:], unix.RTM_GETROUTE)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], c.seq)
	rt := req[unix.SizeofNlMsghdr:]
	rt[0] = unix.AF_INET
	rt[4] = byte(min(table, 255)) // rtm_table; RTA_TABLE carries the full id
	rt[5] = proto
	a := rt[unix.SizeofRtMsg:]
	ne.PutUint16(a[0:], 8)
	ne.PutUint16(a[2:], unix.RTA_TABLE)
	ne.PutUint32(a[4:], table)
	if err := unix.Sendto(c.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("netlink dump request: %w", err)
	}
	n, intr := 0, false
	for {
		m, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			return 0, fmt.Errorf("netlink dump: %w", err)
		}
		b := c.buf[:m]
		for len(b) >= unix.SizeofNlMsghdr {
			l := int(ne.Uint32(b[0:]))
			typ, flags, seq := ne.Uint16(b[4:]), ne.Uint16(b[6:]), ne.Uint32(b[8:])
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return 0, fmt.Errorf("netlink: bad message length %d", l)
			}
			msg := b[unix.SizeofNlMsghdr:l]
			b = b[min(len(b), (l+3)&^3):]
			if seq != c.seq {
				continue
			}
			if flags&unix.NLM_F_DUMP_INTR != 0 {
				intr = true
			}
			switch typ {
			case unix.NLMSG_DONE:
				if intr {
					return 0, errDumpInterrupted
				}
				return n, nil
			case unix.NLMSG_ERROR:
				if len(msg) >= 4 {
					if e := int32(ne.Uint32(msg)); e != 0 {
						return 0, fmt.Errorf("netlink dump: %w", unix.Errno(-e))
					}
				}
				return n, nil
			case unix.RTM_NEWROUTE:
				if len(msg) < unix.SizeofRtMsg || msg[5] != proto {
					continue
				}
				t := uint32(msg[4])
				if t == unix.RT_TABLE_COMPAT || table > 255 {
					t = attrTable(msg[unix.SizeofRtMsg:], t)
				}
				if t == table {
					n++
				}
			}
		}
	}
}

// attrTable returns the RTA_TABLE attribute of a route's attributes, def
// without one.
func attrTable(b []byte, def uint32) uint32 {
	ne := binary.NativeEndian
	for len(b) >= 4 {
		l, typ := int(ne.Uint16(b[0:])), ne.Uint16(b[2:])
		if l < 4 || l > len(b) {
			break
		}
		if typ == unix.RTA_TABLE && l >= 8 {
			return ne.Uint32(b[4:])
		}
		b = b[min(len(b), (l+3)&^3):]
	}
	return def
}

// Namespaces and commands.

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func nsRun(t *testing.T, ns string, args ...string) string {
	t.Helper()
	return mustRun(t, append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// addNetns creates a namespace with lo up and IPv6 DAD off (link-local
// addresses usable at once); del (also a cleanup) deletes it.
func addNetns(t *testing.T, name string) (del func()) {
	t.Helper()
	exec.Command("ip", "netns", "del", name).Run() // left over by a killed run
	mustRun(t, "ip", "netns", "add", name)
	del = func() { exec.Command("ip", "netns", "del", name).Run() }
	t.Cleanup(del)
	nsRun(t, name, "ip", "link", "set", "lo", "up")
	nsRun(t, name, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	return del
}

// waitUntil polls cond every 100 ms until it holds or d has passed (then
// the test fails with cond's last explanation).
func waitUntil(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", d, what, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
