package agent

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/fabric"
)

// Drift handling. The agent keeps the last desired config it applied and
// watches the kernel's link, address and route events. A burst of events is
// coalesced (debounce) into one check: read the kernel, plan the last desired
// config against it and, when the plan is not empty, apply it again. Because
// the reconcilers only touch the objects they own and the ports the controller
// handed over, re-applying repairs managed objects and nothing else. The
// events the agent's own applies cause need no bookkeeping: the check after
// them finds an empty plan.
//
// Changes to links the agent does not manage are reported (logged, counted,
// kept as the last unmanaged change), never reverted. Carrier changes alone are
// not reported, so a machine rebooting on an unassigned port is no drift.
//
// Drift handling needs no controller: it works from the last applied config
// while the controller is unreachable. It does nothing before the first fully
// successful apply, so an agent that never received a config never touches the
// kernel on its own.

// DefaultDriftDebounce is how long the agent gathers kernel events before it
// checks for drift.
const DefaultDriftDebounce = 150 * time.Millisecond

// maxDriftNotes bounds the unmanaged changes reported per check.
const maxDriftNotes = 32

// EventSource subscribes to kernel events until ctx is done, then closes the
// channel. fabric.WatchEvents, with its options bound, is one.
type EventSource func(ctx context.Context) (<-chan fabric.Event, error)

// WithEvents sets the kernel event source drift handling watches. Default:
// fabric.WatchEvents on the process's network namespace when the agent opens
// the kernel itself, and none (drift handling off) with WithKernel.
func WithEvents(src EventSource) Option { return func(a *Agent) { a.events = src } }

// WithDriftDebounce sets how long kernel events are gathered before a drift
// check (default DefaultDriftDebounce).
func WithDriftDebounce(d time.Duration) Option { return func(a *Agent) { a.debounce = d } }

// DriftStats is what drift handling did since the agent started.
type DriftStats struct {
	// Checks counts drift checks (one per burst of events).
	Checks uint64
	// Repairs counts checks that found managed objects changed and applied
	// the last desired config again.
	Repairs uint64
	// LastRepair is when the last repair finished, LastRepairChanges the
	// changes it made and LastRepairLatency the time from the first event
	// of its window to the end of the repair.
	LastRepair        time.Time
	LastRepairChanges []string
	LastRepairLatency time.Duration
	// Unmanaged counts changes to objects the agent does not manage;
	// LastUnmanaged describes the newest, e.g. "link veth9 added".
	Unmanaged       uint64
	LastUnmanaged   string
	LastUnmanagedAt time.Time
}

// DriftStats returns a copy of the drift counters.
func (a *Agent) DriftStats() DriftStats {
	a.drift.mu.Lock()
	defer a.drift.mu.Unlock()
	s := a.drift.stats
	s.LastRepairChanges = slices.Clone(s.LastRepairChanges)
	return s
}

// driftState is shared by the goroutine applying snapshots and the one
// handling drift; mu guards it. applyMu serializes the applies themselves.
type driftState struct {
	applyMu sync.Mutex

	mu sync.Mutex
	// enabled turns true after the first fully successful apply.
	enabled bool
	// target is the desired config drift repairs restore: that of the
	// newest snapshot the reconciler started applying (it passed
	// validation), and version its version.
	target  fabric.Desired
	version uint64
	// last is the kernel as last seen (after an apply or a check), the
	// base for reporting unmanaged changes.
	last  fabric.Actual
	stats DriftStats
	// status is the newest status report; kick asks the session to send
	// it again (capacity 1).
	status *status
	kick   chan struct{}
	// rollback is the last commit-confirm rollback, reported with every
	// status until a newer version is applied (commit.go).
	rollback *fabric.StepError
}

// status is one status report in the agent's own types.
type status struct {
	version uint64
	errors  []fabric.StepError
	ports   []fabric.Link
	// routingErrors are the routing subsystem's failed steps.
	routingErrors []fabric.StepError
	// firewallErrors are the firewall role's, named "nft: ..." and
	// "leak: ...".
	firewallErrors []fabric.StepError
}

func newDriftState() *driftState { return &driftState{kick: make(chan struct{}, 1)} }

// recordApply notes the outcome of applying a snapshot: it becomes the drift
// target when the reconciler got past reading and validating (res.Planned is
// set, or nothing failed), and drift handling starts after the first fully
// successful apply.
func (d *driftState) recordApply(version uint64, desired fabric.Desired, res fabric.Result, err error, routingErrs []fabric.StepError) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil || res.Planned != nil {
		d.target, d.version = desired, version
		d.last = res.State
	}
	if err == nil {
		d.enabled = true
	}
	d.status = &status{version: version, errors: res.Errors, ports: res.State.Ports(), routingErrors: routingErrs}
}

// recordFirewall adds the firewall role's failed steps to the status
// recordApply just recorded.
func (d *driftState) recordFirewall(errs []fabric.StepError) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.status != nil {
		d.status.firewallErrors = errs
	}
}

// report sends the newest status to the controller.
// A report the controller accepted is contact for commit-confirm.
func (a *Agent) report(ctx context.Context, client apiv1.DeviceServiceClient) {
	a.drift.mu.Lock()
	st := a.drift.status
	var agentErrs []fabric.StepError
	if rb := a.drift.rollback; rb != nil {
		agentErrs = append(agentErrs, *rb)
	}
	a.drift.mu.Unlock()
	if st == nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, a.rpcTimeout)
	defer cancel()
	_, err := client.ReportStatus(rctx, &apiv1.ReportStatusRequest{
		Hostname:       a.cfg.Hostname,
		AppliedVersion: st.version,
		Errors: slices.Concat(stepErrorsToProto("fabric", st.errors), stepErrorsToProto("bgp", st.routingErrors),
			stepErrorsToProto("agent", agentErrs), firewallErrorsToProto(st.firewallErrors)),
		Ports:   portsToProto(st.ports),
		Drift:   driftToProto(a.DriftStats()),
		Routing: a.routingStatus(rctx),
	})
	if err != nil {
		a.log.Warn("reporting status failed", "version", st.version, "err", err)
		return
	}
	a.confirmed()
}

// watchDrift runs drift handling until ctx is done.
func (a *Agent) watchDrift(ctx context.Context) {
	bo := newBackoff(a.minBackoff, a.maxBackoff)
	timer := time.NewTimer(0)
	<-timer.C
	var (
		events  <-chan fabric.Event
		pending []fabric.Event // the first events of the window
		count   int            // all events of the window
		first   time.Time      // when the window opened
		armed   bool
		carrier = make(map[string]bool) // link -> carrier, for routing
	)
	wait := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	for {
		if events == nil {
			ch, err := a.events(ctx)
			if err != nil {
				delay := bo.next()
				a.log.Error("drift: subscribing to kernel events failed; drift is not repaired meanwhile", "err", err, "retry_in", delay)
				if !wait(delay) {
					return
				}
				continue
			}
			events = ch
			a.log.Debug("drift: watching kernel events")
		}
		select {
		case <-ctx.Done():
			return
		case e, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return
				}
				delay := bo.next()
				a.log.Warn("drift: kernel event source ended; subscribing again", "retry_in", delay)
				if !wait(delay) {
					return
				}
				events = nil
				e = fabric.Event{Kind: fabric.EventResync}
			} else {
				bo.reset()
			}
			if a.routingEvent(ctx, e, carrier) {
				continue // the FIB programmer's own routes
			}
			if !a.driftEnabled() {
				continue // no config applied yet: never touch the kernel
			}
			count++
			if len(pending) < maxDriftNotes*4 {
				pending = append(pending, e)
			}
			if !armed {
				armed, first = true, time.Now()
				timer.Reset(a.debounce)
			}
		case <-timer.C:
			armed = false
			a.checkDrift(ctx, pending, count, first)
			pending, count = nil, 0
		}
	}
}

func (a *Agent) driftEnabled() bool {
	a.drift.mu.Lock()
	defer a.drift.mu.Unlock()
	return a.drift.enabled
}

// driftCheck is the outcome of one drift check, for tests.
type driftCheck struct {
	events    int
	first     time.Time // the window's first event
	repaired  []string  // changes applied
	unmanaged []string
	err       error
}

// checkDrift reads the kernel, reports unmanaged changes since the last look
// and re-applies the last desired config when managed objects drifted. events
// are the first of the count events of the window.
func (a *Agent) checkDrift(ctx context.Context, events []fabric.Event, count int, first time.Time) {
	d := a.drift
	d.applyMu.Lock()
	defer d.applyMu.Unlock()
	d.mu.Lock()
	desired, version, last := d.target, d.version, d.last
	d.stats.Checks++
	d.mu.Unlock()

	check := driftCheck{events: count, first: first}
	defer func() {
		if a.onDriftCheck != nil {
			a.onDriftCheck(check)
		}
	}()
	log := a.log.With("version", version)
	rec := fabric.NewReconciler(a.kernel, fabric.WithLogger(log))
	actual, err := rec.Read(ctx)
	if ctx.Err() != nil {
		return // shutting down
	}
	if err != nil {
		check.err = fmt.Errorf("drift: reading the kernel: %w", err)
		log.Warn("drift check failed", "err", check.err)
		return
	}
	check.unmanaged = unmanagedChanges(desired, last, actual, events)
	now := time.Now()
	for _, n := range check.unmanaged {
		log.Warn("drift: unmanaged change, not reverted", "change", n)
	}

	changes, err := rec.Plan(ctx, desired)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		// A managed port deleted by hand, or its name taken: no repair is
		// possible until the kernel or the config changes.
		check.err = fmt.Errorf("drift: planning version %d: %w", version, err)
		log.Error("drift: cannot repair", "err", check.err)
		a.noteDrift(check, actual, now, nil, version)
		return
	}
	if len(changes) == 0 {
		a.noteDrift(check, actual, now, nil, version)
		return
	}
	for _, c := range changes {
		check.repaired = append(check.repaired, c.String())
	}
	log.Warn("drift: managed objects changed by hand; repairing", "changes", strings.Join(check.repaired, "; "))
	start := time.Now()
	res, err := rec.Apply(context.WithoutCancel(ctx), desired)
	check.repaired = check.repaired[:0]
	for _, c := range res.Applied {
		check.repaired = append(check.repaired, c.String())
	}
	if err != nil {
		check.err = fmt.Errorf("drift: repairing version %d: %w", version, err)
		log.Error("drift repair failed", "applied", len(res.Applied), "errors", len(res.Errors), "err", err)
	} else {
		log.Info("drift repaired", "changes", len(res.Applied), "took", time.Since(start), "since_event", time.Since(first))
	}
	a.reapplyRouting(ctx, res.State)
	a.noteDrift(check, res.State, now, &res, version)
}

// noteDrift updates the counters, the kernel as last seen and, after a
// repair (res != nil) of the version last reported, the status, and asks the
// session to report it.
func (a *Agent) noteDrift(check driftCheck, state fabric.Actual, at time.Time, res *fabric.Result, version uint64) {
	d := a.drift
	d.mu.Lock()
	defer d.mu.Unlock()
	d.last = state
	if n := len(check.unmanaged); n > 0 {
		d.stats.Unmanaged += uint64(n)
		d.stats.LastUnmanaged = check.unmanaged[n-1]
		d.stats.LastUnmanagedAt = at
	}
	if res == nil {
		return
	}
	d.stats.Repairs++
	d.stats.LastRepair = time.Now()
	d.stats.LastRepairLatency = d.stats.LastRepair.Sub(check.first)
	d.stats.LastRepairChanges = slices.Clone(check.repaired)
	// The status keeps the version; only a repair toward the version last
	// reported changes it (when a newer snapshot failed validation the
	// status tells about that one).
	if d.status != nil && d.status.version == version {
		d.status = &status{version: version, errors: res.Errors, ports: res.State.Ports()}
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
}

// unmanagedChanges describes what changed between before and after on
// objects the agent does not manage: links (carrier, the oper state, aside)
// and addresses, from the two states, and routes, from the events. Left out is
// what the kernel does by itself: IPv6 link-local addresses and routes with
// protocol kernel. Sorted, at most maxDriftNotes.
func unmanagedChanges(desired fabric.Desired, before, after fabric.Actual, events []fabric.Event) []string {
	managed, owned := managedLinks(desired, before, after)
	notes := map[string]bool{}
	old := map[string]fabric.Link{}
	for _, l := range before.Links {
		old[l.Name] = l
	}
	seen := map[string]bool{}
	for _, l := range after.Links {
		seen[l.Name] = true
		if managed[l.Name] {
			continue
		}
		o, ok := old[l.Name]
		if !ok {
			notes[fmt.Sprintf("link %s added", l.Name)] = true
			continue
		}
		if c := linkChange(o, l); c != "" {
			notes[fmt.Sprintf("link %s changed: %s", l.Name, c)] = true
		}
	}
	for _, l := range before.Links {
		if !seen[l.Name] && !managed[l.Name] {
			notes[fmt.Sprintf("link %s removed", l.Name)] = true
		}
	}

	type addrKey struct {
		link   string
		prefix netip.Prefix
	}
	addrs := func(a fabric.Actual) map[addrKey]fabric.Addr {
		m := map[addrKey]fabric.Addr{}
		for _, ad := range a.Addrs {
			m[addrKey{ad.Link, ad.Prefix}] = ad
		}
		return m
	}
	managedAddr := func(ad fabric.Addr) bool {
		return ad.Prefix.Addr().IsLinkLocalUnicast() || owned[ad.Link] ||
			strings.HasSuffix(ad.Label, fabric.AddrLabelSuffix) || desiredAddr(desired, ad.Link, ad.Prefix)
	}
	oldAddrs, newAddrs := addrs(before), addrs(after)
	for k, ad := range newAddrs {
		if _, ok := oldAddrs[k]; !ok && !managedAddr(ad) {
			notes[fmt.Sprintf("addr %s added on %s", ad.Prefix, ad.Link)] = true
		}
	}
	for k, ad := range oldAddrs {
		if _, ok := newAddrs[k]; !ok && !managedAddr(ad) {
			notes[fmt.Sprintf("addr %s removed from %s", ad.Prefix, ad.Link)] = true
		}
	}

	byIndex := map[int]string{}
	for _, s := range []fabric.Actual{before, after} {
		for _, l := range s.Links {
			byIndex[l.Index] = l.Name
		}
	}
	for _, e := range events {
		if e.Kind != fabric.EventRoute || e.KernelRoute {
			continue // links and addresses: from the states above
		}
		if e.Link == "" {
			e.Link = byIndex[e.Index]
		}
		if e.Link != "" && managed[e.Link] {
			continue
		}
		notes[e.String()] = true
	}
	out := slices.Sorted(maps.Keys(notes))
	if len(out) > maxDriftNotes {
		out = append(out[:maxDriftNotes-1], fmt.Sprintf("and %d more", len(out)-maxDriftNotes+1))
	}
	return out
}

// linkChange describes what changed on a link, carrier aside; "" when
// nothing did.
func linkChange(o, n fabric.Link) string {
	var parts []string
	if o.Kind != n.Kind {
		parts = append(parts, fmt.Sprintf("kind %s -> %s", o.Kind, n.Kind))
	}
	if o.Master != n.Master {
		parts = append(parts, fmt.Sprintf("master %q -> %q", o.Master, n.Master))
	}
	if o.AdminUp != n.AdminUp {
		parts = append(parts, fmt.Sprintf("admin up %t -> %t", o.AdminUp, n.AdminUp))
	}
	if o.MTU != n.MTU {
		parts = append(parts, fmt.Sprintf("mtu %d -> %d", o.MTU, n.MTU))
	}
	if o.MAC != n.MAC {
		parts = append(parts, fmt.Sprintf("mac %s -> %s", o.MAC, n.MAC))
	}
	if o.Alias != n.Alias {
		parts = append(parts, fmt.Sprintf("alias %q -> %q", o.Alias, n.Alias))
	}
	return strings.Join(parts, ", ")
}

// managedLinks returns the names of the links the agent manages: the links it
// created (owned: fabric.Link.Owned), the links enslaved to them, and the
// links named in the desired config (so a managed object deleted by hand is
// not reported as unmanaged: it is repaired).
func managedLinks(desired fabric.Desired, states ...fabric.Actual) (managed, owned map[string]bool) {
	managed, owned = map[string]bool{}, map[string]bool{}
	for _, n := range desiredLinkNames(desired) {
		managed[n] = true
	}
	for _, s := range states {
		for _, l := range s.Links {
			if l.Owned() {
				owned[l.Name] = true
				managed[l.Name] = true
			}
		}
	}
	for _, s := range states {
		for _, l := range s.Links {
			if owned[l.Master] {
				managed[l.Name] = true
			}
		}
	}
	return managed, owned
}
