package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/ethernet"
	"google.golang.org/protobuf/testing/protocmp"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/fabric"
	ft "github.com/metalfabric/fabric/fabric/fabrictest"
	"github.com/metalfabric/fabric/lldp"
)

// fakeWire is an in-memory lldp.Dialer: every dial of a port opens a conn
// the test can inject the neighbour's frames into.
type fakeWire struct {
	mu     sync.Mutex
	conns  map[string]*fakeConn // the newest conn per port
	dialed []string             // every dial, in order
	open   chan string          // a port was dialed
}

func newFakeWire() *fakeWire {
	return &fakeWire{conns: map[string]*fakeConn{}, open: make(chan string, 100)}
}

func (w *fakeWire) dial(_ context.Context, port string) (lldp.Conn, error) {
	c := &fakeConn{hw: net.HardwareAddr{0x02, 0xaa, 0, 0, 0, byte(len(port))}, in: make(chan []byte, 16), closed: make(chan struct{})}
	w.mu.Lock()
	w.conns[port] = c
	w.dialed = append(w.dialed, port)
	w.mu.Unlock()
	w.open <- port
	return c, nil
}

func (w *fakeWire) dials() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.dialed)
}

func (w *fakeWire) conn(port string) *fakeConn {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.conns[port]
}

// waitOpen waits until all ports have been dialed.
func (w *fakeWire) waitOpen(t *testing.T, ports ...string) {
	t.Helper()
	seen := map[string]bool{}
	for _, p := range w.dials() {
		seen[p] = true
	}
	deadline := time.After(waitFor)
	for {
		missing := slices.DeleteFunc(slices.Clone(ports), func(p string) bool { return seen[p] })
		if len(missing) == 0 {
			return
		}
		select {
		case p := <-w.open:
			seen[p] = true
		case <-deadline:
			t.Fatalf("lldp did not open ports %v (dialed %v)", missing, w.dials())
		}
	}
}

// inject delivers a neighbour's LLDPDU on port.
func (w *fakeWire) inject(t *testing.T, port string, f lldp.Frame) {
	t.Helper()
	c := w.conn(port)
	if c == nil {
		t.Fatalf("port %s not open", port)
	}
	mac := net.HardwareAddr(f.ChassisID.ID)
	pdu, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b, err := (&ethernet.Frame{Destination: lldp.NearestBridge, Source: mac, EtherType: lldp.EtherType, Payload: pdu}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	select {
	case c.in <- b:
	case <-c.closed:
		t.Fatalf("port %s closed", port)
	}
}

type fakeConn struct {
	hw     net.HardwareAddr
	in     chan []byte
	once   sync.Once
	closed chan struct{}
}

func (c *fakeConn) ReadFrame(b []byte) (int, error) {
	select {
	case f := <-c.in:
		return copy(b, f), nil
	case <-c.closed:
		return 0, errors.New("closed")
	}
}

func (c *fakeConn) WriteFrame([]byte) error {
	select {
	case <-c.closed:
		return errors.New("closed")
	default:
		return nil
	}
}

func (c *fakeConn) HardwareAddr() net.HardwareAddr { return c.hw }

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *fakeConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// machineFrame is what lldpd on a machine NIC sends.
func machineFrame(name string, id byte, nic string) lldp.Frame {
	mac := net.HardwareAddr{0x02, 0x4d, 0, 0, 0, id}
	return lldp.Frame{
		ChassisID:       lldp.MACChassisID(mac),
		PortID:          lldp.PortID{Subtype: lldp.PortIDSubtypeMACAddress, ID: string(mac)},
		TTL:             120 * time.Second,
		PortDescription: nic,
		SystemName:      name,
	}
}

func machineNeighbor(port, name string, id byte, nic string) *apiv1.Neighbor {
	mac := net.HardwareAddr{0x02, 0x4d, 0, 0, 0, id}.String()
	return &apiv1.Neighbor{Port: port, ChassisId: mac, PortId: mac, PortDescription: nic, SystemName: name, TtlSeconds: 120}
}

// fakeLinkEvents is an EventSource that hands every subscriber its own
// channel; send delivers an event to all of them.
type fakeLinkEvents struct {
	mu   sync.Mutex
	subs []chan fabric.Event
}

func (e *fakeLinkEvents) source(ctx context.Context) (<-chan fabric.Event, error) {
	ch := make(chan fabric.Event, 16)
	e.mu.Lock()
	e.subs = append(e.subs, ch)
	e.mu.Unlock()
	return ch, nil
}

func (e *fakeLinkEvents) send(ev fabric.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ch := range e.subs {
		ch <- ev
	}
}

func lldpTestConfig(w *fakeWire) LLDPConfig {
	return LLDPConfig{
		Interval:       time.Second,
		MgmtInterface:  "eth0",
		ReportDebounce: 300 * time.Millisecond,
		Settle:         50 * time.Millisecond,
		Options:        []lldp.Option{lldp.WithDialer(w.dial), lldp.WithFastStart(0, 0)},
	}
}

// waitNeighbors returns the next neighbour report.
func waitNeighbors(t *testing.T, ctl *fakeController) *apiv1.ReportNeighborsRequest {
	t.Helper()
	select {
	case r := <-ctl.neighbors:
		return r
	case <-time.After(waitFor):
		t.Fatal("no neighbour report")
		return nil
	}
}

// noNeighborReport checks that no report arrives for a while (it proves
// only that none arrived in that time; the debounce is much shorter).
func noNeighborReport(t *testing.T, ctl *fakeController, d time.Duration) {
	t.Helper()
	select {
	case r := <-ctl.neighbors:
		t.Errorf("unexpected neighbour report: %v", r)
	case <-time.After(d):
	}
}

var ignoreLastSeen = protocmp.IgnoreFields(&apiv1.Neighbor{}, "last_seen")

func TestLLDPReportsDebouncedTable(t *testing.T) {
	k := fakeKernel()
	ctl := newFakeController()
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	w := newFakeWire()
	runAgent(t, addr, k, WithLLDP(lldpTestConfig(w)))
	w.waitOpen(t, "swp1", "swp2", "swp3")

	// Settled with no neighbours yet: the empty table, once.
	first := waitNeighbors(t, ctl)
	if diff := cmp.Diff(&apiv1.ReportNeighborsRequest{Hostname: "leaf1"}, first, protocmp.Transform()); diff != "" {
		t.Errorf("first report (-want +got):\n%s", diff)
	}

	// Two machines appear at once: one report with both.
	w.inject(t, "swp1", machineFrame("machine01", 1, "lan0"))
	w.inject(t, "swp2", machineFrame("machine02", 2, "lan0"))
	got := waitNeighbors(t, ctl)
	want := &apiv1.ReportNeighborsRequest{Hostname: "leaf1", Neighbors: []*apiv1.Neighbor{
		machineNeighbor("swp1", "machine01", 1, "lan0"),
		machineNeighbor("swp2", "machine02", 2, "lan0"),
	}}
	if diff := cmp.Diff(want, got, protocmp.Transform(), ignoreLastSeen); diff != "" {
		t.Errorf("report after two new neighbours (-want +got):\n%s", diff)
	}
	for _, n := range got.GetNeighbors() {
		if n.GetLastSeen() == nil {
			t.Errorf("neighbour on %s has no last_seen", n.GetPort())
		}
	}

	// A refresh (the same announcement again) is no change: no report.
	w.inject(t, "swp1", machineFrame("machine01", 1, "lan0"))
	noNeighborReport(t, ctl, time.Second)

	// The management port never runs LLDP.
	if d := w.dials(); slices.Contains(d, "eth0") || slices.Contains(d, "lo") {
		t.Errorf("lldp dialed %v; want no eth0 and no lo", d)
	}
}

func TestLLDPReportsTableAfterReconnect(t *testing.T) {
	k := fakeKernel()
	ctl := newFakeController()
	addr, stop := serve(t, ctl, "127.0.0.1:0")
	w := newFakeWire()
	ta := runAgent(t, addr, k, WithLLDP(lldpTestConfig(w)))
	w.waitOpen(t, "swp1", "swp2", "swp3")
	waitNeighbors(t, ctl) // the empty table after settling
	w.inject(t, "swp1", machineFrame("machine01", 1, "lan0"))
	want := &apiv1.ReportNeighborsRequest{Hostname: "leaf1", Neighbors: []*apiv1.Neighbor{
		machineNeighbor("swp1", "machine01", 1, "lan0"),
	}}
	if diff := cmp.Diff(want, waitNeighbors(t, ctl), protocmp.Transform(), ignoreLastSeen); diff != "" {
		t.Fatalf("report (-want +got):\n%s", diff)
	}

	stop()
	select {
	case <-ta.sessionEnds:
	case <-time.After(waitFor):
		t.Fatal("the agent did not notice the controller going away")
	}
	// A restarted controller on the same address gets the table once,
	// without any neighbour change.
	ctl2 := newFakeController()
	serve(t, ctl2, addr)
	if diff := cmp.Diff(want, waitNeighbors(t, ctl2), protocmp.Transform(), ignoreLastSeen); diff != "" {
		t.Errorf("report after reconnect (-want +got):\n%s", diff)
	}
	noNeighborReport(t, ctl2, time.Second)
}

func TestLLDPFollowsPorts(t *testing.T) {
	k := fakeKernel()
	ctl := newFakeController()
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	w := newFakeWire()
	events := &fakeLinkEvents{}
	ta := runAgent(t, addr, k, WithLLDP(lldpTestConfig(w)), WithEvents(events.source), WithDriftDebounce(10*time.Millisecond))
	w.waitOpen(t, "swp1", "swp2", "swp3")
	waitNeighbors(t, ctl)
	m3 := machineFrame("machine03", 3, "lan1")
	w.inject(t, "swp3", m3)
	want := &apiv1.ReportNeighborsRequest{Hostname: "leaf1", Neighbors: []*apiv1.Neighbor{machineNeighbor("swp3", "machine03", 3, "lan1")}}
	if diff := cmp.Diff(want, waitNeighbors(t, ctl), protocmp.Transform(), ignoreLastSeen); diff != "" {
		t.Fatalf("report (-want +got):\n%s", diff)
	}

	setPort := func(up bool) *fakeConn {
		t.Helper()
		old := w.conn("swp3")
		var err error
		if up {
			err = k.SetUp(t.Context(), "swp3")
		} else {
			err = k.SetDown(t.Context(), "swp3")
		}
		if err != nil {
			t.Fatal(err)
		}
		events.send(fabric.Event{Kind: fabric.EventLink, Op: fabric.EventChange, Link: "swp3"})
		deadline := time.Now().Add(waitFor)
		for (!up && !old.isClosed()) || (up && w.conn("swp3") == old) {
			if time.Now().After(deadline) {
				t.Fatalf("lldp did not follow swp3 going up=%t", up)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return w.conn("swp3")
	}

	// A bounce (down and up within the neighbour's TTL; enslaving a port
	// to a VRF does that) is never reported.
	setPort(false)
	noNeighborReport(t, ctl, time.Second)
	setPort(true)
	w.inject(t, "swp3", m3)
	noNeighborReport(t, ctl, time.Second)

	// Unplugged for good: the neighbour is reported gone when its TTL ends.
	m3.TTL = 2 * time.Second
	w.inject(t, "swp3", m3) // a refresh with a short TTL
	deadline := time.Now().Add(waitFor)
	for !slices.ContainsFunc(ta.LLDPNeighbors(), func(n lldp.Neighbor) bool { return n.TTL == m3.TTL }) {
		if time.Now().After(deadline) {
			t.Fatalf("the short-TTL refresh did not arrive: %v", ta.LLDPNeighbors())
		}
		time.Sleep(10 * time.Millisecond)
	}
	setPort(false)
	if got := waitNeighbors(t, ctl); len(got.GetNeighbors()) != 0 {
		t.Errorf("report after swp3 went down for good = %v, want an empty table", got)
	}
}

func TestLLDPPorts(t *testing.T) {
	down := ft.Port("swp4")
	down.OperState = "lowerlayerdown"
	adminDown := ft.Port("swp5")
	adminDown.AdminUp, adminDown.OperState = false, "down"
	unknown := ft.Port("swp6")
	unknown.OperState = "unknown"
	links := []fabric.Link{
		ft.Loopback(), ft.Port("swp2"), ft.Port("swp1"), ft.Port("eth0"), down, adminDown, unknown,
		ft.VRF("vrf10", 10, true), ft.Bridge("br0", true),
	}
	got := lldpPorts(links, "eth0")
	want := []lldp.Port{{Name: "swp1"}, {Name: "swp2"}, {Name: "swp6"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lldpPorts (-want +got):\n%s", diff)
	}
	if got := lldpPorts([]fabric.Link{ft.Port("eth0")}, ""); len(got) != 1 {
		t.Errorf("lldpPorts without a management interface = %v, want eth0", got)
	}
}

func TestNeighborsToProto(t *testing.T) {
	seen := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	chassis := net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0, 2}
	got := neighborsToProto([]lldp.Neighbor{{
		Port:              "swp31",
		ChassisID:         lldp.MACChassisID(chassis),
		PortID:            lldp.InterfaceNamePortID("swp1"),
		SystemName:        "spine01",
		SystemDescription: "metalfabric fabric-agent (spine)",
		TTL:               8 * time.Second,
		LastSeen:          seen,
	}})
	want := []*apiv1.Neighbor{{
		Port: "swp31", ChassisId: "02:42:ac:11:00:02", PortId: "swp1", SystemName: "spine01",
		SystemDescription: "metalfabric fabric-agent (spine)", TtlSeconds: 8,
	}}
	if diff := cmp.Diff(want, got, protocmp.Transform(), ignoreLastSeen); diff != "" {
		t.Errorf("neighborsToProto (-want +got):\n%s", diff)
	}
	if !got[0].GetLastSeen().AsTime().Equal(seen) {
		t.Errorf("last_seen = %v, want %v", got[0].GetLastSeen().AsTime(), seen)
	}
}

func TestLLDPHold(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	nbr := func(port string, id byte) lldp.Neighbor {
		mac := net.HardwareAddr{0x02, 0x4d, 0, 0, 0, id}
		return lldp.Neighbor{Port: port, ChassisID: lldp.MACChassisID(mac), PortID: lldp.InterfaceNamePortID("lan0"),
			SystemName: fmt.Sprintf("machine%02d", id), TTL: 10 * time.Second, LastSeen: now.Add(-time.Second)}
	}
	gone := func(n lldp.Neighbor, why lldp.RemoveReason) lldp.Event {
		return lldp.Event{Type: lldp.Removed, Neighbor: n, Reason: why}
	}
	added := func(n lldp.Neighbor) lldp.Event { return lldp.Event{Type: lldp.Added, Neighbor: n} }
	names := func(nbrs []lldp.Neighbor) []string {
		var out []string
		for _, n := range nbrs {
			out = append(out, n.Port+"="+n.SystemName)
		}
		return out
	}
	stale := nbr("swp4", 4)
	stale.LastSeen = now.Add(-time.Minute)

	tests := []struct {
		name       string
		events     []lldp.Event
		wantReport []bool
		table      []lldp.Neighbor // what package lldp still has
		want       []string        // what is reported
	}{
		{
			name:       "port down holds the neighbour",
			events:     []lldp.Event{gone(nbr("swp1", 1), lldp.ReasonPortGone)},
			wantReport: []bool{false},
			want:       []string{"swp1=machine01"},
		},
		{
			name:       "seen again leaves the hold",
			events:     []lldp.Event{gone(nbr("swp1", 1), lldp.ReasonPortGone), added(nbr("swp1", 1))},
			wantReport: []bool{false, true},
			table:      []lldp.Neighbor{nbr("swp1", 1)},
			want:       []string{"swp1=machine01"},
		},
		{
			name:       "another neighbour on the port drops the held one",
			events:     []lldp.Event{gone(nbr("swp1", 1), lldp.ReasonPortGone), added(nbr("swp1", 2))},
			wantReport: []bool{false, true},
			table:      []lldp.Neighbor{nbr("swp1", 2)},
			want:       []string{"swp1=machine02"},
		},
		{
			name:       "expired, shutdown: gone at once",
			events:     []lldp.Event{gone(nbr("swp1", 1), lldp.ReasonExpired), gone(nbr("swp2", 2), lldp.ReasonShutdown)},
			wantReport: []bool{true, true},
		},
		{
			name:       "port gone after the TTL ended: gone at once",
			events:     []lldp.Event{gone(stale, lldp.ReasonPortGone)},
			wantReport: []bool{true},
		},
		{
			name:       "held and live neighbours sorted by port",
			events:     []lldp.Event{gone(nbr("swp2", 2), lldp.ReasonPortGone)},
			wantReport: []bool{false},
			table:      []lldp.Neighbor{nbr("swp1", 1), nbr("swp3", 3)},
			want:       []string{"swp1=machine01", "swp2=machine02", "swp3=machine03"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n nbrState
			var got []bool
			for _, e := range tt.events {
				got = append(got, n.track(e, now))
			}
			if diff := cmp.Diff(tt.wantReport, got); diff != "" {
				t.Errorf("track (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, names(n.withHeld(slices.Clone(tt.table)))); diff != "" {
				t.Errorf("reported table (-want +got):\n%s", diff)
			}
		})
	}

	// The hold ends with the TTL.
	var n nbrState
	n.track(gone(nbr("swp1", 1), lldp.ReasonPortGone), now)
	if dropped, next := n.expireHeld(now); dropped || !next.Equal(now.Add(9*time.Second)) {
		t.Errorf("expireHeld(now) = %t, %v; want false, %v", dropped, next, now.Add(9*time.Second))
	}
	if dropped, next := n.expireHeld(now.Add(9 * time.Second)); !dropped || !next.IsZero() {
		t.Errorf("expireHeld(at the TTL end) = %t, %v; want true, zero", dropped, next)
	}
	if got := n.withHeld(nil); len(got) != 0 {
		t.Errorf("after the hold ended: %v, want nothing", names(got))
	}
}
