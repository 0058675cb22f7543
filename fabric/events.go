package fabric

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// This file holds the platform-independent half of the kernel event source;
// the netlink subscription is in events_linux.go (vendor types stay there).

// EventKind says what kind of kernel object an [Event] is about.
type EventKind int

// The event kinds.
const (
	// EventLink is about a link (created, changed, deleted).
	EventLink EventKind = iota + 1
	// EventAddr is about an address on a link.
	EventAddr
	// EventRoute is about a route.
	EventRoute
	// EventResync says events may have been lost (the subscription broke
	// and was renewed): the consumer should re-read the kernel.
	EventResync
)

func (k EventKind) String() string {
	switch k {
	case EventLink:
		return "link"
	case EventAddr:
		return "addr"
	case EventRoute:
		return "route"
	case EventResync:
		return "resync"
	default:
		return fmt.Sprintf("kind%d", int(k))
	}
}

// EventOp says what happened to the object.
type EventOp int

// The operations. The kernel reports a new and a changed link with the same
// message; the event source tells them apart by whether it knew the ifindex.
const (
	EventAdd EventOp = iota + 1
	EventChange
	EventDelete
)

func (o EventOp) String() string {
	switch o {
	case EventAdd:
		return "add"
	case EventChange:
		return "change"
	case EventDelete:
		return "delete"
	default:
		return fmt.Sprintf("op%d", int(o))
	}
}

// Event is one change of the kernel's links, addresses or routes, as the
// kernel announced it. It says which object changed, not how: a consumer
// re-reads the kernel to see the new state.
type Event struct {
	Kind EventKind
	Op   EventOp
	// Link is the name of the link the event is about; for an address or a
	// route, the link it is on. "" when unknown (a route without a device,
	// or a link already gone).
	Link string
	// Index is the link's ifindex, 0 when there is none.
	Index int
	// Prefix is the address (10.0.0.1/24) or the route's destination
	// (0.0.0.0/0 for a default route); zero for links.
	Prefix netip.Prefix
	// Table is the routing table of a route.
	Table uint32
	// KernelRoute tells that the kernel added or removed the route itself
	// (RTPROT_KERNEL): a consequence of an address or link change, such as
	// the local and prefix routes of an address.
	KernelRoute bool
	// Protocol is a route's rtm_protocol (who installed it).
	Protocol int
	// Carrier tells whether a link that was added or changed has carrier
	// (IFF_RUNNING): a port that lost it has no link partner.
	Carrier bool
}

// String is a one-line form: "link add veth0", "addr delete 10.0.0.1/24 on
// swp1", "route add 10.0.0.0/24 table 10 on vlan10", "route delete
// 10.0.0.1/32 table 255 proto kernel on swp1", "resync".
func (e Event) String() string {
	if e.Kind == EventResync {
		return "resync"
	}
	s := e.Kind.String() + " " + e.Op.String()
	switch e.Kind {
	case EventAddr:
		s += " " + e.Prefix.String()
	case EventRoute:
		s += fmt.Sprintf(" %s table %d", e.Prefix, e.Table)
		if e.KernelRoute {
			s += " proto kernel"
		}
	}
	if e.Kind != EventLink {
		s += " on"
	}
	switch {
	case e.Link != "":
		s += " " + e.Link
	case e.Index != 0:
		s += fmt.Sprintf(" if%d", e.Index)
	default:
		s += " -"
	}
	return s
}

// EventOption configures [WatchEvents].
type EventOption func(*eventConfig)

type eventConfig struct {
	netnsFD    int // -1: the calling process's network namespace
	log        *slog.Logger
	buffer     int
	minBackoff time.Duration
	maxBackoff time.Duration
}

func newEventConfig(opts []EventOption) eventConfig {
	c := eventConfig{netnsFD: -1, log: slog.Default(), buffer: 256, minBackoff: 50 * time.Millisecond, maxBackoff: 5 * time.Second}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithEventNetNS makes the event source watch the network namespace open at
// fd (e.g. a netns.NsHandle) instead of the calling process's. The caller
// keeps fd open while the source runs.
func WithEventNetNS(fd int) EventOption { return func(c *eventConfig) { c.netnsFD = fd } }

// WithEventLogger sets the logger (default: slog.Default()).
func WithEventLogger(l *slog.Logger) EventOption {
	return func(c *eventConfig) {
		if l != nil {
			c.log = l
		}
	}
}
