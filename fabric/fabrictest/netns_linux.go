package fabrictest

import (
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NewNetns creates a fresh network namespace for a privileged test and
// returns it with a netlink handle for it; both are closed at the end of the
// test. No thread stays in the namespace, so the test's own traffic (gRPC on
// loopback) stays in the caller's namespace. Without root it skips the test.
func NewNetns(t testing.TB) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create a network namespace")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("getting the current netns: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("creating a netns: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with the goroutine.
		ns.Close()
		t.Fatalf("returning to the original netns: %v", err)
	}
	runtime.UnlockOSThread()
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in the new netns: %v", err)
	}
	t.Cleanup(h.Close)
	return ns, h
}
