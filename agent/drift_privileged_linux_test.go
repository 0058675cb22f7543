//go:build linux

package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/metalfabric/fabric/fabric"
	"github.com/metalfabric/fabric/fabric/fabrictest"
)

// ipIn runs ip(8) in the namespace ns, the way an operator would.
func ipIn(t *testing.T, ns netns.NsHandle, args ...string) {
	t.Helper()
	nsPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(ns))
	cmd := exec.Command("nsenter", append([]string{"--net=" + nsPath, "ip"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestPrivilegedDriftRepair needs VRFs: as root, TestMain runs it in the
// full-kernel VM.
func TestPrivilegedDriftRepair(t *testing.T) {
	ns, h := fabrictest.NewNetns(t)
	for _, tool := range []string{"nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s to change the kernel by hand: %v", tool, err)
		}
	}
	fabrictest.RequireVRF(t, h)
	// swp1 and swp2 with carrier: both ends up.
	for _, name := range []string{"swp1", "swp2"} {
		ipIn(t, ns, "link", "add", name, "type", "veth", "peer", "name", "peer-"+name)
		ipIn(t, ns, "link", "set", name, "up")
		ipIn(t, ns, "link", "set", "peer-"+name, "up")
	}

	k := fabric.NewNetlink(h)
	ctl := newFakeController(snapshot(1, vrf(10010, "swp1")))
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	da := runDriftAgent(t, addr, k, WithEvents(func(ctx context.Context) (<-chan fabric.Event, error) {
		return fabric.WatchEvents(ctx, fabric.WithEventNetNS(int(ns)))
	}))
	if v, errs := statusSummary(ctl.waitStatus(t)); v != 1 || errs != nil {
		t.Fatalf("status: version %d, errors %q; want 1, none", v, errs)
	}

	// enslaved tells whether vrf10010 exists, is marked and up, and holds
	// swp1.
	enslaved := func() bool {
		vl, err := h.LinkByName("vrf10010")
		if err != nil {
			return false
		}
		if v, ok := vl.(*netlink.Vrf); !ok || v.Table != 10010 || v.Attrs().Alias != fabric.Marker || v.Attrs().Flags&unix.IFF_UP == 0 {
			return false
		}
		p, err := h.LinkByName("swp1")
		return err == nil && p.Attrs().MasterIndex == vl.Attrs().Index
	}
	// waitRepaired polls for the repair and returns how long it took.
	waitRepaired := func(what string, start time.Time) time.Duration {
		t.Helper()
		deadline := start.Add(waitFor)
		for !enslaved() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not repaired within %v", what, waitFor)
			}
			time.Sleep(5 * time.Millisecond)
		}
		d := time.Since(start)
		t.Logf("%s: repaired after %v (debounce %v)", what, d, DefaultDriftDebounce)
		if d > time.Second {
			t.Logf("%s: the repair took longer than a second (expected under TCG emulation; on hardware it is the debounce plus a few ms)", what)
		}
		return d
	}
	if !enslaved() {
		t.Fatal("after version 1, swp1 is not in vrf10010")
	}

	// The latency is measured from the moment ip(8) returned, and by the
	// agent from the first event of the burst.
	agentLatency := func(what string, repairs uint64) {
		t.Helper()
		deadline := time.Now().Add(waitFor)
		for da.DriftStats().Repairs <= repairs {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the repair is not counted", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("%s: the agent repaired %v after the first event", what, da.DriftStats().LastRepairLatency)
	}
	repairs := da.DriftStats().Repairs
	ipIn(t, ns, "link", "del", "vrf10010")
	waitRepaired("vrf10010 deleted by hand", time.Now())
	agentLatency("vrf10010 deleted by hand", repairs)

	repairs = da.DriftStats().Repairs
	ipIn(t, ns, "link", "set", "swp1", "nomaster")
	waitRepaired("swp1 released by hand", time.Now())
	agentLatency("swp1 released by hand", repairs)

	// Let the repairs' own events settle: after the second repair, a check
	// finds nothing to do.
	for c := da.waitCheck(t); !slices.Equal(c.repaired, []string{"set swp1 master vrf10010"}); c = da.waitCheck(t) {
	}
	for c := da.waitCheck(t); c.repaired != nil || c.err != nil; c = da.waitCheck(t) {
	}
	repairs = da.DriftStats().Repairs
	if repairs < 2 {
		t.Errorf("drift stats report %d repairs, want at least 2", repairs)
	}

	// An unrelated veth: reported, left alone, and swp1 keeps its carrier.
	swp1, err := h.LinkByName("swp1")
	if err != nil {
		t.Fatal(err)
	}
	linkEvents := make(chan netlink.LinkUpdate, 100)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribeWithOptions(linkEvents, done, netlink.LinkSubscribeOptions{Namespace: &ns}); err != nil {
		t.Fatalf("subscribing to link events: %v", err)
	}
	ipIn(t, ns, "link", "add", "veth9", "type", "veth", "peer", "name", "veth9p")
	var notes []string
	deadline := time.After(waitFor)
	for !slices.Contains(notes, "link veth9 added") {
		select {
		case c := <-da.checks:
			if c.repaired != nil {
				t.Errorf("an unrelated change caused a repair: %q", c.repaired)
			}
			notes = append(notes, c.unmanaged...)
		case <-deadline:
			t.Fatalf("veth9 was not reported; reported %q", notes)
		}
	}
	t.Logf("reported unmanaged changes: %q", notes)
	if s := da.DriftStats(); s.Unmanaged == 0 || s.Repairs != repairs {
		t.Errorf("drift stats = %+v, want unmanaged changes and still %d repairs", s, repairs)
	}
	v9, err := h.LinkByName("veth9")
	if err != nil {
		t.Fatalf("veth9 is gone: %v", err)
	}
	if v9.Attrs().MasterIndex != 0 || v9.Attrs().Flags&unix.IFF_UP != 0 {
		t.Errorf("veth9 was touched: master %d, flags %v", v9.Attrs().MasterIndex, v9.Attrs().Flags)
	}
	for {
		select {
		case u := <-linkEvents:
			if u.Attrs().Index == swp1.Attrs().Index {
				t.Errorf("swp1 changed during an unrelated change: %+v", u.Attrs())
			}
			continue
		default:
		}
		break
	}
	if got, _ := h.LinkByName("swp1"); got == nil || got.Attrs().OperState != netlink.OperUp || !enslaved() {
		t.Errorf("swp1 after an unrelated change: %+v, want oper up in vrf10010", got)
	}
}
