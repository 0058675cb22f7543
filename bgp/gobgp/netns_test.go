package gobgp

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

// Privileged test tier: network namespaces and veths made with iproute2.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, veths)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip)")
	}
}

var nsSeq atomic.Int32

// newNetns creates a network namespace with lo up and IPv6 DAD off (so
// link-local addresses are usable at once); it is deleted on cleanup.
func newNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("gbt%d-%d", os.Getpid(), nsSeq.Add(1))
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	nsRun(t, name, "ip", "link", "set", "lo", "up")
	nsRun(t, name, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	return name
}

// veth connects nsA:ifA with nsB:ifB and brings both ends up.
func veth(t *testing.T, nsA, ifA, nsB, ifB string) {
	t.Helper()
	mustRun(t, "ip", "link", "add", ifA, "netns", nsA, "type", "veth", "peer", "name", ifB, "netns", nsB)
	nsRun(t, nsA, "ip", "link", "set", ifA, "up")
	nsRun(t, nsB, "ip", "link", "set", ifB, "up")
}

func nsRun(t *testing.T, ns string, args ...string) string {
	t.Helper()
	return mustRun(t, append([]string{"ip", "netns", "exec", ns}, args...)...)
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
