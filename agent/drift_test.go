package agent

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/metalfabric/fabric/fabric"
	ft "github.com/metalfabric/fabric/fabric/fabrictest"
)

// equateNetip compares netip values (fabric.Desired holds some).
var equateNetip = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

// driftAgent is a test agent with a fake event channel.
type driftAgent struct {
	*testAgent
	events chan fabric.Event
	checks chan driftCheck
}

// runDriftAgent runs an agent on k whose kernel events come from the
// returned channel (unbuffered: a send returns once the agent has the event).
func runDriftAgent(t *testing.T, addr string, k fabric.Kernel, opts ...Option) *driftAgent {
	t.Helper()
	events := make(chan fabric.Event)
	da := &driftAgent{events: events, checks: make(chan driftCheck, 100)}
	opts = append([]Option{
		WithEvents(func(context.Context) (<-chan fabric.Event, error) { return events, nil }),
		func(a *Agent) { a.onDriftCheck = func(c driftCheck) { da.checks <- c } },
	}, opts...)
	da.testAgent = runAgent(t, addr, k, opts...)
	return da
}

func (da *driftAgent) send(t *testing.T, evs ...fabric.Event) {
	t.Helper()
	for _, e := range evs {
		select {
		case da.events <- e:
		case <-time.After(waitFor):
			t.Fatalf("the agent does not take kernel events (sending %v)", e)
		}
	}
}

func (da *driftAgent) waitCheck(t *testing.T) driftCheck {
	t.Helper()
	select {
	case c := <-da.checks:
		return c
	case <-time.After(waitFor):
		t.Fatal("no drift check")
		return driftCheck{}
	}
}

func linkEvent(op fabric.EventOp, name string) fabric.Event {
	return fabric.Event{Kind: fabric.EventLink, Op: op, Link: name}
}

// byHand makes a change to k the way an operator would, and forgets it in
// the record of calls.
func byHand(t *testing.T, k *ft.Kernel, change func(ctx context.Context) error) {
	t.Helper()
	if err := change(t.Context()); err != nil {
		t.Fatalf("change by hand: %v", err)
	}
	k.ResetCalls()
}

// touches returns the calls that name link.
func touches(calls []string, link string) []string {
	var out []string
	for _, c := range calls {
		if slices.Contains(strings.Fields(c), link) {
			out = append(out, c)
		}
	}
	return out
}

func TestDriftRepairsManagedObject(t *testing.T) {
	k := fakeKernel()
	ctl := newFakeController(snapshot(1, vrf(10010, "swp1")))
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	da := runDriftAgent(t, addr, k)
	if v, errs := statusSummary(ctl.waitStatus(t)); v != 1 || errs != nil {
		t.Fatalf("status: version %d, errors %q; want 1, none", v, errs)
	}
	want := k.State().Owned()
	if l, _ := k.Link("swp1"); l.Master != "vrf10010" {
		t.Fatalf("after version 1, swp1 master = %q, want vrf10010", l.Master)
	}

	// The VRF is deleted by hand: the kernel releases swp1 with it.
	byHand(t, k, func(ctx context.Context) error { return k.DeleteLink(ctx, "vrf10010") })
	start := time.Now()
	da.send(t, linkEvent(fabric.EventDelete, "vrf10010"), linkEvent(fabric.EventChange, "swp1"))
	c := da.waitCheck(t)
	t.Logf("repaired %v after the events (debounce %v): %q", time.Since(start), DefaultDriftDebounce, c.repaired)
	if c.err != nil || c.unmanaged != nil || len(c.repaired) == 0 {
		t.Errorf("check: repaired %q, err %v, unmanaged %q; want a repair only", c.repaired, c.err, c.unmanaged)
	}
	if diff := cmp.Diff(want, k.State().Owned(), equateNetip); diff != "" {
		t.Errorf("kernel after the repair (-want +got):\n%s", diff)
	}
	if l, _ := k.Link("swp1"); l.Master != "vrf10010" {
		t.Errorf("after the repair, swp1 master = %q, want vrf10010", l.Master)
	}
	if calls := touches(k.Calls(), "swp2"); calls != nil {
		t.Errorf("the repair touched swp2, a port not handed over: %q", calls)
	}
	// The repair is reported with the same version.
	if v, errs := statusSummary(ctl.waitStatus(t)); v != 1 || errs != nil {
		t.Errorf("status after the repair: version %d, errors %q; want 1, none", v, errs)
	}
	if s := da.DriftStats(); s.Repairs != 1 || s.Checks != 1 || s.Unmanaged != 0 || s.LastRepairLatency < DefaultDriftDebounce {
		t.Errorf("drift stats = %+v, want 1 check, 1 repair after at least the debounce", s)
	}

	// The repair's own events find nothing to do.
	k.ResetCalls()
	da.send(t, linkEvent(fabric.EventAdd, "vrf10010"), linkEvent(fabric.EventChange, "vrf10010"), linkEvent(fabric.EventChange, "swp1"),
		fabric.Event{Kind: fabric.EventRoute, Op: fabric.EventAdd, Link: "vrf10010", Prefix: netip.MustParsePrefix("ff00::/8"), Table: 10010, KernelRoute: true})
	if c := da.waitCheck(t); c.repaired != nil || c.unmanaged != nil || c.err != nil {
		t.Errorf("check after the repair's own events = %+v, want nothing", c)
	}
	if calls := k.Calls(); len(calls) != 0 {
		t.Errorf("kernel calls after the repair's own events: %q", calls)
	}

	// A port released by hand is enslaved again, and nothing else changes.
	byHand(t, k, func(ctx context.Context) error { return k.SetNoMaster(ctx, "swp1") })
	da.send(t, linkEvent(fabric.EventChange, "swp1"))
	da.waitCheck(t)
	if diff := cmp.Diff([]string{"set swp1 master vrf10010"}, k.Calls()); diff != "" {
		t.Errorf("kernel calls of the repair (-want +got):\n%s", diff)
	}
}

func TestDriftReportsUnmanagedChange(t *testing.T) {
	k := fakeKernel()
	ctl := newFakeController(snapshot(1, vrf(10010, "swp1")))
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	da := runDriftAgent(t, addr, k)
	ctl.waitStatus(t)

	// eth0 leaves the foreign mgmt VRF, a foreign VRF appears, addresses
	// are added to a port not handed over and to one handed over, and the
	// kernel adds an IPv6 link-local address.
	byHand(t, k, func(ctx context.Context) error {
		return errors.Join(
			k.SetNoMaster(ctx, "eth0"),
			k.AddLink(ctx, fabric.Change{Op: fabric.OpAddLink, Link: "vrf99", Kind: fabric.KindVRF, Table: 99}, ""),
			k.AddAddr(ctx, fabric.Addr{Link: "swp3", Prefix: netip.MustParsePrefix("192.0.2.1/24")}),
			k.AddAddr(ctx, fabric.Addr{Link: "swp1", Prefix: netip.MustParsePrefix("192.0.2.9/24")}),
			k.AddAddr(ctx, fabric.Addr{Link: "swp3", Prefix: netip.MustParsePrefix("fe80::1/64")}),
		)
	})
	da.send(t, linkEvent(fabric.EventChange, "eth0"), linkEvent(fabric.EventAdd, "vrf99"),
		fabric.Event{Kind: fabric.EventAddr, Op: fabric.EventAdd, Link: "swp3", Prefix: netip.MustParsePrefix("192.0.2.1/24")},
		fabric.Event{Kind: fabric.EventRoute, Op: fabric.EventAdd, Link: "swp3", Prefix: netip.MustParsePrefix("192.0.2.0/24"), Table: 254, KernelRoute: true},
		fabric.Event{Kind: fabric.EventRoute, Op: fabric.EventAdd, Link: "swp3", Prefix: netip.MustParsePrefix("198.51.100.0/24"), Table: 254},
	)
	c := da.waitCheck(t)
	want := []string{
		"addr 192.0.2.1/24 added on swp3",
		"addr 192.0.2.9/24 added on swp1",
		`link eth0 changed: master "mgmt" -> ""`,
		"link vrf99 added",
		"route add 198.51.100.0/24 table 254 on swp3",
	}
	if diff := cmp.Diff(want, c.unmanaged); diff != "" {
		t.Errorf("unmanaged changes (-want +got):\n%s", diff)
	}
	if c.repaired != nil || c.err != nil {
		t.Errorf("check: repaired %q, err %v; want nothing", c.repaired, c.err)
	}
	if calls := k.Calls(); len(calls) != 0 {
		t.Errorf("unmanaged changes made kernel calls %q, want none", calls)
	}
	s := da.DriftStats()
	if s.Unmanaged != uint64(len(want)) || s.LastUnmanaged != want[len(want)-1] || s.Repairs != 0 {
		t.Errorf("drift stats = %+v, want %d unmanaged changes, the last one %q, no repair", s, len(want), want[len(want)-1])
	}
	if l, _ := k.Link("eth0"); l.Master != "" {
		t.Errorf("eth0 master = %q: an unmanaged change was reverted", l.Master)
	}
}

func TestDriftCoalescesEventStorm(t *testing.T) {
	k := fakeKernel()
	ctl := newFakeController(snapshot(1, vrf(10010, "swp1"), vrf(10020, "swp2")))
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	// A long debounce, so the whole storm surely falls into one window.
	da := runDriftAgent(t, addr, k, WithDriftDebounce(time.Second))
	ctl.waitStatus(t)
	want := k.State().Owned()
	reads := k.Reads()

	byHand(t, k, func(ctx context.Context) error {
		return errors.Join(k.DeleteLink(ctx, "vrf10010"), k.DeleteLink(ctx, "vrf10020"))
	})
	var storm []fabric.Event
	for i := range 500 {
		storm = append(storm, linkEvent(fabric.EventChange, []string{"swp1", "swp2", "swp3"}[i%3]))
	}
	da.send(t, storm...)
	c := da.waitCheck(t)
	if c.events != 500 {
		t.Errorf("first check saw %d events, want the whole storm of 500", c.events)
	}
	if diff := cmp.Diff(want, k.State().Owned(), equateNetip); diff != "" {
		t.Errorf("kernel after the repair (-want +got):\n%s", diff)
	}
	if s := da.DriftStats(); s.Checks != 1 || s.Repairs != 1 {
		t.Errorf("drift stats = %+v, want 1 check, 1 repair", s)
	}
	// One check reads the kernel a few times (look, plan, apply, read
	// back), not once per event.
	if n := k.Reads() - reads; n > 5 {
		t.Errorf("the storm caused %d kernel reads", n)
	}
}

func TestDriftNothingBeforeFirstApply(t *testing.T) {
	k := fakeKernel()
	ctl := newFakeController() // no config yet
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	da := runDriftAgent(t, addr, k, WithDriftDebounce(time.Millisecond))
	// Wait until the agent watches, so its only read (for registering) is
	// done.
	deadline := time.Now().Add(waitFor)
	for len(ctl.watched()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not start watching")
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := k.Reads()

	// Without a config the agent takes the events and drops them.
	da.send(t, linkEvent(fabric.EventDelete, "swp1"), linkEvent(fabric.EventAdd, "veth9"),
		fabric.Event{Kind: fabric.EventResync})
	da.send(t, linkEvent(fabric.EventChange, "swp2")) // the previous ones are handled
	if n := k.Reads() - before; n != 0 {
		t.Errorf("the kernel was read %d times for events before any config", n)
	}
	if calls := k.Calls(); len(calls) != 0 {
		t.Errorf("kernel calls before any config: %q", calls)
	}
	if s := da.DriftStats(); s.Checks != 0 {
		t.Errorf("drift stats = %+v before any config, want no check", s)
	}

	// A config that fails validation does not start drift handling either.
	ctl.push(snapshot(1, vrf(10010, "swp9")))
	if _, errs := statusSummary(ctl.waitStatus(t)); errs == nil {
		t.Fatal("status of an invalid config has no errors")
	}
	da.send(t, linkEvent(fabric.EventChange, "swp1"), linkEvent(fabric.EventChange, "swp2"))
	if s := da.DriftStats(); s.Checks != 0 {
		t.Errorf("drift stats = %+v after an invalid config, want no check", s)
	}
	if calls := k.Calls(); len(calls) != 0 {
		t.Errorf("kernel calls after an invalid config: %q", calls)
	}

	// The first good config starts it; the dropped events are gone.
	ctl.push(snapshot(2, vrf(10010, "swp1")))
	ctl.waitStatus(t)
	applied := k.Calls()
	da.send(t, linkEvent(fabric.EventChange, "swp3"))
	if c := da.waitCheck(t); c.events != 1 || c.repaired != nil {
		t.Errorf("first check = %+v, want 1 event, no repair", c)
	}
	if diff := cmp.Diff(applied, k.Calls()); diff != "" {
		t.Errorf("kernel calls besides applying version 2 (-want +got):\n%s", diff)
	}
}

func TestDriftRepairsWithoutController(t *testing.T) {
	k := fakeKernel()
	ctl := newFakeController(snapshot(1, vrf(10010, "swp1")))
	addr, stop := serve(t, ctl, "127.0.0.1:0")
	da := runDriftAgent(t, addr, k)
	ctl.waitStatus(t)

	stop()
	select {
	case <-da.sessionEnds:
	case <-time.After(waitFor):
		t.Fatal("the agent did not notice the controller going away")
	}
	byHand(t, k, func(ctx context.Context) error { return k.SetNoMaster(ctx, "swp1") })
	da.send(t, linkEvent(fabric.EventChange, "swp1"))
	if c := da.waitCheck(t); c.err != nil {
		t.Errorf("drift check without the controller: %v", c.err)
	}
	if diff := cmp.Diff([]string{"set swp1 master vrf10010"}, k.Calls()); diff != "" {
		t.Errorf("kernel calls (-want +got):\n%s", diff)
	}
}

func TestDriftFailedRepairIsReported(t *testing.T) {
	k := fakeKernel()
	ctl := newFakeController(snapshot(1, vrf(10010, "swp1")))
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	da := runDriftAgent(t, addr, k)
	ctl.waitStatus(t)

	// The port cannot be enslaved again: the status carries the error,
	// with the same version.
	k.FailOn("set swp1 master vrf10010", errors.New("injected"))
	byHand(t, k, func(ctx context.Context) error { return k.SetNoMaster(ctx, "swp1") })
	da.send(t, linkEvent(fabric.EventChange, "swp1"))
	if c := da.waitCheck(t); c.err == nil {
		t.Error("drift check of a failing repair has no error")
	}
	v, errs := statusSummary(ctl.waitStatus(t))
	if v != 1 || len(errs) != 1 || !strings.Contains(errs[0], "swp1") || !strings.Contains(errs[0], "injected") {
		t.Errorf("status after a failed repair: version %d, errors %q; want 1, the enslaving error", v, errs)
	}
}

func TestUnmanagedChanges(t *testing.T) {
	desired := fabric.Desired{
		Loopback: fabric.Loopback{Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}},
		Ports:    []fabric.Port{{Name: "swp1", VRF: "vrf10", AdminUp: true}},
		VRFs:     []fabric.VRF{{Name: "vrf10", Table: 10}},
	}
	base := fabric.Actual{
		Links: []fabric.Link{
			ft.Loopback(), ft.In(ft.Port("swp1"), "vrf10"), ft.Port("swp2"), ft.VRF("vrf10", 10, true),
			ft.VRF("mgmt", 1000, false), ft.In(ft.Port("eth0"), "mgmt"),
		},
		Addrs: []fabric.Addr{{Link: "lo", Prefix: netip.MustParsePrefix("10.0.0.1/32")}},
	}
	for i := range base.Links {
		base.Links[i].Index = i + 1
	}
	with := func(f func(a *fabric.Actual)) fabric.Actual {
		a := fabric.Actual{Links: slices.Clone(base.Links), Addrs: slices.Clone(base.Addrs)}
		f(&a)
		return a
	}
	pfx := netip.MustParsePrefix
	tests := []struct {
		name   string
		after  fabric.Actual
		events []fabric.Event
		want   []string
	}{
		{name: "nothing", after: base},
		{
			name:  "carrier only",
			after: with(func(a *fabric.Actual) { a.Links[2].OperState = "lowerlayerdown" }),
		},
		{
			name: "managed objects",
			after: with(func(a *fabric.Actual) {
				a.Links[1].Master = ""
				a.Links = slices.Delete(a.Links, 3, 4) // vrf10 gone
				a.Addrs = []fabric.Addr{
					{Link: "swp1", Prefix: pfx("192.0.2.1/31"), Label: "swp1" + fabric.AddrLabelSuffix}, // the agent's
					{Link: "swp2", Prefix: pfx("fe80::2/64")},                                           // addrconf
				}
			}),
			events: []fabric.Event{
				{Kind: fabric.EventAddr, Op: fabric.EventDelete, Link: "lo", Prefix: pfx("10.0.0.1/32")},
				{Kind: fabric.EventRoute, Op: fabric.EventAdd, Index: 2, Prefix: pfx("192.0.2.0/24"), Table: 10},
			},
		},
		{
			name: "unmanaged",
			after: with(func(a *fabric.Actual) {
				a.Links[2].AdminUp = false
				a.Links[2].MTU = 1500
				a.Links = slices.Delete(a.Links, 4, 5) // mgmt gone
				a.Links[4].Master = ""                 // eth0
				a.Links = append(a.Links, fabric.Link{Name: "veth9", Index: 9, Kind: fabric.KindVeth})
				a.Addrs = append(a.Addrs, fabric.Addr{Link: "lo", Prefix: pfx("10.9.9.9/32")}, fabric.Addr{Link: "swp2", Prefix: pfx("2001:db8::1/64")})
			}),
			events: []fabric.Event{
				{Kind: fabric.EventRoute, Op: fabric.EventAdd, Index: 3, Prefix: pfx("192.0.2.0/24"), Table: 254},
				{Kind: fabric.EventRoute, Op: fabric.EventDelete, Prefix: pfx("0.0.0.0/0"), Table: 254},
				{Kind: fabric.EventRoute, Op: fabric.EventAdd, Index: 3, Prefix: pfx("2001:db8::/64"), Table: 254, KernelRoute: true},
				{Kind: fabric.EventLink, Op: fabric.EventAdd, Link: "veth9"},
			},
			want: []string{
				"addr 10.9.9.9/32 added on lo",
				"addr 2001:db8::1/64 added on swp2",
				`link eth0 changed: master "mgmt" -> ""`,
				"link mgmt removed",
				"link swp2 changed: admin up true -> false, mtu 9000 -> 1500",
				"link veth9 added",
				"route add 192.0.2.0/24 table 254 on swp2",
				"route delete 0.0.0.0/0 table 254 on -",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := unmanagedChanges(desired, base, tt.after, tt.events)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("unmanagedChanges (-want +got):\n%s", diff)
			}
		})
	}
}
