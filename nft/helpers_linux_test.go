//go:build linux

package nft

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// newNS creates a fresh network namespace and returns its handle; the
// calling thread stays where it was. Commands run in it with sh.
func newNS(t testing.TB) netns.NsHandle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces and program nftables")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("getting the current netns: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("creating a netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		// The thread is in the wrong namespace; it dies with the
		// goroutine since we return without unlocking.
		runtime.LockOSThread()
		t.Fatalf("returning to the original netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// nsPath names a namespace handle for nsenter.
func nsPath(ns netns.NsHandle) string { return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(ns)) }

// sh runs a command in ns and returns its combined output; a failure
// fails the test.
func sh(t testing.TB, ns netns.NsHandle, args ...string) string {
	t.Helper()
	out, err := shErr(ns, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func shErr(ns netns.NsHandle, args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"--net=" + nsPath(ns), "--"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// shLines runs several whitespace-separated commands in ns.
func shLines(t testing.TB, ns netns.NsHandle, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		sh(t, ns, strings.Fields(c)...)
	}
}

func newFirewall(t testing.TB, ns netns.NsHandle, opts ...Option) *Firewall {
	t.Helper()
	f, err := New(append([]Option{WithNetNSFd(int(ns))}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f
}

func mustApply(t testing.TB, f *Firewall, p Policy) ApplyResult {
	t.Helper()
	res, err := f.Apply(context.Background(), p)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}

// inNetns runs fn on a locked thread inside ns. Sockets created there stay
// in ns.
func inNetns(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("getting the current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return fmt.Errorf("entering netns: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		runtime.LockOSThread() // the thread dies with the goroutine
		return fmt.Errorf("returning to the original netns: %w", err)
	}
	return ferr
}
