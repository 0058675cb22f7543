package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/fabric"
	"github.com/metalfabric/fabric/lldp"
)

// LLDP wiring. With WithLLDP the agent runs package lldp on every port it
// registers (physical-ish links, veths in the lab) except the management
// port, and reports the neighbour table to the controller:
//
//   - Ports follow the kernel: link events (the same netlink subscription kind
//     drift handling uses) and a slow periodic re-read recompute the port set;
//     only ports that are administratively up and not operationally down take
//     part, so a port coming up starts with the lldp fast-start burst and a
//     port losing its carrier drops its neighbours at once (no TTL wait).
//   - Neighbour events are gathered until none came for ReportDebounce (at
//     most 4 times that after the first), then the whole table is reported (ReportNeighbors replaces the controller's copy). Nothing is
//     reported on a timer.
//   - Nothing is reported until Settle has passed since LLDP started: after an
//     agent restart the table is empty until the neighbours' next frames, and
//     reporting it early would make the controller forget the wiring for a
//     moment (and recompile configs). The controller keeps the last reported
//     table meanwhile.
//   - A port that goes down (or only bounces: enslaving a port to a VRF
//     cycles it) loses its neighbours in package lldp at once. The agent
//     keeps reporting them until their TTL runs out (hold), so a bounce never
//     reaches the controller: otherwise the controller would take the port
//     out of the machine's wiring and its VRF, which bounces the port again,
//     a loop. A neighbour that is seen again leaves the hold; an unplugged
//     one is reported gone when its TTL ends.
//   - A table equal to the one last reported in the session (last-seen
//     times aside) is not reported again.
//   - Every controller session reports the current table once after it
//     registered (once settled), so a restarted controller or a reconnect
//     gets the table without waiting for a change.

// Defaults of LLDPConfig.
const (
	DefaultLLDPReportDebounce = 200 * time.Millisecond
	DefaultLLDPResync         = 30 * time.Second
)

// LLDPConfig configures LLDP on the device's ports. The zero value runs LLDP
// with the defaults on every port.
type LLDPConfig struct {
	// Interval is the transmit interval (default lldp.DefaultInterval, 30 s).
	Interval time.Duration
	// MgmtInterface is the management port LLDP never runs on ("" for none).
	MgmtInterface string
	// SystemDescription is sent as the system description TLV.
	SystemDescription string
	// MgmtAddrs are sent as management addresses (none by default).
	MgmtAddrs []netip.Addr
	// ReportDebounce is how long neighbour changes are gathered before the
	// table is reported (default DefaultLLDPReportDebounce).
	ReportDebounce time.Duration
	// Settle is how long after LLDP starts the first report waits, so a
	// restarted agent does not report a half-learned table (default: the
	// interval plus the lldp fast-start interval).
	Settle time.Duration
	// Resync is how often the port list is re-read from the kernel besides
	// link events (default DefaultLLDPResync).
	Resync time.Duration
	// Options are passed to lldp.New after the agent's own (tests hand in
	// lldp.WithDialer here).
	Options []lldp.Option
}

// WithLLDP turns LLDP on (it is off by default).
func WithLLDP(c LLDPConfig) Option {
	return func(a *Agent) {
		if c.Interval <= 0 {
			c.Interval = lldp.DefaultInterval
		}
		if c.ReportDebounce <= 0 {
			c.ReportDebounce = DefaultLLDPReportDebounce
		}
		if c.Settle <= 0 {
			c.Settle = c.Interval + lldp.DefaultFastInterval
		}
		if c.Resync <= 0 {
			c.Resync = DefaultLLDPResync
		}
		c.MgmtAddrs = slices.Clone(c.MgmtAddrs)
		c.Options = slices.Clone(c.Options)
		a.nbr = &nbrState{cfg: c, kick: make(chan struct{}, 1)}
	}
}

// nbrState is shared by the LLDP goroutine and the sessions' reporters.
type nbrState struct {
	cfg LLDPConfig
	// kick asks the current session's reporter to report the table
	// (capacity 1: requests coalesce).
	kick chan struct{}

	mu      sync.Mutex
	lldp    *lldp.Agent // nil until LLDP started
	settled bool
	// held are neighbours removed because their port went down or away,
	// reported until their TTL ends (see above).
	held map[nbrKey]lldp.Neighbor
	// ports is the port set LLDP runs on, for logs and tests.
	ports []string
	// interval is set by SetLLDPInterval (0: cfg.Interval).
	interval time.Duration
}

// SetLLDPInterval changes LLDP's transmit interval while the agent runs
// (the announced TTL follows); an error when LLDP is off.
func (a *Agent) SetLLDPInterval(d time.Duration) error {
	if a.nbr == nil {
		return errors.New("lldp is off")
	}
	if d <= 0 {
		return fmt.Errorf("lldp interval %v is not positive", d)
	}
	a.nbr.mu.Lock()
	defer a.nbr.mu.Unlock()
	a.nbr.interval = d
	if a.nbr.lldp != nil {
		return a.nbr.lldp.SetInterval(d)
	}
	return nil // applied when LLDP starts
}

func (n *nbrState) request() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// nbrKey identifies a neighbour on one of our ports (IEEE 802.1AB MSAP).
type nbrKey struct {
	port    string
	chassis lldp.ChassisID
	portID  lldp.PortID
}

func keyOf(n lldp.Neighbor) nbrKey { return nbrKey{n.Port, n.ChassisID, n.PortID} }

// table returns the neighbour table to report (held neighbours included)
// and whether it may be reported yet.
func (n *nbrState) table() ([]lldp.Neighbor, bool) {
	n.mu.Lock()
	la, ok := n.lldp, n.settled
	n.mu.Unlock()
	if la == nil || !ok {
		return nil, false
	}
	return n.withHeld(la.Neighbors()), true
}

// withHeld adds the held neighbours not in nbrs, sorted like lldp.Table.
func (n *nbrState) withHeld(nbrs []lldp.Neighbor) []lldp.Neighbor {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.held) == 0 {
		return nbrs
	}
	have := make(map[nbrKey]bool, len(nbrs))
	for _, nb := range nbrs {
		have[keyOf(nb)] = true
	}
	for k, nb := range n.held {
		if !have[k] {
			nbrs = append(nbrs, nb)
		}
	}
	slices.SortFunc(nbrs, func(a, b lldp.Neighbor) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port),
			cmp.Compare(a.ChassisID.Subtype, b.ChassisID.Subtype), cmp.Compare(a.ChassisID.ID, b.ChassisID.ID),
			cmp.Compare(a.PortID.Subtype, b.PortID.Subtype), cmp.Compare(a.PortID.ID, b.PortID.ID))
	})
	return nbrs
}

// track updates the hold with one event and reports whether the reported
// table may have changed.
func (n *nbrState) track(e lldp.Event, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := keyOf(e.Neighbor)
	if e.Type == lldp.Removed && e.Reason == lldp.ReasonPortGone {
		if until := e.Neighbor.LastSeen.Add(e.Neighbor.TTL); until.After(now) {
			if n.held == nil {
				n.held = make(map[nbrKey]lldp.Neighbor)
			}
			n.held[k] = e.Neighbor
			return false // still reported as it was
		}
	}
	// Seen again, or gone for good. A held neighbour seen again unchanged
	// leaves the reported table as it was: the reporter skips equal tables.
	delete(n.held, k)
	if e.Type == lldp.Added {
		// Another neighbour on the port: it was re-cabled, not bounced.
		for hk := range n.held {
			if hk.port == k.port {
				delete(n.held, hk)
			}
		}
	}
	return true
}

// expireHeld drops held neighbours whose TTL ended; it returns whether it
// dropped any and when the next one ends (zero when none is held).
func (n *nbrState) expireHeld(now time.Time) (dropped bool, next time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, nb := range n.held {
		until := nb.LastSeen.Add(nb.TTL)
		if !until.After(now) {
			delete(n.held, k)
			dropped = true
			continue
		}
		if next.IsZero() || until.Before(next) {
			next = until
		}
	}
	return dropped, next
}

// sameTable tells whether two tables announce the same (last-seen times and
// TTLs aside).
func sameTable(a, b []lldp.Neighbor) bool {
	return slices.EqualFunc(a, b, func(x, y lldp.Neighbor) bool {
		return keyOf(x) == keyOf(y) && x.PortDescription == y.PortDescription &&
			x.SystemName == y.SystemName && x.SystemDescription == y.SystemDescription &&
			x.Capabilities == y.Capabilities && slices.Equal(x.MgmtAddrs, y.MgmtAddrs)
	})
}

// LLDPNeighbors returns the current neighbour table (nil when LLDP is off
// or not started yet).
func (a *Agent) LLDPNeighbors() []lldp.Neighbor {
	if a.nbr == nil {
		return nil
	}
	a.nbr.mu.Lock()
	la := a.nbr.lldp
	a.nbr.mu.Unlock()
	if la == nil {
		return nil
	}
	return la.Neighbors()
}

// LLDPCounters returns the LLDP totals; false when LLDP is off or not
// started yet.
func (a *Agent) LLDPCounters() (lldp.Counters, bool) {
	if a.nbr == nil {
		return lldp.Counters{}, false
	}
	a.nbr.mu.Lock()
	la := a.nbr.lldp
	a.nbr.mu.Unlock()
	if la == nil {
		return lldp.Counters{}, false
	}
	return la.Counters(), true
}

// lldpPorts picks the ports LLDP runs on: registered ports (see
// fabric.Link.IsPort) but the management port, administratively up and not
// operationally down. Descriptions are not sent: a changed description
// restarts the port in package lldp, which would drop its neighbours.
func lldpPorts(links []fabric.Link, mgmt string) []lldp.Port {
	var out []lldp.Port
	for _, l := range links {
		if !l.IsPort() || l.Name == mgmt || !l.AdminUp {
			continue
		}
		switch l.OperState {
		case "down", "lowerlayerdown", "notpresent":
			continue
		}
		out = append(out, lldp.Port{Name: l.Name})
	}
	slices.SortFunc(out, func(x, y lldp.Port) int {
		switch {
		case x.Name < y.Name:
			return -1
		case x.Name > y.Name:
			return 1
		}
		return 0
	})
	return out
}

// startLLDP reads the kernel until it can and returns a new lldp agent with
// its ports set; the chassis ID is the chassis MAC the agent registers.
func (a *Agent) startLLDP(ctx context.Context) (*lldp.Agent, error) {
	bo := newBackoff(a.minBackoff, a.maxBackoff)
	for {
		la, err := a.newLLDP(ctx)
		if err == nil {
			return la, nil
		}
		delay := bo.next()
		a.log.Warn("lldp: not started; retrying", "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (a *Agent) newLLDP(ctx context.Context) (*lldp.Agent, error) {
	actual, err := a.kernel.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading ports: %w", err)
	}
	mac := a.chassisMAC(actual.Ports())
	if mac == "" {
		return nil, errors.New("no chassis MAC: no port with a MAC")
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil, fmt.Errorf("parsing chassis MAC %q: %w", mac, err)
	}
	c := a.nbr.cfg
	opts := []lldp.Option{
		lldp.WithSystemName(a.cfg.Hostname),
		lldp.WithInterval(c.Interval),
		lldp.WithLogger(a.log),
		// An agent stopping is a restart, not the link going away: no
		// shutdown frames, so neighbours (and the controller's underlay
		// sessions derived from their tables) keep us until the TTL.
		lldp.WithQuietStop(),
	}
	if c.SystemDescription != "" {
		opts = append(opts, lldp.WithSystemDescription(c.SystemDescription))
	}
	if len(c.MgmtAddrs) > 0 {
		opts = append(opts, lldp.WithMgmtAddrs(c.MgmtAddrs...))
	}
	la, err := lldp.New(hw, append(opts, c.Options...)...)
	if err != nil {
		return nil, fmt.Errorf("creating lldp agent: %w", err)
	}
	if err := a.setLLDPPorts(ctx, la, actual.Links); err != nil {
		return nil, err
	}
	return la, nil
}

// setLLDPPorts hands the port set to LLDP and logs when it changed.
func (a *Agent) setLLDPPorts(ctx context.Context, la *lldp.Agent, links []fabric.Link) error {
	ports := lldpPorts(links, a.nbr.cfg.MgmtInterface)
	names := make([]string, 0, len(ports))
	for _, p := range ports {
		names = append(names, p.Name)
	}
	if err := la.SetPorts(ctx, ports); err != nil {
		return fmt.Errorf("setting lldp ports: %w", err)
	}
	a.nbr.mu.Lock()
	changed := !slices.Equal(a.nbr.ports, names)
	a.nbr.ports = names
	a.nbr.mu.Unlock()
	if changed {
		a.log.Info("lldp ports", "ports", names)
	}
	return nil
}

// refreshLLDPPorts re-reads the kernel and updates the port set.
func (a *Agent) refreshLLDPPorts(ctx context.Context, la *lldp.Agent) {
	actual, err := a.kernel.Read(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("lldp: reading ports failed", "err", err)
		}
		return
	}
	if err := a.setLLDPPorts(ctx, la, actual.Links); err != nil && ctx.Err() == nil {
		a.log.Warn("lldp: updating ports failed", "err", err)
	}
}

// runLLDP runs LLDP until ctx is done: it follows the ports, gathers
// neighbour events and asks the session to report the table.
func (a *Agent) runLLDP(ctx context.Context) {
	la, err := a.startLLDP(ctx)
	if err != nil {
		return // ctx done
	}
	var wg sync.WaitGroup
	defer wg.Wait() // LLDP has sent its shutdown frames when runLLDP returns
	wg.Go(func() {
		if err := la.Run(ctx); err != nil {
			a.log.Warn("lldp stopped with an error", "err", err)
		}
	})
	a.nbr.mu.Lock()
	a.nbr.lldp = la
	if a.nbr.interval > 0 {
		_ = la.SetInterval(a.nbr.interval) // positive: checked by SetLLDPInterval
	}
	a.nbr.mu.Unlock()
	defer func() {
		c := la.Counters()
		a.log.Info("lldp counters", "sent", c.FramesSent, "received", c.FramesReceived,
			"malformed", c.Malformed, "dropped", c.DroppedByBound+c.EventsDropped, "send_errors", c.SendErrors)
	}()

	cfg := a.nbr.cfg
	stopped := func() *time.Timer {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return t
	}
	settle := time.NewTimer(cfg.Settle)
	defer settle.Stop()
	report := stopped() // neighbour debounce
	defer report.Stop()
	reportArmed := false
	var firstChange time.Time
	portsTimer := stopped() // link event debounce
	defer portsTimer.Stop()
	portsArmed := false
	resubscribe := stopped()
	defer resubscribe.Stop()
	resync := time.NewTicker(cfg.Resync)
	defer resync.Stop()

	hold := stopped() // the next held neighbour's TTL end
	defer hold.Stop()
	armHold := func(now time.Time) {
		if _, next := a.nbr.expireHeld(now); !next.IsZero() {
			hold.Reset(next.Sub(now))
		}
	}

	bo := newBackoff(a.minBackoff, a.maxBackoff)
	var links <-chan fabric.Event
	subscribe := func() {
		if a.events == nil {
			return
		}
		ch, err := a.events(ctx)
		if err != nil {
			delay := bo.next()
			a.log.Warn("lldp: subscribing to link events failed; ports are re-read periodically meanwhile", "err", err, "retry_in", delay)
			resubscribe.Reset(delay)
			return
		}
		links = ch
	}
	subscribe()

	nbrEvents := la.Events()
	var changes int
	var eventsDropped uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-settle.C:
			a.nbr.mu.Lock()
			a.nbr.settled = true
			a.nbr.mu.Unlock()
			a.log.Debug("lldp settled; reporting neighbours", "neighbors", len(la.Neighbors()))
			a.nbr.request()
		case e, ok := <-nbrEvents:
			if !ok {
				nbrEvents = nil // Run ended (ctx done)
				continue
			}
			now := time.Now()
			if !a.nbr.track(e, now) {
				if e.Type == lldp.Removed {
					a.log.Info("lldp neighbour held until its TTL ends", "port", e.Neighbor.Port,
						"chassis", e.Neighbor.ChassisID.String(), "until", e.Neighbor.LastSeen.Add(e.Neighbor.TTL))
				}
				armHold(now)
				continue
			}
			// package lldp logs every change; here they are only gathered:
			// the window ends ReportDebounce after the last change, but at
			// most 4 windows after the first, so a steady trickle of
			// changes is still reported.
			changes++
			if !reportArmed {
				reportArmed, firstChange = true, now
			}
			report.Reset(min(cfg.ReportDebounce, firstChange.Add(4*cfg.ReportDebounce).Sub(now)))
		case <-hold.C:
			now := time.Now()
			dropped, next := a.nbr.expireHeld(now)
			if !next.IsZero() {
				hold.Reset(next.Sub(now))
			}
			if dropped {
				changes++
				if !reportArmed {
					reportArmed, firstChange = true, now
					report.Reset(cfg.ReportDebounce)
				}
			}
		case <-report.C:
			reportArmed = false
			a.log.Debug("lldp neighbours changed", "changes", changes, "neighbors", len(la.Neighbors()))
			changes = 0
			a.nbr.request()
		case e, ok := <-links:
			if !ok {
				links = nil
				if ctx.Err() != nil {
					return
				}
				resubscribe.Reset(bo.next())
				continue
			}
			bo.reset()
			if (e.Kind == fabric.EventLink || e.Kind == fabric.EventResync) && !portsArmed {
				portsTimer.Reset(a.debounce)
				portsArmed = true
			}
		case <-resubscribe.C:
			subscribe()
			a.refreshLLDPPorts(ctx, la) // events may have been missed
		case <-portsTimer.C:
			portsArmed = false
			a.refreshLLDPPorts(ctx, la)
		case <-resync.C:
			a.refreshLLDPPorts(ctx, la)
			// Events lost to a full channel: the table is read fresh at
			// report time, so a report catches up with them.
			if d := la.Counters().EventsDropped; d != eventsDropped {
				eventsDropped = d
				a.nbr.request()
			}
		}
	}
}

// reportNeighborsLoop reports the neighbour table during one controller
// session: once at its start (when LLDP has settled) and after every change.
// A failed report is retried with backoff, except when the controller does
// not implement ReportNeighbors (then only the next change tries again).
func (a *Agent) reportNeighborsLoop(ctx context.Context, client apiv1.DeviceServiceClient) {
	pending := true
	var last []lldp.Neighbor // reported in this session
	sent := false
	bo := newBackoff(a.minBackoff, a.maxBackoff)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		if pending {
			if nbrs, ok := a.nbr.table(); ok {
				var err error
				if !sent || !sameTable(last, nbrs) {
					err = a.reportNeighbors(ctx, client, nbrs)
				}
				switch {
				case err == nil:
					pending = false
					last, sent = nbrs, true
					bo.reset()
				case ctx.Err() != nil:
					return
				case grpcstatus.Code(err) == codes.Unimplemented:
					a.log.Warn("reporting lldp neighbours: the controller does not implement ReportNeighbors", "err", err)
					pending = false
				default:
					delay := bo.next()
					a.log.Warn("reporting lldp neighbours failed", "err", err, "retry_in", delay)
					retry.Reset(delay)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-a.nbr.kick:
			pending = true
		case <-retry.C:
		}
	}
}

func (a *Agent) reportNeighbors(ctx context.Context, client apiv1.DeviceServiceClient, nbrs []lldp.Neighbor) error {
	rctx, cancel := context.WithTimeout(ctx, a.rpcTimeout)
	defer cancel()
	_, err := client.ReportNeighbors(rctx, &apiv1.ReportNeighborsRequest{
		Hostname:  a.cfg.Hostname,
		Neighbors: neighborsToProto(nbrs),
	})
	if err != nil {
		return fmt.Errorf("reporting %d neighbours: %w", len(nbrs), err)
	}
	attrs := []any{"neighbors", len(nbrs)}
	if c, ok := a.LLDPCounters(); ok {
		attrs = append(attrs, "sent", c.FramesSent, "received", c.FramesReceived,
			"malformed", c.Malformed, "dropped", c.DroppedByBound+c.EventsDropped)
	}
	a.log.Info("lldp neighbours reported", attrs...)
	return nil
}
