//go:build linux

package fabric

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// subscriptionBuffer is the receive buffer asked for each netlink
// subscription socket (capped by net.core.rmem_max). An overflow ends the
// subscription; WatchEvents then subscribes again and sends EventResync.
const subscriptionBuffer = 1 << 20

// WatchEvents subscribes to the kernel's link, address and route changes
// (rtnetlink multicast groups) and sends them as [Event]s on the returned
// channel until ctx is done; then the channel is closed. Only changes after
// the call are sent, not the existing objects.
//
// When a subscription breaks (a receive error, e.g. ENOBUFS after an overflow),
// WatchEvents subscribes again with backoff and then sends an EventResync,
// because events may have been lost meanwhile. The returned error is the
// failure of the first subscription. A consumer that stops reading stalls
// the source, which the kernel turns into an overflow and a resync.
func WatchEvents(ctx context.Context, opts ...EventOption) (<-chan Event, error) {
	w := &eventWatcher{cfg: newEventConfig(opts), names: map[int]string{}}
	if err := w.open(); err != nil {
		return nil, err
	}
	sub, err := w.subscribe()
	if err != nil {
		w.h.Close()
		return nil, err
	}
	w.seed()
	out := make(chan Event, w.cfg.buffer)
	go w.run(ctx, sub, out)
	return out, nil
}

type eventWatcher struct {
	cfg eventConfig
	// h is a handle in the watched namespace, to name the links of
	// address and route events.
	h *netlink.Handle
	// names maps ifindex to link name, kept up to date from link events.
	names map[int]string
}

// subscription is one set of the three netlink subscriptions.
type subscription struct {
	done   chan struct{}
	links  chan netlink.LinkUpdate
	addrs  chan netlink.AddrUpdate
	routes chan netlink.RouteUpdate
	errs   chan error
}

func (w *eventWatcher) open() error {
	var err error
	if w.cfg.netnsFD >= 0 {
		w.h, err = netlink.NewHandleAt(netns.NsHandle(w.cfg.netnsFD))
	} else {
		w.h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return fmt.Errorf("opening netlink for events: %w", err)
	}
	return nil
}

// subscribe opens the three subscriptions; on a failure it closes those
// already open.
func (w *eventWatcher) subscribe() (*subscription, error) {
	s := &subscription{
		done:   make(chan struct{}),
		links:  make(chan netlink.LinkUpdate, 64),
		addrs:  make(chan netlink.AddrUpdate, 64),
		routes: make(chan netlink.RouteUpdate, 64),
		errs:   make(chan error, 1),
	}
	onErr := func(err error) {
		select {
		case s.errs <- err:
		default: // one pending error is enough to log
		}
	}
	var ns *netns.NsHandle
	if w.cfg.netnsFD >= 0 {
		h := netns.NsHandle(w.cfg.netnsFD)
		ns = &h
	}
	if err := netlink.LinkSubscribeWithOptions(s.links, s.done, netlink.LinkSubscribeOptions{
		Namespace: ns, ErrorCallback: onErr, ReceiveBufferSize: subscriptionBuffer,
	}); err != nil {
		close(s.done)
		return nil, fmt.Errorf("subscribing to link events: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(s.addrs, s.done, netlink.AddrSubscribeOptions{
		Namespace: ns, ErrorCallback: onErr, ReceiveBufferSize: subscriptionBuffer,
	}); err != nil {
		s.close()
		return nil, fmt.Errorf("subscribing to address events: %w", err)
	}
	if err := netlink.RouteSubscribeWithOptions(s.routes, s.done, netlink.RouteSubscribeOptions{
		Namespace: ns, ErrorCallback: onErr, ReceiveBufferSize: subscriptionBuffer,
	}); err != nil {
		s.close()
		return nil, fmt.Errorf("subscribing to route events: %w", err)
	}
	return s, nil
}

// close ends the subscriptions and drains their channels in the background,
// so netlink's receiving goroutines, which may be blocked on a send, end.
func (s *subscription) close() {
	close(s.done)
	go func() {
		for range s.links {
		}
	}()
	go func() {
		for range s.addrs {
		}
	}()
	go func() {
		for range s.routes {
		}
	}()
}

// seed fills the name cache with the existing links, so their later
// RTM_NEWLINK messages count as changes, not additions.
func (w *eventWatcher) seed() {
	var (
		links []netlink.Link
		err   error
	)
	for range 10 { // a dump interrupted by a concurrent change is retried
		if links, err = w.h.LinkList(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		w.cfg.log.Warn("listing links for the event source", "err", err)
		return
	}
	clear(w.names)
	for _, l := range links {
		w.names[l.Attrs().Index] = l.Attrs().Name
	}
}

func (w *eventWatcher) run(ctx context.Context, sub *subscription, out chan<- Event) {
	defer close(out)
	defer w.h.Close()
	send := func(e Event) bool {
		select {
		case out <- e:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		var (
			e      Event
			broken error
		)
		select {
		case <-ctx.Done():
			sub.close()
			return
		case err := <-sub.errs:
			// Non-fatal errors (a message that did not parse, an
			// interrupted dump) leave the subscription running; a
			// fatal one also closes its channel, handled below.
			w.cfg.log.Warn("netlink event subscription", "err", err)
			continue
		case u, ok := <-sub.links:
			if !ok {
				broken = errors.New("link subscription ended")
				break
			}
			e = w.linkEvent(u)
		case u, ok := <-sub.addrs:
			if !ok {
				broken = errors.New("address subscription ended")
				break
			}
			e = w.addrEvent(u)
		case u, ok := <-sub.routes:
			if !ok {
				broken = errors.New("route subscription ended")
				break
			}
			e = w.routeEvent(u)
		}
		if broken != nil {
			sub.close()
			w.cfg.log.Warn("netlink events may have been lost; subscribing again", "err", broken)
			if sub = w.resubscribe(ctx); sub == nil {
				return
			}
			w.seed()
			e = Event{Kind: EventResync}
		}
		if !send(e) {
			sub.close()
			return
		}
	}
}

// resubscribe subscribes again with backoff until it works or ctx is done
// (then it returns nil).
func (w *eventWatcher) resubscribe(ctx context.Context) *subscription {
	delay := w.cfg.minBackoff
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		sub, err := w.subscribe()
		if err == nil {
			return sub
		}
		w.cfg.log.Warn("resubscribing to netlink events", "err", err, "retry_in", delay)
		timer.Reset(delay)
		delay = min(delay*2, w.cfg.maxBackoff)
	}
}

func (w *eventWatcher) linkEvent(u netlink.LinkUpdate) Event {
	a := u.Attrs()
	e := Event{Kind: EventLink, Link: a.Name, Index: a.Index}
	_, known := w.names[a.Index]
	switch {
	case u.Header.Type == unix.RTM_DELLINK:
		e.Op = EventDelete
		delete(w.names, a.Index)
	case known:
		e.Op = EventChange
	default:
		e.Op = EventAdd
	}
	if e.Op != EventDelete {
		w.names[a.Index] = a.Name
		e.Carrier = a.RawFlags&unix.IFF_RUNNING != 0
	}
	return e
}

func (w *eventWatcher) addrEvent(u netlink.AddrUpdate) Event {
	e := Event{Kind: EventAddr, Op: EventDelete, Index: u.LinkIndex, Link: w.name(u.LinkIndex), Prefix: ipNetPrefix(u.LinkAddress)}
	if u.NewAddr {
		e.Op = EventAdd
	}
	return e
}

func (w *eventWatcher) routeEvent(u netlink.RouteUpdate) Event {
	e := Event{
		Kind: EventRoute, Op: EventAdd, Index: u.LinkIndex, Link: w.name(u.LinkIndex),
		Table: uint32(u.Table), KernelRoute: u.Protocol == unix.RTPROT_KERNEL, Protocol: int(u.Protocol),
	}
	if u.Type == unix.RTM_DELROUTE {
		e.Op = EventDelete
	} else if u.NlFlags&unix.NLM_F_REPLACE != 0 {
		e.Op = EventChange
	}
	switch {
	case u.Dst != nil:
		e.Prefix = ipNetPrefix(*u.Dst)
	case u.Family == unix.AF_INET6:
		e.Prefix = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	default:
		e.Prefix = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return e
}

// ipNetPrefix converts an address with its mask; the zero Prefix when it does
// not convert.
func ipNetPrefix(n net.IPNet) netip.Prefix {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, bits := n.Mask.Size()
	if bits == 32 || bits == 0 {
		a = a.Unmap()
	}
	if bits == 0 {
		ones = a.BitLen()
	}
	return netip.PrefixFrom(a, ones)
}

// name returns the name of the link with ifindex i, "" when unknown.
func (w *eventWatcher) name(i int) string {
	if i == 0 {
		return ""
	}
	if n, ok := w.names[i]; ok {
		return n
	}
	l, err := w.h.LinkByIndex(i)
	if err != nil {
		return "" // gone already
	}
	w.names[i] = l.Attrs().Name
	return l.Attrs().Name
}
