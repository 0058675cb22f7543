package agent

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalfabric/fabric/bgp/fib"
	"github.com/metalfabric/fabric/fabric"
	"github.com/metalfabric/fabric/fabric/fabrictest"
)

// fakeCleanupFIB records the calls in log.
type fakeCleanupFIB struct {
	log    *[]string
	routes []fib.Route
}

func (f *fakeCleanupFIB) Sync(ctx context.Context, routes []fib.Route, remotes []fib.Remote) (fib.Result, error) {
	*f.log = append(*f.log, "fib sync")
	if len(routes)+len(remotes) > 0 {
		return fib.Result{}, errors.New("cleanup must sync to nothing")
	}
	n := len(f.routes)
	f.routes = nil
	return fib.Result{Deleted: n}, nil
}

func (f *fakeCleanupFIB) Apply(ctx context.Context, b fib.Batch) (fib.Result, error) {
	*f.log = append(*f.log, "fib apply")
	if len(b.Set)+len(b.Delete)+len(b.SetRemotes)+len(b.DeleteRemotes) > 0 {
		return fib.Result{}, errors.New("the dry run must apply an empty batch")
	}
	return fib.Result{}, nil
}

func (f *fakeCleanupFIB) Installed() []fib.Route { return f.routes }

type fakeCleanupFirewall struct{ log *[]string }

func (f fakeCleanupFirewall) Delete(ctx context.Context) error {
	*f.log = append(*f.log, "nft delete")
	return nil
}

// cleanupKernel is a device the agent configured, with foreign things next
// to ours.
func cleanupKernel() *fabrictest.Kernel {
	k := fabrictest.New(
		fabrictest.Loopback(),
		fabrictest.In(fabrictest.Port("swp1"), "bridge"),
		fabrictest.In(fabrictest.Port("swp2"), "vrf10"),
		fabrictest.In(fabrictest.Port("eth5"), "br-foreign"),
		fabrictest.Port("eth0"),
		fabrictest.Bridge("bridge", true),
		fabrictest.VRF("vrf10", 10, true),
		fabrictest.Bridge("br-foreign", false),
		fabrictest.VRF("mgmt", 100, false),
	)
	k.SetAddrs(
		fabric.Addr{Link: "lo", Prefix: netip.MustParsePrefix("127.0.0.1/8")},
		fabric.Addr{Link: "lo", Prefix: netip.MustParsePrefix("10.255.0.1/32"), Label: "lo:fab"},
		fabric.Addr{Link: "lo", Prefix: netip.MustParsePrefix("10.9.9.9/32")},
		fabric.Addr{Link: "swp1", Prefix: netip.MustParsePrefix("192.0.2.1/31"), Label: "swp1:fab"},
		fabric.Addr{Link: "eth0", Prefix: netip.MustParsePrefix("198.51.100.7/24")},
		fabric.Addr{Link: "vrf10", Prefix: netip.MustParsePrefix("10.10.0.1/32")},
	)
	return k
}

func TestCleanupRemovesOnlyOurs(t *testing.T) {
	var log []string
	k := cleanupKernel()
	k.SetHook(func(call string) {
		if call != "read" && !slices.Contains(log, "kernel") {
			log = append(log, "kernel")
		}
	})
	dir := t.TempDir()
	cache := filepath.Join(dir, "last-applied-leaf1.pb")
	for _, f := range []string{cache, cache + ".tmp-123", filepath.Join(dir, "last-applied-leaf2.pb"), filepath.Join(dir, "other")} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fibFake := &fakeCleanupFIB{log: &log, routes: make([]fib.Route, 3)}
	var out bytes.Buffer
	err := Cleanup(t.Context(), CleanupConfig{
		OpenFIB:       func() (CleanupFIB, error) { return fibFake, nil },
		OpenFirewall:  func() (CleanupFirewall, error) { return fakeCleanupFirewall{&log}, nil },
		FirewallTable: "fabric",
		OpenKernel:    func() (fabric.Kernel, error) { return k, nil },
		StateDir:      dir,
		Hostname:      "leaf1",
		Out:           &out,
	})
	if err != nil {
		t.Fatalf("Cleanup: %v\n%s", err, out.String())
	}
	if want := []string{"fib sync", "nft delete", "kernel"}; !slices.Equal(log, want) {
		t.Errorf("steps ran as %q, want %q (routes before the devices they use)", log, want)
	}

	st := k.State()
	var names []string
	for _, l := range st.Links {
		names = append(names, l.Name)
		if l.Owned() {
			t.Errorf("marked link %s left", l.Name)
		}
	}
	if want := []string{"br-foreign", "eth0", "eth5", "lo", "mgmt", "swp1", "swp2"}; !slices.Equal(names, want) {
		t.Errorf("links after cleanup = %q, want %q", names, want)
	}
	for _, name := range []string{"swp1", "swp2"} {
		if l, _ := k.Link(name); l.Master != "" || !l.AdminUp || l.MTU != 9000 {
			t.Errorf("%s after cleanup: master %q, up %v, mtu %d; want released and otherwise untouched", name, l.Master, l.AdminUp, l.MTU)
		}
	}
	if l, _ := k.Link("eth5"); l.Master != "br-foreign" {
		t.Errorf("eth5 master = %q, want br-foreign (foreign bridge untouched)", l.Master)
	}
	var addrs []string
	for _, a := range st.Addrs {
		addrs = append(addrs, a.Link+" "+a.Prefix.String())
	}
	slices.Sort(addrs)
	want := []string{"eth0 198.51.100.7/24", "lo 10.9.9.9/32", "lo 127.0.0.1/8"}
	if diff := cmp.Diff(want, addrs); diff != "" {
		t.Errorf("addresses after cleanup (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(fabric.Desired{}, st.Owned()); diff != "" {
		t.Errorf("owned state after cleanup (-want +got):\n%s", diff)
	}

	for _, f := range []string{cache, cache + ".tmp-123"} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there (%v)", f, err)
		}
	}
	for _, f := range []string{"last-applied-leaf2.pb", "other"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("foreign file %s: %v", f, err)
		}
	}

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("output has %d lines, want one per step:\n%s", len(lines), out.String())
	}
	for i, want := range []string{"routes: removed 3 route(s)", "firewall: deleted table inet fabric", "links and addresses: made ", "cached config: removed " + cache} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d = %q, want it to start with %q", i, lines[i], want)
		}
	}
	if !strings.Contains(lines[2], "delete bridge") || !strings.Contains(lines[2], "10.255.0.1/32") {
		t.Errorf("fabric line does not name what was removed: %q", lines[2])
	}

	// A second run finds nothing left.
	out.Reset()
	k.ResetCalls()
	if err := Cleanup(t.Context(), CleanupConfig{
		OpenKernel: func() (fabric.Kernel, error) { return k, nil },
		StateDir:   dir, Hostname: "leaf1", Out: &out,
	}); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	if calls := k.Calls(); len(calls) != 0 {
		t.Errorf("second cleanup changed the kernel: %q", calls)
	}
}

func TestCleanupDryRunChangesNothing(t *testing.T) {
	var log []string
	k := cleanupKernel()
	before := k.State()
	dir := t.TempDir()
	cache := filepath.Join(dir, "last-applied-leaf1.pb")
	if err := os.WriteFile(cache, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := Cleanup(t.Context(), CleanupConfig{
		OpenFIB:       func() (CleanupFIB, error) { return &fakeCleanupFIB{log: &log, routes: make([]fib.Route, 2)}, nil },
		OpenFirewall:  func() (CleanupFirewall, error) { return fakeCleanupFirewall{&log}, nil },
		FirewallTable: "fabric",
		OpenKernel:    func() (fabric.Kernel, error) { return k, nil },
		StateDir:      dir,
		Hostname:      "leaf1",
		DryRun:        true,
		Out:           &out,
	})
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if want := []string{"fib apply"}; !slices.Equal(log, want) {
		t.Errorf("dry run calls = %q, want %q", log, want)
	}
	if calls := k.Calls(); len(calls) != 0 {
		t.Errorf("dry run changed the kernel: %q", calls)
	}
	if diff := cmp.Diff(before, k.State()); diff != "" {
		t.Errorf("dry run changed the state (-before +after):\n%s", diff)
	}
	if _, err := os.Stat(cache); err != nil {
		t.Errorf("dry run removed the cache: %v", err)
	}
	for _, want := range []string{"routes: would remove 2 route(s)", "firewall: would delete table inet fabric", "links and addresses: would make ", "delete bridge", "cached config: would remove " + cache} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCleanupGoesOnAfterAFailedStep(t *testing.T) {
	k := cleanupKernel()
	k.FailOn("delete address 10.255.0.1/32 dev lo", errors.New("boom"))
	dir := t.TempDir()
	cache := filepath.Join(dir, "last-applied-leaf1.pb")
	if err := os.WriteFile(cache, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := Cleanup(t.Context(), CleanupConfig{
		OpenFIB:    func() (CleanupFIB, error) { return nil, errors.New("no netlink") },
		OpenKernel: func() (fabric.Kernel, error) { return k, nil },
		StateDir:   dir,
		Hostname:   "leaf1",
		Out:        &out,
	})
	if err == nil || !strings.Contains(err.Error(), "no netlink") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Cleanup error = %v, want both failures", err)
	}
	if _, ok := k.Link("bridge"); ok {
		t.Errorf("the marked bridge is left after an unrelated failure")
	}
	if _, err := os.Stat(cache); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cache still there after an earlier step failed: %v", err)
	}
	if !strings.Contains(out.String(), "routes: FAILED: ") || !strings.Contains(out.String(), "firewall: skipped") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestCleanupCachePathMatchesWithStateDir(t *testing.T) {
	a, err := New(Config{Controller: "127.0.0.1:1", Hostname: "leaf7", Role: RoleLeaf}, WithStateDir("/var/lib/x"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cacheFile("/var/lib/x", "leaf7"); got != a.cachePath {
		t.Errorf("cleanup removes %s, the agent writes %s", got, a.cachePath)
	}
}
