package lldp

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Neighbor is what one remote LLDP agent told us on one of our ports.
type Neighbor struct {
	// Port is our local interface the frames arrived on.
	Port              string
	ChassisID         ChassisID
	PortID            PortID
	PortDescription   string
	SystemName        string
	SystemDescription string
	MgmtAddrs         []netip.Addr
	Capabilities      Capabilities
	// TTL is the hold time the neighbour announced in its last frame.
	TTL time.Duration
	// LastSeen is when its last frame arrived; it expires at LastSeen+TTL.
	LastSeen time.Time
}

// key is the MSAP identifier of IEEE 802.1AB: chassis ID + port ID, per
// local port.
type key struct {
	chassis ChassisID
	port    PortID
}

// EventType says what happened to a neighbour.
type EventType int

// Event types.
const (
	// Added: a neighbour was seen for the first time on a port.
	Added EventType = iota + 1
	// Changed: a known neighbour announced something different (TTL and
	// LastSeen changes alone are refreshes, not changes).
	Changed
	// Removed: a neighbour's TTL ran out, it sent a shutdown frame, it
	// was evicted by the per-port bound, or its port went away.
	Removed
)

func (t EventType) String() string {
	switch t {
	case Added:
		return "added"
	case Changed:
		return "changed"
	case Removed:
		return "removed"
	}
	return "unknown"
}

// RemoveReason says why a neighbour was removed.
type RemoveReason string

// Remove reasons.
const (
	ReasonExpired  RemoveReason = "expired"
	ReasonShutdown RemoveReason = "shutdown"
	ReasonEvicted  RemoveReason = "evicted"
	ReasonPortGone RemoveReason = "port-gone"
)

// Event is one real change of the neighbour table. For Removed, Neighbor is
// the last known state and Reason says why.
type Event struct {
	Type     EventType
	Neighbor Neighbor
	Reason   RemoveReason
}

// UpdateResult says what Table.Update did with a frame.
type UpdateResult int

// Update results.
const (
	// Refreshed: known neighbour, nothing but TTL/LastSeen changed.
	Refreshed UpdateResult = iota
	// Stored: the neighbour was added or changed (see the events).
	Stored
	// RemovedByShutdown: TTL 0 removed a known neighbour.
	RemovedByShutdown
	// IgnoredShutdown: TTL 0 for a neighbour we did not know.
	IgnoredShutdown
	// RefusedByBound: the overall bound is reached; the frame was dropped.
	RefusedByBound
)

// Table is the neighbour table: per port, at most MaxPerPort neighbours
// and at most MaxTotal overall. A new neighbour on a full port evicts that
// port's least recently seen neighbour (so a flood on one port only hurts
// that port); a new neighbour when the whole table is full is refused (so
// a flood cannot push out other ports' neighbours). It is safe for
// concurrent use; time is always passed in, so tests need no clock.
type Table struct {
	maxPerPort, maxTotal int

	mu     sync.Mutex
	ports  map[string]map[key]*Neighbor
	total  int
	counts TableCounters
}

// TableCounters count what the bounds did.
type TableCounters struct {
	// Refused: frames from new neighbours dropped because the table was full.
	Refused uint64
	// Evicted: neighbours removed to make room on a full port.
	Evicted uint64
	// Expired: neighbours removed because their TTL ran out.
	Expired uint64
}

// NewTable returns an empty table with the given bounds (values < 1 are
// raised to 1).
func NewTable(maxPerPort, maxTotal int) *Table {
	return &Table{
		maxPerPort: max(maxPerPort, 1),
		maxTotal:   max(maxTotal, 1),
		ports:      make(map[string]map[key]*Neighbor),
	}
}

// Update records a frame received on port at now and returns the events it
// caused (none for a plain refresh).
func (t *Table) Update(port string, f *Frame, now time.Time) ([]Event, UpdateResult) {
	t.mu.Lock()
	defer t.mu.Unlock()

	k := key{chassis: f.ChassisID, port: f.PortID}
	nbrs := t.ports[port]
	old := nbrs[k]

	if f.TTL == 0 {
		if old == nil {
			return nil, IgnoredShutdown
		}
		t.deleteLocked(port, k)
		return []Event{{Type: Removed, Neighbor: clone(old), Reason: ReasonShutdown}}, RemovedByShutdown
	}

	n := &Neighbor{
		Port:              port,
		ChassisID:         f.ChassisID,
		PortID:            f.PortID,
		PortDescription:   f.PortDescription,
		SystemName:        f.SystemName,
		SystemDescription: f.SystemDescription,
		MgmtAddrs:         slices.Clone(f.MgmtAddrs),
		Capabilities:      f.Capabilities,
		TTL:               f.TTL,
		LastSeen:          now,
	}

	if old != nil {
		same := sameAnnouncement(old, n)
		*old = *n
		if same {
			return nil, Refreshed
		}
		return []Event{{Type: Changed, Neighbor: clone(n)}}, Stored
	}

	var events []Event
	if len(nbrs) >= t.maxPerPort {
		// Evict this port's least recently seen neighbour.
		var victim key
		var oldest *Neighbor
		for vk, v := range nbrs {
			if oldest == nil || v.LastSeen.Before(oldest.LastSeen) ||
				(v.LastSeen.Equal(oldest.LastSeen) && lessKey(vk, victim)) {
				victim, oldest = vk, v
			}
		}
		t.deleteLocked(port, victim)
		t.counts.Evicted++
		events = append(events, Event{Type: Removed, Neighbor: clone(oldest), Reason: ReasonEvicted})
	} else if t.total >= t.maxTotal {
		t.counts.Refused++
		return nil, RefusedByBound
	}

	if nbrs == nil {
		nbrs = make(map[key]*Neighbor)
		t.ports[port] = nbrs
	}
	nbrs[k] = n
	t.total++
	return append(events, Event{Type: Added, Neighbor: clone(n)}), Stored
}

// Expire removes every neighbour whose TTL has run out at now.
func (t *Table) Expire(now time.Time) []Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	var events []Event
	for port, nbrs := range t.ports {
		for k, n := range nbrs {
			if !now.Before(n.LastSeen.Add(n.TTL)) {
				events = append(events, Event{Type: Removed, Neighbor: clone(n), Reason: ReasonExpired})
				t.deleteLocked(port, k)
				t.counts.Expired++
			}
		}
	}
	sortEvents(events)
	return events
}

// NextExpiry returns the earliest time a neighbour expires, false if empty.
func (t *Table) NextExpiry() (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var next time.Time
	found := false
	for _, nbrs := range t.ports {
		for _, n := range nbrs {
			if e := n.LastSeen.Add(n.TTL); !found || e.Before(next) {
				next, found = e, true
			}
		}
	}
	return next, found
}

// RemovePort forgets every neighbour on port (the port went down or away).
func (t *Table) RemovePort(port string) []Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	var events []Event
	for k, n := range t.ports[port] {
		events = append(events, Event{Type: Removed, Neighbor: clone(n), Reason: ReasonPortGone})
		t.deleteLocked(port, k)
	}
	sortEvents(events)
	return events
}

// Neighbors returns a copy of all neighbours sorted by port, chassis ID
// and port ID.
func (t *Table) Neighbors() []Neighbor {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Neighbor, 0, t.total)
	for _, nbrs := range t.ports {
		for _, n := range nbrs {
			out = append(out, clone(n))
		}
	}
	slices.SortFunc(out, compareNeighbors)
	return out
}

// Len returns the number of neighbours.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// Counters returns what the bounds and expiry did so far.
func (t *Table) Counters() TableCounters {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts
}

func (t *Table) deleteLocked(port string, k key) {
	nbrs := t.ports[port]
	if _, ok := nbrs[k]; !ok {
		return
	}
	delete(nbrs, k)
	t.total--
	if len(nbrs) == 0 {
		delete(t.ports, port)
	}
}

func sameAnnouncement(a, b *Neighbor) bool {
	return a.PortDescription == b.PortDescription &&
		a.SystemName == b.SystemName &&
		a.SystemDescription == b.SystemDescription &&
		a.Capabilities == b.Capabilities &&
		slices.Equal(a.MgmtAddrs, b.MgmtAddrs)
}

func clone(n *Neighbor) Neighbor {
	c := *n
	c.MgmtAddrs = slices.Clone(n.MgmtAddrs)
	return c
}

func lessKey(a, b key) bool {
	if c := compareKey(a, b); c != 0 {
		return c < 0
	}
	return false
}

func compareKey(a, b key) int {
	if c := int(a.chassis.Subtype) - int(b.chassis.Subtype); c != 0 {
		return c
	}
	if c := strings.Compare(a.chassis.ID, b.chassis.ID); c != 0 {
		return c
	}
	if c := int(a.port.Subtype) - int(b.port.Subtype); c != 0 {
		return c
	}
	return strings.Compare(a.port.ID, b.port.ID)
}

func compareNeighbors(a, b Neighbor) int {
	if c := strings.Compare(a.Port, b.Port); c != 0 {
		return c
	}
	return compareKey(key{a.ChassisID, a.PortID}, key{b.ChassisID, b.PortID})
}

func sortEvents(events []Event) {
	slices.SortFunc(events, func(a, b Event) int { return compareNeighbors(a.Neighbor, b.Neighbor) })
}
