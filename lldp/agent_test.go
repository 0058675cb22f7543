package lldp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/ethernet"
)

const waitTimeout = 10 * time.Second

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startAgent runs a on ports until the test ends and returns a stop
// function that ends Run and waits for it.
func startAgent(t *testing.T, a *Agent, ports ...string) (stop func()) {
	t.Helper()
	var ps []Port
	for _, p := range ports {
		ps = append(ps, Port{Name: p})
	}
	if err := a.SetPorts(t.Context(), ps); err != nil {
		t.Fatalf("SetPorts: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(waitTimeout):
				t.Errorf("Run did not return within %v", waitTimeout)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// recorders drain each events channel into a history, so waiting for one
// event never loses another.
var recorders sync.Map // <-chan Event -> *recorder

type recorder struct {
	mu     sync.Mutex
	events []Event
	used   []bool
	closed bool
}

func recorderFor(ch <-chan Event) *recorder {
	r, loaded := recorders.LoadOrStore(ch, &recorder{})
	rec := r.(*recorder)
	if !loaded {
		go func() {
			for e := range ch {
				rec.mu.Lock()
				rec.events = append(rec.events, e)
				rec.used = append(rec.used, false)
				rec.mu.Unlock()
			}
			rec.mu.Lock()
			rec.closed = true
			rec.mu.Unlock()
		}()
	}
	return rec
}

// waitEvent returns the first not yet consumed event matching ok, failing
// the test after waitTimeout.
func waitEvent(t *testing.T, ch <-chan Event, what string, ok func(Event) bool) Event {
	t.Helper()
	rec := recorderFor(ch)
	var got Event
	waitFor(t, what, func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for i, e := range rec.events {
			if !rec.used[i] && ok(e) {
				rec.used[i] = true
				got = e
				return true
			}
		}
		return false
	})
	return got
}

// waitClosed waits until the events channel is closed.
func waitClosed(t *testing.T, ch <-chan Event) {
	t.Helper()
	rec := recorderFor(ch)
	waitFor(t, "events channel closed", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.closed
	})
}

// waitFor polls cond (cheap, in-memory) until it holds or waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not reached within %v", what, waitTimeout)
		}
		<-tick.C
	}
}

func isEvent(typ EventType, port, system string) func(Event) bool {
	return func(e Event) bool {
		return e.Type == typ && e.Neighbor.Port == port && e.Neighbor.SystemName == system
	}
}

// readFrame waits for one LLDPDU on a test-controlled port.
func readFrame(t *testing.T, p *fakePort) (ethernet.Frame, Frame) {
	t.Helper()
	select {
	case b := <-p.in:
		var ef ethernet.Frame
		if err := ef.UnmarshalBinary(b); err != nil {
			t.Fatalf("Ethernet frame: %v", err)
		}
		var f Frame
		if err := f.UnmarshalBinary(ef.Payload); err != nil {
			t.Fatalf("LLDPDU: %v", err)
		}
		return ef, f
	case <-time.After(waitTimeout):
		t.Fatalf("no frame on %s within %v", p.name, waitTimeout)
	}
	panic("unreachable")
}

func ethFrame(t testing.TB, src net.HardwareAddr, f Frame) []byte {
	t.Helper()
	pdu, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	b, err := (&ethernet.Frame{Destination: NearestBridge, Source: src, EtherType: EtherType, Payload: pdu}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		mac  net.HardwareAddr
		opts []Option
	}{
		{"short MAC", net.HardwareAddr{1, 2, 3}, nil},
		{"zero interval", testMAC, []Option{WithInterval(0)}},
		{"zero hold", testMAC, []Option{WithHoldMultiplier(0)}},
		{"negative fast count", testMAC, []Option{WithFastStart(-1, time.Second)}},
		{"zero fast interval", testMAC, []Option{WithFastStart(2, 0)}},
		{"bad retry", testMAC, []Option{WithRetry(time.Second, time.Millisecond)}},
		{"long system name", testMAC, []Option{WithSystemName(string(make([]byte, 256)))}},
		{"zoned mgmt address", testMAC, []Option{WithMgmtAddrs(netip.MustParseAddr("fe80::1%eth0"))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.mac, tt.opts...); err == nil {
				t.Fatal("New succeeded, want an error")
			}
		})
	}
	a, err := New(testMAC, WithInterval(1500*time.Millisecond), WithHoldMultiplier(3))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := a.TTL(), 5*time.Second; got != want { // 4.5 s rounded up
		t.Errorf("TTL = %v, want %v", got, want)
	}
}

// Two agents on the ends of an in-memory link learn each other.
func TestAgentPair(t *testing.T) {
	fn := newFakeNet()
	fn.link("swp1", "eth0")
	mgmt := netip.MustParseAddr("192.0.2.10")
	leaf, err := New(testMAC, WithDialer(fn.dial), WithLogger(testLogger(t)),
		WithSystemName("leaf01"), WithSystemDescription("metalfabric"),
		WithMgmtAddrs(mgmt), WithInterval(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	machine, err := New(testMAC2, WithDialer(fn.dial), WithLogger(testLogger(t)),
		WithSystemName("m1"), WithCapabilities(Capabilities{Supported: CapStation, Enabled: CapStation}))
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, leaf, "swp1")
	stopMachine := startAgent(t, machine, "eth0")

	e := waitEvent(t, leaf.Events(), "machine on swp1", isEvent(Added, "swp1", "m1"))
	want := Neighbor{
		Port:         "swp1",
		ChassisID:    MACChassisID(testMAC2),
		PortID:       InterfaceNamePortID("eth0"),
		SystemName:   "m1",
		Capabilities: Capabilities{Supported: CapStation, Enabled: CapStation},
		TTL:          120 * time.Second,
	}
	ignoreSeen := cmpopts.IgnoreFields(Neighbor{}, "LastSeen")
	if diff := cmp.Diff(want, e.Neighbor, cmpAddr, ignoreSeen); diff != "" {
		t.Errorf("leaf's neighbour (-want +got):\n%s", diff)
	}
	e = waitEvent(t, machine.Events(), "leaf on eth0", isEvent(Added, "eth0", "leaf01"))
	want = Neighbor{
		Port:              "eth0",
		ChassisID:         MACChassisID(testMAC),
		PortID:            InterfaceNamePortID("swp1"),
		SystemName:        "leaf01",
		SystemDescription: "metalfabric",
		MgmtAddrs:         []netip.Addr{mgmt},
		Capabilities:      Capabilities{Supported: CapBridge | CapRouter, Enabled: CapBridge | CapRouter},
		TTL:               8 * time.Second,
	}
	if diff := cmp.Diff(want, e.Neighbor, cmpAddr, ignoreSeen); diff != "" {
		t.Errorf("machine's neighbour (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Neighbor{want}, machine.Neighbors(), cmpAddr, ignoreSeen); diff != "" {
		t.Errorf("machine.Neighbors (-want +got):\n%s", diff)
	}

	// The machine stops: its shutdown frame removes it from the leaf at once.
	stopMachine()
	e = waitEvent(t, leaf.Events(), "machine removed", isEvent(Removed, "swp1", "m1"))
	if e.Reason != ReasonShutdown {
		t.Errorf("removal reason %q, want %q", e.Reason, ReasonShutdown)
	}
	waitClosed(t, machine.Events())
	c := leaf.Counters()
	if c.FramesSent == 0 || c.FramesReceived == 0 || c.Malformed != 0 {
		t.Errorf("leaf counters %+v: want frames sent and received, none malformed", c)
	}
}

// Fast start: a burst at the fast interval after the port opens and again
// when a new neighbour appears, then the (here: very long) interval.
func TestAgentFastStart(t *testing.T) {
	fn := newFakeNet()
	_, tap := fn.link("swp1", "tap")
	a, err := New(testMAC, WithDialer(fn.dial), WithLogger(testLogger(t)),
		WithInterval(time.Hour), WithFastStart(3, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, a, "swp1")
	for i := range 3 {
		ef, f := readFrame(t, tap)
		if diff := cmp.Diff(NearestBridge, ef.Destination); diff != "" {
			t.Errorf("frame %d destination (-want +got):\n%s", i, diff)
		}
		if f.TTL != 4*time.Hour {
			t.Errorf("frame %d TTL %v, want 4h", i, f.TTL)
		}
	}
	// A new neighbour triggers another burst.
	tap.peer.inject(ethFrame(t, tap.hw, Frame{ChassisID: MACChassisID(tap.hw), PortID: InterfaceNamePortID("tap"), TTL: time.Minute}))
	for range 3 {
		readFrame(t, tap)
	}
	waitFor(t, "3+3 frames sent", func() bool { return a.Counters().FramesSent == 6 })
}

func TestAgentDropsBadFrames(t *testing.T) {
	fn := newFakeNet()
	swp1, tap := fn.link("swp1", "tap")
	a, err := New(testMAC, WithDialer(fn.dial), WithLogger(testLogger(t)), WithFastStart(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, a, "swp1")

	good := Frame{ChassisID: MACChassisID(tap.hw), PortID: InterfaceNamePortID("tap"), TTL: time.Minute, SystemName: "peer"}
	malformed := [][]byte{
		nil,
		{1, 2, 3},
		ethFrame(t, tap.hw, good)[:20], // truncated LLDPDU
		func() []byte { // LLDPDU starting with a TTL TLV
			b, _ := (&ethernet.Frame{Destination: NearestBridge, Source: tap.hw, EtherType: EtherType,
				Payload: []byte{0x06, 0x02, 0x00, 0x78}}).MarshalBinary()
			return b
		}(),
	}
	for _, b := range malformed {
		swp1.inject(b)
	}
	ownSource := ethFrame(t, swp1.hw, good)
	otherDest, _ := (&ethernet.Frame{Destination: ethernet.Broadcast, Source: tap.hw, EtherType: EtherType,
		Payload: ethFrame(t, tap.hw, good)[14:]}).MarshalBinary()
	swp1.inject(ownSource)
	swp1.inject(otherDest)
	swp1.inject(ethFrame(t, tap.hw, good))

	waitEvent(t, a.Events(), "good neighbour after bad frames", isEvent(Added, "swp1", "peer"))
	want := Counters{FramesReceived: 7, Malformed: 4, Ignored: 2}
	got := a.Counters()
	got.FramesSent, got.SendErrors = 0, 0
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
}

func TestAgentBounds(t *testing.T) {
	fn := newFakeNet()
	p1, _ := fn.link("swp1", "tap1")
	p2, _ := fn.link("swp2", "tap2")
	a, err := New(testMAC, WithDialer(fn.dial), WithBounds(2, 3), WithFastStart(0, 0),
		WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, a, "swp1", "swp2")
	src := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	for i := range 50 {
		f := Frame{ChassisID: ChassisID{Subtype: ChassisIDSubtypeLocallyAssigned, ID: fmt.Sprintf("flood%d", i)},
			PortID: InterfaceNamePortID("x"), TTL: time.Hour}
		p1.inject(ethFrame(t, src, f))
		p2.inject(ethFrame(t, src, f))
	}
	waitFor(t, "all 100 frames handled", func() bool { return a.Counters().FramesReceived == 100 })
	c := a.Counters()
	if n := len(a.Neighbors()); n != 3 {
		t.Errorf("%d neighbours, want the overall bound 3", n)
	}
	if c.DroppedByBound == 0 || c.Evicted == 0 {
		t.Errorf("counters %+v: want both refusals and evictions", c)
	}
	// Per port: refusals + evictions + kept = 50 frames.
	if got := c.DroppedByBound + c.Evicted + 3; got != 100 {
		t.Errorf("dropped %d + evicted %d + 3 kept = %d, want 100", c.DroppedByBound, c.Evicted, got)
	}
}

// Expiry with an injected clock: the agent's expiry tick runs on real time,
// but what expires is decided by the clock the test moves.
func TestAgentExpiry(t *testing.T) {
	fn := newFakeNet()
	swp1, tap := fn.link("swp1", "tap")
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	a, err := New(testMAC, WithDialer(fn.dial), WithLogger(testLogger(t)), WithClock(clock), WithFastStart(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, a, "swp1")
	swp1.inject(ethFrame(t, tap.hw, Frame{ChassisID: MACChassisID(tap.hw), PortID: InterfaceNamePortID("tap"),
		TTL: 4 * time.Second, SystemName: "peer"}))
	e := waitEvent(t, a.Events(), "neighbour added", isEvent(Added, "swp1", "peer"))
	if !e.Neighbor.LastSeen.Equal(t0) {
		t.Errorf("LastSeen %v, want the injected clock's %v", e.Neighbor.LastSeen, t0)
	}
	advance(4 * time.Second)
	e = waitEvent(t, a.Events(), "neighbour expired", isEvent(Removed, "swp1", "peer"))
	if e.Reason != ReasonExpired {
		t.Errorf("reason %q, want %q", e.Reason, ReasonExpired)
	}
	if c := a.Counters(); c.Expired != 1 {
		t.Errorf("Counters.Expired = %d, want 1", c.Expired)
	}
}

// A port that vanishes while running: its neighbours go, the agent keeps
// retrying without crashing, and picks the port up again when it returns.
func TestAgentPortVanishes(t *testing.T) {
	fn := newFakeNet()
	fn.link("swp1", "eth0")
	fn.link("swp2", "eth1")
	leaf, err := New(testMAC, WithDialer(fn.dial), WithLogger(testLogger(t)),
		WithRetry(time.Millisecond, 5*time.Millisecond), WithSystemName("leaf01"))
	if err != nil {
		t.Fatal(err)
	}
	peer, err := New(testMAC2, WithDialer(fn.dial), WithLogger(testLogger(t)), WithSystemName("m1"),
		WithInterval(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, peer, "eth0", "eth1")
	// swp3 does not exist at all: it must not disturb the others.
	if err := leaf.SetPorts(t.Context(), []Port{{Name: "swp1"}, {Name: "swp2"}, {Name: "swp3"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- leaf.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitEvent(t, leaf.Events(), "m1 on swp1", isEvent(Added, "swp1", "m1"))
	waitEvent(t, leaf.Events(), "m1 on swp2", isEvent(Added, "swp2", "m1"))

	swp1 := fn.port("swp1")
	dials := swp1.dials.Load()
	swp1.vanish()
	e := waitEvent(t, leaf.Events(), "m1 on swp1 removed", isEvent(Removed, "swp1", "m1"))
	if e.Reason != ReasonPortGone {
		t.Errorf("reason %q, want %q", e.Reason, ReasonPortGone)
	}
	waitFor(t, "open retries", func() bool { return leaf.Counters().OpenErrors > 3 })
	if got := leaf.Neighbors(); len(got) != 1 || got[0].Port != "swp2" {
		t.Errorf("neighbours while swp1 is gone: %+v, want only swp2's", got)
	}

	swp1.restore()
	waitEvent(t, leaf.Events(), "m1 on swp1 again", isEvent(Added, "swp1", "m1"))
	if swp1.dials.Load() <= dials {
		t.Error("swp1 was not reopened")
	}
}

func TestAgentSetPorts(t *testing.T) {
	fn := newFakeNet()
	fn.link("swp1", "eth0")
	fn.link("swp2", "eth1")
	leaf, err := New(testMAC, WithDialer(fn.dial), WithLogger(testLogger(t)), WithSystemName("leaf01"))
	if err != nil {
		t.Fatal(err)
	}
	peer, err := New(testMAC2, WithDialer(fn.dial), WithLogger(testLogger(t)), WithSystemName("m1"))
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, peer, "eth0", "eth1")
	startAgent(t, leaf, "swp1")
	waitEvent(t, leaf.Events(), "m1 on swp1", isEvent(Added, "swp1", "m1"))

	// Adding a port while running.
	if err := leaf.SetPorts(t.Context(), []Port{{Name: "swp1"}, {Name: "swp2"}}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, leaf.Events(), "m1 on swp2", isEvent(Added, "swp2", "m1"))

	// The same set again changes nothing (no reopen).
	d1, d2 := fn.port("swp1").dials.Load(), fn.port("swp2").dials.Load()
	if err := leaf.SetPorts(t.Context(), []Port{{Name: "swp2"}, {Name: "swp1"}}); err != nil {
		t.Fatal(err)
	}
	if fn.port("swp1").dials.Load() != d1 || fn.port("swp2").dials.Load() != d2 {
		t.Error("SetPorts with an unchanged set reopened ports")
	}

	// Removing a port: its neighbours go at once, and the peer sees our
	// shutdown frame.
	if err := leaf.SetPorts(t.Context(), []Port{{Name: "swp2"}}); err != nil {
		t.Fatal(err)
	}
	e := waitEvent(t, leaf.Events(), "m1 on swp1 removed", isEvent(Removed, "swp1", "m1"))
	if e.Reason != ReasonPortGone {
		t.Errorf("reason %q, want %q", e.Reason, ReasonPortGone)
	}
	e = waitEvent(t, peer.Events(), "leaf on eth0 removed", isEvent(Removed, "eth0", "leaf01"))
	if e.Reason != ReasonShutdown {
		t.Errorf("peer's reason %q, want %q", e.Reason, ReasonShutdown)
	}

	// Invalid sets are refused.
	for _, ps := range [][]Port{{{Name: ""}}, {{Name: "a"}, {Name: "a"}}} {
		if err := leaf.SetPorts(t.Context(), ps); err == nil {
			t.Errorf("SetPorts(%v) succeeded, want an error", ps)
		}
	}
}

func TestAgentRunTwice(t *testing.T) {
	a, err := New(testMAC, WithDialer(newFakeNet().dial))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Fatalf("Run with a cancelled context: %v", err)
	}
	if err := a.Run(t.Context()); err == nil {
		t.Error("second Run succeeded, want an error")
	}
}

// FuzzHandleFrame: whatever arrives on a port, the agent neither panics
// nor grows the table beyond its bounds.
func FuzzHandleFrame(f *testing.F) {
	f.Add(ethFrame(f, testMAC2, Frame{ChassisID: MACChassisID(testMAC2), PortID: InterfaceNamePortID("p"), TTL: time.Minute}))
	f.Add(append([]byte{0x01, 0x80, 0xc2, 0, 0, 0x0e, 2, 0, 0, 0, 0, 2, 0x88, 0xcc}, lldpdSample(f)...))
	f.Add([]byte{0x01, 0x80, 0xc2, 0, 0, 0x0e, 2, 0, 0, 0, 0, 2, 0x81, 0x00, 0, 1, 0x88, 0xcc, 2, 7, 4})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := New(testMAC, WithBounds(2, 4), WithLogger(log), WithEventBuffer(0))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a.handleFrame("eth0", testMAC, b, log)
		if n := a.table.Len(); n > 2 {
			t.Fatalf("table holds %d neighbours on one port, bound is 2", n)
		}
	})
}

func TestAgentSetInterval(t *testing.T) {
	fn := newFakeNet()
	_, tap := fn.link("swp1", "tap")
	a, err := New(testMAC, WithDialer(fn.dial), WithLogger(testLogger(t)),
		WithInterval(50*time.Millisecond), WithFastStart(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, a, "swp1")
	if _, f := readFrame(t, tap); f.TTL != time.Second {
		t.Errorf("TTL before SetInterval = %v, want 1s (4 * 50ms rounded up)", f.TTL)
	}
	if err := a.SetInterval(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if got := a.TTL(); got != 40*time.Second {
		t.Errorf("TTL() = %v, want 40s", got)
	}
	// The frame already due under the old interval carries the new TTL.
	for {
		if _, f := readFrame(t, tap); f.TTL == 40*time.Second {
			break
		} else if f.TTL != time.Second {
			t.Fatalf("frame TTL %v, want 1s or 40s", f.TTL)
		}
	}
	if err := a.SetInterval(0); err == nil {
		t.Error("SetInterval(0): no error")
	}
}

// WithQuietStop: a stopping agent sends no shutdown frame (its neighbours
// keep it until the TTL ends), but a port removed with SetPorts still does.
func TestAgentQuietStop(t *testing.T) {
	fn := newFakeNet()
	fn.link("swp1", "eth0")
	fn.link("swp2", "eth1")
	leaf, err := New(testMAC, WithDialer(fn.dial), WithLogger(testLogger(t)), WithSystemName("leaf01"), WithInterval(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	machine, err := New(testMAC2, WithDialer(fn.dial), WithLogger(testLogger(t)), WithSystemName("m1"),
		WithInterval(time.Hour), WithQuietStop())
	if err != nil {
		t.Fatal(err)
	}
	startAgent(t, leaf, "swp1", "swp2")
	stopMachine := startAgent(t, machine, "eth0", "eth1")
	waitEvent(t, leaf.Events(), "machine on swp1", isEvent(Added, "swp1", "m1"))
	waitEvent(t, leaf.Events(), "machine on swp2", isEvent(Added, "swp2", "m1"))

	// A removed port says goodbye even with WithQuietStop.
	if err := machine.SetPorts(t.Context(), []Port{{Name: "eth0"}}); err != nil {
		t.Fatal(err)
	}
	e := waitEvent(t, leaf.Events(), "machine gone from swp2", isEvent(Removed, "swp2", "m1"))
	if e.Reason != ReasonShutdown {
		t.Errorf("removal reason on swp2 %q, want %q", e.Reason, ReasonShutdown)
	}
	// The agent stops: no shutdown frame, the leaf keeps it on swp1.
	sent := machine.Counters().FramesSent
	stopMachine()
	if got := machine.Counters().FramesSent; got != sent {
		t.Errorf("a quiet stop sent %d frames", got-sent)
	}
	if !slices.ContainsFunc(leaf.Neighbors(), func(n Neighbor) bool { return n.Port == "swp1" && n.SystemName == "m1" }) {
		t.Errorf("the leaf dropped the machine after its quiet stop: %v", leaf.Neighbors())
	}
}
