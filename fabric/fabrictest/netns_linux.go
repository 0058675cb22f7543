package fabrictest

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
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

// RequireVRF skips the test when the kernel behind h cannot create VRF
// devices (the host kernel here; vmtest re-runs the package in the VM).
func RequireVRF(t testing.TB, h *netlink.Handle) {
	t.Helper()
	probe := &netlink.Vrf{LinkAttrs: netlink.LinkAttrs{Name: "vrfprobe"}, Table: 4242}
	err := h.LinkAdd(probe)
	if errors.Is(err, unix.EOPNOTSUPP) {
		_ = exec.Command("modprobe", "vrf").Run() // best effort; the kernel may autoload too
		err = h.LinkAdd(probe)
	}
	if errors.Is(err, unix.EOPNOTSUPP) {
		t.Skipf("this kernel cannot create VRF devices (%v); as root without FABRIC_NO_VM, "+
			"TestMain re-runs the package in the full-kernel VM (integration/vm/vmtest)", err)
	}
	if err != nil {
		t.Fatalf("creating a probe vrf: %v", err)
	}
	if err := h.LinkDel(probe); err != nil {
		t.Fatalf("deleting the probe vrf: %v", err)
	}
}
