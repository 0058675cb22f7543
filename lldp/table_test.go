package lldp

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func testFrame(chassis, port string, ttl time.Duration) *Frame {
	return &Frame{
		ChassisID:  ChassisID{Subtype: ChassisIDSubtypeLocallyAssigned, ID: chassis},
		PortID:     InterfaceNamePortID(port),
		TTL:        ttl,
		SystemName: chassis,
	}
}

func nbr(local string, f *Frame, seen time.Time) Neighbor {
	return Neighbor{
		Port: local, ChassisID: f.ChassisID, PortID: f.PortID, PortDescription: f.PortDescription,
		SystemName: f.SystemName, SystemDescription: f.SystemDescription, MgmtAddrs: f.MgmtAddrs,
		Capabilities: f.Capabilities, TTL: f.TTL, LastSeen: seen,
	}
}

func TestTableEvents(t *testing.T) {
	tab := NewTable(4, 16)
	f := testFrame("sw1", "swp1", 10*time.Second)

	type step struct {
		name       string
		port       string
		frame      *Frame
		at         time.Time
		wantEvents []Event
		wantResult UpdateResult
	}
	changed := testFrame("sw1", "swp1", 10*time.Second)
	changed.SystemDescription = "new"
	changed.MgmtAddrs = []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	longer := *changed
	longer.TTL = 20 * time.Second

	steps := []step{
		{"first frame adds", "eth0", f, t0,
			[]Event{{Type: Added, Neighbor: nbr("eth0", f, t0)}}, Stored},
		{"same frame refreshes silently", "eth0", f, t0.Add(time.Second), nil, Refreshed},
		{"new description changes", "eth0", changed, t0.Add(2 * time.Second),
			[]Event{{Type: Changed, Neighbor: nbr("eth0", changed, t0.Add(2*time.Second))}}, Stored},
		{"TTL alone is a refresh", "eth0", &longer, t0.Add(3 * time.Second), nil, Refreshed},
		{"same MSAP on another port is another neighbour", "eth1", f, t0.Add(3 * time.Second),
			[]Event{{Type: Added, Neighbor: nbr("eth1", f, t0.Add(3*time.Second))}}, Stored},
		{"shutdown removes at once", "eth0", testFrame("sw1", "swp1", 0), t0.Add(4 * time.Second),
			[]Event{{Type: Removed, Neighbor: nbr("eth0", &longer, t0.Add(3*time.Second)), Reason: ReasonShutdown}},
			RemovedByShutdown},
		{"shutdown of unknown is ignored", "eth0", testFrame("sw9", "x", 0), t0.Add(5 * time.Second),
			nil, IgnoredShutdown},
	}
	for _, s := range steps {
		events, res := tab.Update(s.port, s.frame, s.at)
		if diff := cmp.Diff(s.wantEvents, events, cmpAddr); diff != "" {
			t.Errorf("%s: events (-want +got):\n%s", s.name, diff)
		}
		if res != s.wantResult {
			t.Errorf("%s: result %v, want %v", s.name, res, s.wantResult)
		}
	}
	want := []Neighbor{nbr("eth1", f, t0.Add(3*time.Second))}
	if diff := cmp.Diff(want, tab.Neighbors(), cmpAddr); diff != "" {
		t.Errorf("Neighbors (-want +got):\n%s", diff)
	}
}

func TestTableExpiry(t *testing.T) {
	tab := NewTable(4, 16)
	a := testFrame("a", "p", 4*time.Second)
	b := testFrame("b", "p", 10*time.Second)
	tab.Update("eth0", a, t0)
	tab.Update("eth1", b, t0)

	if next, ok := tab.NextExpiry(); !ok || !next.Equal(t0.Add(4*time.Second)) {
		t.Errorf("NextExpiry = %v, %v; want %v", next, ok, t0.Add(4*time.Second))
	}
	if ev := tab.Expire(t0.Add(4*time.Second - time.Nanosecond)); len(ev) != 0 {
		t.Errorf("expired too early: %v", ev)
	}
	// A refresh pushes the expiry out.
	tab.Update("eth1", b, t0.Add(3*time.Second))

	got := tab.Expire(t0.Add(4 * time.Second))
	want := []Event{{Type: Removed, Neighbor: nbr("eth0", a, t0), Reason: ReasonExpired}}
	if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
		t.Errorf("Expire at 4s (-want +got):\n%s", diff)
	}
	if ev := tab.Expire(t0.Add(12 * time.Second)); len(ev) != 0 {
		t.Errorf("refreshed neighbour expired at 12s: %v", ev)
	}
	got = tab.Expire(t0.Add(13 * time.Second))
	want = []Event{{Type: Removed, Neighbor: nbr("eth1", b, t0.Add(3*time.Second)), Reason: ReasonExpired}}
	if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
		t.Errorf("Expire at 13s (-want +got):\n%s", diff)
	}
	if n := tab.Len(); n != 0 {
		t.Errorf("Len = %d after all expired", n)
	}
	if _, ok := tab.NextExpiry(); ok {
		t.Error("NextExpiry on an empty table reports one")
	}
	if c := tab.Counters(); c.Expired != 2 {
		t.Errorf("Counters.Expired = %d, want 2", c.Expired)
	}
}

func TestTableRemovePort(t *testing.T) {
	tab := NewTable(4, 16)
	a, b := testFrame("a", "p", time.Minute), testFrame("b", "p", time.Minute)
	tab.Update("eth0", a, t0)
	tab.Update("eth0", b, t0)
	tab.Update("eth1", a, t0)
	got := tab.RemovePort("eth0")
	want := []Event{
		{Type: Removed, Neighbor: nbr("eth0", a, t0), Reason: ReasonPortGone},
		{Type: Removed, Neighbor: nbr("eth0", b, t0), Reason: ReasonPortGone},
	}
	if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
		t.Errorf("RemovePort (-want +got):\n%s", diff)
	}
	if n := tab.Len(); n != 1 {
		t.Errorf("Len = %d, want 1", n)
	}
}

func TestTableBounds(t *testing.T) {
	const perPort, total = 3, 5
	tab := NewTable(perPort, total)

	// A legitimate neighbour on eth1, then a flood of distinct chassis IDs
	// on eth0.
	legit := testFrame("legit", "p", time.Hour)
	tab.Update("eth1", legit, t0)
	for i := range 1000 {
		f := testFrame(fmt.Sprintf("flood%04d", i), "p", time.Hour)
		tab.Update("eth0", f, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if n := tab.Len(); n != 1+perPort {
		t.Fatalf("Len = %d, want %d", n, 1+perPort)
	}
	// The flooded port keeps its most recent neighbours; eth1 is untouched.
	var got []string
	for _, n := range tab.Neighbors() {
		got = append(got, n.Port+"/"+n.ChassisID.ID)
	}
	want := []string{"eth0/flood0997", "eth0/flood0998", "eth0/flood0999", "eth1/legit"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("neighbours after per-port flood (-want +got):\n%s", diff)
	}
	if c := tab.Counters(); c.Evicted != 1000-perPort || c.Refused != 0 {
		t.Errorf("Counters = %+v, want Evicted %d, Refused 0", c, 1000-perPort)
	}

	// A flood spread over many ports hits the overall bound: new neighbours
	// are refused, existing ones stay.
	var refused int
	for i := range 1000 {
		f := testFrame(fmt.Sprintf("spread%04d", i), "p", time.Hour)
		if _, res := tab.Update(fmt.Sprintf("port%d", i), f, t0); res == RefusedByBound {
			refused++
		}
	}
	if n := tab.Len(); n != total {
		t.Errorf("Len = %d, want the overall bound %d", n, total)
	}
	if refused != 1000-(total-1-perPort) {
		t.Errorf("refused %d, want %d", refused, 1000-(total-1-perPort))
	}
	if c := tab.Counters(); c.Refused != uint64(refused) {
		t.Errorf("Counters.Refused = %d, want %d", c.Refused, refused)
	}
	// Known neighbours still refresh and still leave by shutdown at the bound.
	if _, res := tab.Update("eth1", legit, t0.Add(time.Minute)); res != Refreshed {
		t.Errorf("refresh at the bound: %v, want Refreshed", res)
	}
	if _, res := tab.Update("eth1", testFrame("legit", "p", 0), t0.Add(time.Minute)); res != RemovedByShutdown {
		t.Errorf("shutdown at the bound: %v, want RemovedByShutdown", res)
	}
}
