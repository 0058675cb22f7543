//go:build linux

package fib

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var benchFlag = flag.Bool("fib.bench", false, "run TestBenchFIB (make bench)")

const benchRoutes = 100_000

// benchNetns makes a fresh namespace with veth0 10.255.0.0/31 up (peer
// 10.255.0.1) and returns it; the calling thread stays where it was.
func benchNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("returning to the original netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	shLines(t, ns,
		"ip link add veth0 type veth peer name peer0",
		"ip addr add 10.255.0.0/31 dev veth0",
		"ip link set veth0 up", "ip link set peer0 up",
	)
	return ns
}

func benchRouteSet() []Route {
	rs := make([]Route, benchRoutes)
	base := netip.MustParseAddr("10.128.0.0").As4()
	nh := []NextHop{{Addr: netip.MustParseAddr("10.255.0.1"), Interface: "veth0"}}
	for i := range rs {
		a := base
		a[1] += byte(i >> 16)
		a[2], a[3] = byte(i>>8), byte(i)
		rs[i] = Route{Table: 100, Prefix: netip.PrefixFrom(netip.AddrFrom4(a), 32), NextHops: nh}
	}
	return rs
}

// lastCPU is the CPU time of the last project or peer run.
var lastCPU time.Duration

// selfCPU is this process's user+system time.
func selfCPU(t *testing.T) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func countRoutes(t *testing.T, ns netns.NsHandle) int {
	t.Helper()
	out := sh(t, ns, "ip", "route", "show", "table", "100", "proto", "200", "metric", "20")
	return strings.Count(out, "\n")
}

// TestBenchFIB installs then deletes 100k /32 routes in a table, with the
// programmer and with `ip -batch` (the same routes, next hop, protocol and
// metric), each in a fresh namespace, and prints one bench line. Round 0
// warms both up and is not counted; the order alternates.
func TestBenchFIB(t *testing.T) {
	if !*benchFlag {
		t.Skip("benchmark: run with -args -fib.bench (make bench)")
	}
	if os.Geteuid() != 0 {
		t.Skip("benchmark: needs root to create network namespaces")
	}
	routes := benchRouteSet()
	dir := t.TempDir()
	var add, del strings.Builder
	for _, r := range routes {
		fmt.Fprintf(&add, "route add %s via 10.255.0.1 dev veth0 table 100 proto 200 metric 20\n", r.Prefix)
		fmt.Fprintf(&del, "route del %s table 100 proto 200 metric 20\n", r.Prefix)
	}
	addFile, delFile := filepath.Join(dir, "add.ip"), filepath.Join(dir, "del.ip")
	for f, s := range map[string]string{addFile: add.String(), delFile: del.String()} {
		if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// CPU time (user+system) is logged next to the wall time: on a busy
	// machine it shows the cost without the waiting for a core.
	var projCPU, ipCPU time.Duration
	project := func() (time.Duration, time.Duration) {
		ns := benchNetns(t)
		p, err := New(WithNetns(ns))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		cpu0 := selfCPU(t)
		start := time.Now()
		res, err := p.Apply(t.Context(), Batch{Set: routes})
		in := time.Since(start)
		if err != nil || res.Installed != benchRoutes {
			t.Fatalf("installing: %v (%d installed)", err, res.Installed)
		}
		if n := countRoutes(t, ns); n != benchRoutes {
			t.Fatalf("kernel has %d routes after the install, want %d", n, benchRoutes)
		}
		cpu1 := selfCPU(t)
		start = time.Now()
		res, err = p.Apply(t.Context(), Batch{Delete: routes})
		out := time.Since(start)
		lastCPU = cpu1 - cpu0 + selfCPU(t) - cpu1
		if err != nil || res.Deleted != benchRoutes {
			t.Fatalf("deleting: %v (%d deleted)", err, res.Deleted)
		}
		if n := countRoutes(t, ns); n != 0 {
			t.Fatalf("kernel has %d routes after the delete, want 0", n)
		}
		return in, out
	}
	ipBatch := func(ns netns.NsHandle, file string) time.Duration {
		var out []byte
		cmd := exec.Command("ip", "-batch", file)
		start := time.Now()
		err := inNetns(ns, func() error {
			var err error
			out, err = cmd.CombinedOutput()
			return err
		})
		d := time.Since(start)
		if cmd.ProcessState != nil {
			lastCPU += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		if err != nil {
			t.Fatalf("ip -batch %s: %v\n%s", file, err, out)
		}
		return d
	}
	peer := func() (time.Duration, time.Duration) {
		ns := benchNetns(t)
		lastCPU = 0
		in := ipBatch(ns, addFile)
		if n := countRoutes(t, ns); n != benchRoutes {
			t.Fatalf("kernel has %d routes after ip -batch, want %d", n, benchRoutes)
		}
		out := ipBatch(ns, delFile)
		if n := countRoutes(t, ns); n != 0 {
			t.Fatalf("kernel has %d routes after the ip -batch delete, want 0", n)
		}
		return in, out
	}

	const rounds = 3
	var proj, ip time.Duration
	for round := 0; round <= rounds; round++ {
		var pIn, pOut, iIn, iOut, pCPU, iCPU time.Duration
		if round%2 == 0 {
			pIn, pOut = project()
			pCPU = lastCPU
			iIn, iOut = peer()
			iCPU = lastCPU
		} else {
			iIn, iOut = peer()
			iCPU = lastCPU
			pIn, pOut = project()
			pCPU = lastCPU
		}
		t.Logf("round %d: programmer install %v delete %v (cpu %v); ip -batch install %v delete %v (cpu %v)", round, pIn.Round(time.Millisecond), pOut.Round(time.Millisecond), pCPU.Round(time.Millisecond), iIn.Round(time.Millisecond), iOut.Round(time.Millisecond), iCPU.Round(time.Millisecond))
		if round > 0 {
			proj += pIn + pOut
			ip += iIn + iOut
			projCPU += pCPU
			ipCPU += iCPU
		}
	}
	proj, ip = proj/rounds, ip/rounds
	t.Logf("mean cpu per round: programmer %v, ip -batch %v (ratio %.2f)", (projCPU / rounds).Round(time.Millisecond), (ipCPU / rounds).Round(time.Millisecond), float64(projCPU)/float64(ipCPU))
	fmt.Printf("bench: fib_install_delete_100k project=%s peer=%s ratio=%.2f\n", proj.Round(time.Microsecond), ip.Round(time.Microsecond), float64(proj)/float64(ip))
}
