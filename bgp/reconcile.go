package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/metalfabric/fabric/bgp/fib"
)

// FIB is the kernel side of the reconciler (package fib's Programmer, via a
// thin adapter in the agent). Install replaces or adds routes and remote
// VTEP entries (remotes first), Remove deletes them (routes first); both
// report per-route failures and never stop at the first. Sync makes the
// kernel hold exactly the given routes and remotes of ours (a full resync).
type FIB interface {
	Install(ctx context.Context, routes []fib.Route, remotes []fib.Remote) []RouteError
	Remove(ctx context.Context, routes []fib.Route, remotes []fib.Remote) []RouteError
	Sync(ctx context.Context, routes []fib.Route, remotes []fib.Remote) ([]RouteError, error)
	// Kernel returns the routes of ours the kernel holds (read once, at
	// start: routes a previous run left, still forwarding).
	Kernel(ctx context.Context) ([]fib.Route, error)
}

// RouteError is one route that failed to install or to be removed.
type RouteError struct {
	Table  uint32
	Prefix string
	Err    error
}

func (e RouteError) Error() string {
	return fmt.Sprintf("route %s table %d: %v", e.Prefix, e.Table, e.Err)
}

// Reconciler drives the speaker and the FIB from a Desired state and the
// speaker's best paths. Apply is declarative and idempotent; best-path
// changes are turned into kernel routes, EVPN exports and imports as they
// arrive. Order of Apply (adds before deletes): start the speaker, add VRF
// RIBs, add or change sessions, originate; then remove sessions, VRF RIBs
// and withdraw. Kernel routes and remotes follow the best paths: remotes
// are installed before the routes that use them and removed after.
type Reconciler struct {
	sp         Speaker
	fib        FIB
	log        *slog.Logger
	listenPort int32
	sweepMax   time.Duration
	sweepQuiet time.Duration

	restarting bool
	adopted    bool // adoptLocked ran

	mu          sync.Mutex
	started     bool
	everStarted bool
	global      Global
	desired     Desired
	vrfs        map[string]TenantVRF
	peers       map[PeerKey]Peer
	svrfs       map[string]VRF
	origin      map[string]Path // global originations by prefix

	rib       *rib
	installed map[RouteKey]fib.Route
	routeRem  map[RouteKey][]remoteKey
	remotes   map[remoteKey]fib.Remote
	remRefs   map[remoteKey]int
	exports   map[vrfPrefix]Path
	injects   map[vrfPrefix]Path
	// held are the destinations whose export (true) or import (false)
	// adoptLocked re-originated from the previous run's kernel routes and
	// no best path of that kind has confirmed yet: recompute leaves them,
	// their originations and their kernel routes as they are until one
	// does, or until the sweep (graceful restart: a destination is not
	// withdrawn because the sessions that will confirm it are not back
	// yet, nor because the speaker reports our own re-origination).
	held   map[vrfPrefix]bool
	failed map[RouteKey]error
	swept  bool
	// lastChange is when the last best-path batch arrived (the sweep
	// waits for quiet).
	lastChange time.Time

	cancelWatch context.CancelFunc
	watchDone   chan struct{}
}

// Option configures a Reconciler.
type Option func(*Reconciler)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(r *Reconciler) { r.log = l } }

// WithListenPort sets the speaker's listen port (0: 179, -1: none).
func WithListenPort(p int32) Option { return func(r *Reconciler) { r.listenPort = p } }

// WithRestarting tells that the kernel holds routes of a previous run
// (the agent restarted, the machine did not): the first start of the
// speaker is a graceful restart (Global.Restarting).
func WithRestarting(b bool) Option { return func(r *Reconciler) { r.restarting = b } }

// WithSweep sets when routes left in the kernel by a previous run that no
// session re-announced are removed: once every session is established and
// no best path changed for quiet, and at the latest after max.
func WithSweep(quiet, max time.Duration) Option {
	return func(r *Reconciler) { r.sweepQuiet, r.sweepMax = quiet, max }
}

// NewReconciler returns a reconciler over a speaker and a FIB.
func NewReconciler(sp Speaker, f FIB, opts ...Option) *Reconciler {
	r := &Reconciler{
		sp: sp, fib: f, log: slog.New(slog.DiscardHandler),
		sweepQuiet: 3 * time.Second, sweepMax: 90 * time.Second,
	}
	for _, o := range opts {
		o(r)
	}
	r.reset()
	return r
}

func (r *Reconciler) reset() {
	r.vrfs = make(map[string]TenantVRF)
	r.peers = make(map[PeerKey]Peer)
	r.svrfs = make(map[string]VRF)
	r.origin = make(map[string]Path)
	r.rib = newRIB()
	r.installed = make(map[RouteKey]fib.Route)
	r.routeRem = make(map[RouteKey][]remoteKey)
	r.remotes = make(map[remoteKey]fib.Remote)
	r.remRefs = make(map[remoteKey]int)
	r.exports = make(map[vrfPrefix]Path)
	r.injects = make(map[vrfPrefix]Path)
	r.held = make(map[vrfPrefix]bool)
	r.failed = make(map[RouteKey]error)
	r.swept = false
}

// Apply makes the speaker match d. A zero ASN stops nothing and starts
// nothing: the device has no routing config yet.
func (r *Reconciler) Apply(ctx context.Context, d Desired) error {
	if d.ASN == 0 && !d.RouterID.IsValid() {
		return nil
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("invalid routing config: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()

	g := d.global(r.listenPort, r.restarting && !r.everStarted)
	if r.started && (r.global.ASN != g.ASN || r.global.RouterID != g.RouterID) {
		// ASN or router id changed: the only way is a restart of every
		// session. Kernel routes stay until the new sessions replace them.
		r.log.Warn("ASN or router id changed, restarting the BGP speaker", "asn", g.ASN, "router_id", g.RouterID)
		if err := r.stopLocked(ctx); err != nil {
			return err
		}
	}
	if !r.started {
		if err := r.sp.Start(ctx, g); err != nil {
			return fmt.Errorf("starting BGP speaker: %w", err)
		}
		r.started, r.global, r.everStarted = true, g, true
		r.startWatch()
	}
	// A new VTEP changes every export (its next hop) and which imports
	// are our own: all VRFs count as changed.
	vtepChanged := r.desired.VTEP != d.VTEP
	r.desired = d
	oldVRFs := r.vrfs
	r.vrfs = make(map[string]TenantVRF, len(d.VRFs))
	for _, v := range d.VRFs {
		r.vrfs[v.Name] = v
	}

	var errs []error
	// A restarting speaker configures its underlay sessions before
	// anything else: a GR helper that reconnects to a speaker that does
	// not know it yet is refused, and may give up the routes it keeps for
	// us (GoBGP does).
	if g.Restarting && !r.adopted {
		for _, p := range d.peers() {
			if p.VRF != "" {
				continue
			}
			if err := r.sp.AddPeer(ctx, p); err != nil {
				errs = append(errs, fmt.Errorf("adding BGP session %s: %w", p.Key(), err))
				continue
			}
			r.peers[p.Key()] = p
		}
	}
	// VRF RIBs first: machine sessions live in them.
	want := make(map[string]VRF)
	for _, v := range d.speakerVRFs() {
		want[v.Name] = v
		if cur, ok := r.svrfs[v.Name]; ok && sameVRF(cur, v) {
			continue
		} else if ok {
			errs = append(errs, r.deleteVRF(ctx, cur.Name))
		}
		if err := r.sp.AddVRF(ctx, v); err != nil {
			errs = append(errs, fmt.Errorf("adding VRF %s: %w", v.Name, err))
			continue
		}
		r.svrfs[v.Name] = v
	}
	// A restarting agent first re-originates what the kernel shows it
	// originated before, so that its first updates after the restart
	// (sent once its peers' End-of-RIB arrived) are complete and no peer
	// drops a stale route that is still valid.
	if g.Restarting && !r.adopted {
		r.adopted = true
		errs = append(errs, r.adoptLocked(ctx))
	}
	// Sessions.
	wantPeers := make(map[PeerKey]Peer)
	for _, p := range d.peers() {
		k := p.Key()
		wantPeers[k] = p
		cur, ok := r.peers[k]
		switch {
		case ok && samePeer(cur, p):
			continue
		case ok && !needsReset(cur, p):
			if err := r.sp.UpdatePeer(ctx, p); err != nil {
				errs = append(errs, fmt.Errorf("changing BGP session %s: %w", k, err))
				continue
			}
		case ok:
			if err := r.sp.DeletePeer(ctx, k); err != nil {
				errs = append(errs, fmt.Errorf("replacing BGP session %s: %w", k, err))
				continue
			}
			delete(r.peers, k)
			fallthrough
		default:
			if err := r.sp.AddPeer(ctx, p); err != nil {
				errs = append(errs, fmt.Errorf("adding BGP session %s: %w", k, err))
				continue
			}
		}
		r.peers[k] = p
		r.log.Info("BGP session configured", "peer", k.String(), "asn", p.ASN, "description", p.Description)
	}
	// Global originations.
	wantOrigin := make(map[string]Path)
	var adv []Path
	for _, p := range d.networkPaths() {
		wantOrigin[p.Prefix.String()] = p
		if cur, ok := r.origin[p.Prefix.String()]; !ok || !samePath(cur, p) {
			adv = append(adv, p)
		}
	}
	if len(adv) > 0 {
		if err := r.sp.Advertise(ctx, adv); err != nil {
			errs = append(errs, fmt.Errorf("originating %d prefixes: %w", len(adv), err))
		} else {
			for _, p := range adv {
				r.origin[p.Prefix.String()] = p
			}
		}
	}
	// Routes, exports and imports of VRFs that changed (their SVI, VLAN
	// or router MAC moved, or they appeared or went away).
	var touched []vrfPrefix
	changed := make(map[string]bool)
	removed := make(map[string]TenantVRF)
	for name, v := range r.vrfs {
		if o, ok := oldVRFs[name]; !ok || !sameTenantVRF(o, v) || vtepChanged {
			touched = append(touched, r.vrfScope(o)...)
			for _, p := range v.Originate {
				touched = append(touched, vrfPrefix{VRF: name, Prefix: p})
			}
			changed[name] = true
			if ok && o.Table != v.Table {
				// Its routes leave the old table, as a removed VRF's.
				removed[name] = o
			}
		}
	}
	for name, o := range oldVRFs {
		if _, ok := r.vrfs[name]; !ok {
			touched = append(touched, r.vrfScope(o)...)
			removed[name] = o
		}
	}
	if len(changed)+len(removed) > 0 {
		s := newScope()
		for _, k := range touched {
			s.vrf[k] = struct{}{}
		}
		for k := range r.rib.vrf {
			if changed[k.VRF] {
				s.vrf[k] = struct{}{}
			}
		}
		for p := range r.rib.evpnByPrefix {
			s.evpn[p] = struct{}{}
		}
		errs = append(errs, r.recompute(ctx, s, removed))
	}
	// Deletes last.
	for k := range r.peers {
		if _, ok := wantPeers[k]; ok {
			continue
		}
		if err := r.sp.DeletePeer(ctx, k); err != nil {
			errs = append(errs, fmt.Errorf("removing BGP session %s: %w", k, err))
			continue
		}
		delete(r.peers, k)
		r.log.Info("BGP session removed", "peer", k.String())
	}
	for name, v := range r.svrfs {
		if _, ok := want[name]; !ok {
			errs = append(errs, r.deleteVRF(ctx, v.Name))
		}
	}
	var wd []Path
	for k, p := range r.origin {
		if _, ok := wantOrigin[k]; !ok {
			wd = append(wd, p)
		}
	}
	if len(wd) > 0 {
		if err := r.sp.Withdraw(ctx, wd); err != nil {
			errs = append(errs, fmt.Errorf("withdrawing %d prefixes: %w", len(wd), err))
		} else {
			for _, p := range wd {
				delete(r.origin, p.Prefix.String())
			}
		}
	}
	return errors.Join(errs...)
}

func (r *Reconciler) deleteVRF(ctx context.Context, name string) error {
	if err := r.sp.DeleteVRF(ctx, name); err != nil {
		return fmt.Errorf("removing VRF %s: %w", name, err)
	}
	delete(r.svrfs, name)
	return nil
}

// vrfScope returns every destination of a VRF (as it was) that the
// reconciler holds a route, export or import for.
func (r *Reconciler) vrfScope(v TenantVRF) []vrfPrefix {
	if v.Name == "" {
		return nil
	}
	var out []vrfPrefix
	for k := range r.exports {
		if k.VRF == v.Name {
			out = append(out, k)
		}
	}
	for k := range r.injects {
		if k.VRF == v.Name {
			out = append(out, k)
		}
	}
	for k := range r.installed {
		if k.Table == v.Table {
			out = append(out, vrfPrefix{VRF: v.Name, Prefix: k.Prefix})
		}
	}
	for k := range r.failed {
		if k.Table == v.Table {
			out = append(out, vrfPrefix{VRF: v.Name, Prefix: k.Prefix})
		}
	}
	return out
}

func sameTenantVRF(a, b TenantVRF) bool {
	return a.Name == b.Name && a.VNI == b.VNI && a.Table == b.Table && a.SVI == b.SVI && a.VXLAN == b.VXLAN &&
		a.VLAN == b.VLAN && a.RouterMAC.String() == b.RouterMAC.String() && slices.Equal(a.Originate, b.Originate)
}

// startWatch follows the speaker's best paths until stopped.
func (r *Reconciler) startWatch() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	r.cancelWatch, r.watchDone = cancel, done
	go func() {
		defer close(done)
		err := r.sp.WatchBest(ctx, func(us []Update) { r.onUpdates(ctx, us) })
		if err != nil && ctx.Err() == nil {
			r.log.Error("watching BGP best paths stopped", "error", err)
		}
	}()
	go r.sweepWhenSettled(ctx)
}

func (r *Reconciler) onUpdates(ctx context.Context, us []Update) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastChange = time.Now()
	s := newScope()
	for _, u := range us {
		r.rib.apply(u, s)
	}
	if err := r.recompute(ctx, s, nil); err != nil {
		r.log.Warn("installing best paths", "error", err)
	}
}

// recompute derives the kernel routes, exports and imports of every
// destination in s and applies the difference. Destinations of VRFs in
// removed lose their routes, exports and imports.
func (r *Reconciler) recompute(ctx context.Context, s scope, removed map[string]TenantVRF) error {
	if s.empty() {
		return nil
	}
	d := &r.desired
	setR := make(map[RouteKey]fib.Route)
	delR := make(map[RouteKey]fib.Route)
	newRem := make(map[RouteKey][]fib.Remote)
	var adv, wd []Path

	debug := r.log.Enabled(ctx, slog.LevelDebug)
	route := func(k RouteKey, rt *fib.Route, rems []fib.Remote) {
		cur, ok := r.installed[k]
		if debug {
			r.log.Debug("recompute: route", "table", k.Table, "prefix", k.Prefix, "want", rt != nil, "installed", ok)
		}
		switch {
		case rt == nil && ok:
			delR[k] = cur
		case rt == nil && r.failed[k] != nil:
			// A failed install: forget the failure, and remove what an
			// earlier version may have left in the kernel.
			delR[k] = fib.Route{Table: k.Table, Prefix: k.Prefix}
		case rt != nil && (!ok || !sameRoute(cur, *rt) || r.failed[k] != nil):
			setR[k] = *rt
		}
		if rt != nil {
			newRem[k] = rems
		} else {
			newRem[k] = nil
		}
	}
	orig := func(m map[vrfPrefix]Path, k vrfPrefix, p *Path) {
		cur, ok := m[k]
		switch {
		case p == nil && ok:
			wd = append(wd, cur)
		case p != nil && (!ok || !samePath(cur, *p)):
			// The speaker replaces a path with the same NLRI on Advertise
			// and withdraws by NLRI: withdrawing the old version after
			// advertising the new one would withdraw the new one.
			if ok && !sameNLRI(cur, *p) {
				wd = append(wd, cur)
			}
			adv = append(adv, *p)
		}
	}
	vrfDest := func(v TenantVRF, k vrfPrefix) {
		out := r.rib.vrfDestination(d, v, k.Prefix)
		if export, held := r.held[k]; held {
			if (export && out.export == nil) || (!export && out.inject == nil) {
				return
			}
			delete(r.held, k)
		}
		route(RouteKey{Table: v.Table, Prefix: k.Prefix}, out.route, out.remotes)
		orig(r.exports, k, out.export)
		orig(r.injects, k, out.inject)
	}
	for p := range s.global {
		route(RouteKey{Table: MainTable, Prefix: p}, r.rib.globalRoute(p), nil)
	}
	// Each VRF destination once, though s.vrf and s.evpn may both name it
	// (else its export or import would be advertised twice).
	dests := make(map[vrfPrefix]TenantVRF)
	for k := range s.vrf {
		if o, gone := removed[k.VRF]; gone {
			if !r.tableInUse(o.Table) {
				route(RouteKey{Table: o.Table, Prefix: k.Prefix}, nil, nil)
			}
			if _, moved := r.vrfs[k.VRF]; !moved {
				delete(r.held, k)
				orig(r.exports, k, nil)
				orig(r.injects, k, nil)
				continue
			}
		}
		if v, ok := r.vrfs[k.VRF]; ok {
			dests[k] = v
		}
	}
	for p := range s.evpn {
		for _, v := range r.vrfs {
			dests[vrfPrefix{VRF: v.Name, Prefix: p}] = v
		}
	}
	for k, v := range dests {
		vrfDest(v, k)
	}

	var errs []error
	// Remote VTEP entries: refcount by route; new ones go in before the
	// routes, unused ones after.
	var addRem, delRem, preRem []fib.Remote
	for k, rems := range newRem {
		old := r.routeRem[k]
		var keys []remoteKey
		for _, rm := range rems {
			rk := remoteKey{}.of(rm)
			keys = append(keys, rk)
			if r.remRefs[rk] == 0 {
				if _, ok := r.remotes[rk]; !ok && !slices.ContainsFunc(addRem, func(x fib.Remote) bool { return remoteKey{}.of(x) == rk }) {
					addRem = append(addRem, rm)
				}
				r.remotes[rk] = rm
			}
			r.remRefs[rk]++
		}
		for _, rk := range old {
			r.remRefs[rk]--
		}
		if len(keys) == 0 {
			delete(r.routeRem, k)
		} else {
			r.routeRem[k] = keys
		}
	}
	for rk, n := range r.remRefs {
		if n > 0 {
			continue
		}
		delete(r.remRefs, rk)
		rm, ok := r.remotes[rk]
		if !ok {
			continue
		}
		delete(r.remotes, rk)
		// A VTEP whose router MAC changed: its neighbour entry is replaced
		// by the new one, so the old entries go first, not after.
		if slices.ContainsFunc(addRem, func(x fib.Remote) bool { return x.VXLAN == rm.VXLAN && x.VTEP == rm.VTEP }) {
			preRem = append(preRem, rm)
		} else {
			delRem = append(delRem, rm)
		}
	}
	if len(preRem) > 0 {
		if fails := r.fib.Remove(ctx, nil, preRem); len(fails) > 0 {
			errs = append(errs, fmt.Errorf("replacing remote VTEP entries: %w", fails[0]))
		}
	}

	if len(setR) > 0 || len(addRem) > 0 {
		routes := slices.Collect(maps.Values(setR))
		fails := r.fib.Install(ctx, routes, addRem)
		failed := make(map[RouteKey]error)
		for _, f := range fails {
			for _, rt := range routes {
				if rt.Table == f.Table && rt.Prefix.String() == f.Prefix {
					failed[RouteKey{Table: rt.Table, Prefix: rt.Prefix}] = f.Err
				}
			}
		}
		for k, rt := range setR {
			if err, bad := failed[k]; bad {
				r.failed[k] = err
				delete(r.installed, k)
				continue
			}
			delete(r.failed, k)
			r.installed[k] = rt
		}
		if len(fails) > 0 {
			errs = append(errs, fmt.Errorf("%d routes failed to install, first: %w", len(fails), fails[0]))
		}
	}
	if len(adv) > 0 {
		if err := r.sp.Advertise(ctx, adv); err != nil {
			errs = append(errs, fmt.Errorf("originating %d EVPN/VRF routes: %w", len(adv), err))
		} else {
			for _, p := range adv {
				r.recordOrigin(p, true)
			}
		}
	}
	if len(wd) > 0 {
		if err := r.sp.Withdraw(ctx, wd); err != nil {
			errs = append(errs, fmt.Errorf("withdrawing %d EVPN/VRF routes: %w", len(wd), err))
		} else {
			for _, p := range wd {
				r.recordOrigin(p, false)
			}
		}
	}
	if len(delR) > 0 || len(delRem) > 0 {
		routes := slices.Collect(maps.Values(delR))
		fails := r.fib.Remove(ctx, routes, delRem)
		for k := range delR {
			delete(r.installed, k)
			delete(r.failed, k)
		}
		if len(fails) > 0 {
			errs = append(errs, fmt.Errorf("%d routes failed to be removed, first: %w", len(fails), fails[0]))
		}
	}
	return errors.Join(errs...)
}

// recordOrigin books an originated (or withdrawn) export or import.
func (r *Reconciler) recordOrigin(p Path, add bool) {
	m := r.injects
	if p.Family == EVPN {
		m = r.exports
	}
	var k vrfPrefix
	if p.Family == EVPN {
		for _, v := range r.vrfs {
			if v.VNI == p.VNI {
				k = vrfPrefix{VRF: v.Name, Prefix: p.Prefix}
			}
		}
		if k.VRF == "" {
			// The VRF is gone; find the entry by value.
			for kk, cur := range m {
				if samePath(cur, p) {
					k = kk
				}
			}
		}
	} else {
		k = vrfPrefix{VRF: p.VRF, Prefix: p.Prefix}
	}
	if add {
		m[k] = p
	} else if cur, ok := m[k]; ok && samePath(cur, p) {
		delete(m, k)
	}
}

func (r *Reconciler) tableInUse(table uint32) bool {
	for _, v := range r.vrfs {
		if v.Table == table {
			return true
		}
	}
	return false
}

// sweepWhenSettled removes routes a previous run left in the kernel once
// the sessions are back (graceful restart: until then the old routes keep
// forwarding), by a full Sync of what the reconciler holds.
func (r *Reconciler) sweepWhenSettled(ctx context.Context) {
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var settledSince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ready := time.Since(start) >= r.sweepMax
		if !ready {
			states, err := r.sp.Peers(ctx)
			up := err == nil
			for _, s := range states {
				up = up && s.State == StateEstablished
			}
			if !up {
				settledSince = time.Time{}
				continue
			}
			if settledSince.IsZero() {
				settledSince = time.Now()
			}
			// Quiet: every session up and no best path changed since.
			quietSince := settledSince
			r.mu.Lock()
			if r.lastChange.After(quietSince) {
				quietSince = r.lastChange
			}
			r.mu.Unlock()
			ready = time.Since(quietSince) >= r.sweepQuiet
		}
		if ready {
			if err := r.sweepOrigins(ctx); err != nil {
				r.log.Warn("sweeping stale originations", "error", err)
			}
			if err := r.Resync(ctx); err != nil {
				r.log.Warn("sweeping stale routes", "error", err)
				continue
			}
			return
		}
	}
}

// Resync makes the kernel hold exactly the routes and remotes the
// reconciler installed: routes of ours that nobody announces any more are
// removed, missing ones are put back.
func (r *Reconciler) Resync(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Stopped (or the sweeper's context cancelled by Stop while it waited
	// for the lock): the reconciler holds nothing, and a Sync would remove
	// the routes graceful restart keeps forwarding.
	if !r.started {
		return errors.New("resyncing the FIB: the BGP speaker is not running")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("resyncing the FIB: %w", err)
	}
	routes := slices.Collect(maps.Values(r.installed))
	for k := range r.failed { // retried
		if rt, ok := r.wantedRoute(k); ok {
			routes = append(routes, rt)
		}
	}
	fails, err := r.fib.Sync(ctx, routes, slices.Collect(maps.Values(r.remotes)))
	if err != nil {
		return fmt.Errorf("resyncing the FIB: %w", err)
	}
	failed := make(map[RouteKey]error)
	for _, f := range fails {
		for _, rt := range routes {
			if rt.Table == f.Table && rt.Prefix.String() == f.Prefix {
				failed[RouteKey{Table: rt.Table, Prefix: rt.Prefix}] = f.Err
			}
		}
	}
	for _, rt := range routes {
		k := RouteKey{Table: rt.Table, Prefix: rt.Prefix}
		if err, bad := failed[k]; bad {
			r.failed[k] = err
			delete(r.installed, k)
		} else {
			delete(r.failed, k)
			r.installed[k] = rt
		}
	}
	r.swept = true
	r.log.Info("FIB resynced", "routes", len(r.installed), "remotes", len(r.remotes), "failed", len(r.failed))
	return nil
}

// wantedRoute recomputes the route a key asks for.
func (r *Reconciler) wantedRoute(k RouteKey) (fib.Route, bool) {
	if k.Table == MainTable {
		if rt := r.rib.globalRoute(k.Prefix); rt != nil {
			return *rt, true
		}
		return fib.Route{}, false
	}
	for _, v := range r.vrfs {
		if v.Table == k.Table {
			if out := r.rib.vrfDestination(&r.desired, v, k.Prefix); out.route != nil {
				return *out.route, true
			}
		}
	}
	return fib.Route{}, false
}

// LinkDown resets the sessions on a link that lost carrier, so their routes
// are withdrawn now rather than when the hold timer expires.
func (r *Reconciler) LinkDown(ctx context.Context, iface string) {
	r.mu.Lock()
	var keys []PeerKey
	for k, p := range r.peers {
		if p.Interface == iface {
			keys = append(keys, k)
		}
	}
	// Numbered underlay sessions are keyed by address; their port is in
	// the desired state.
	for _, u := range r.desired.Underlay {
		if k := (PeerKey{Name: u.Address.String()}); u.Interface == iface && u.Address.IsValid() && !slices.Contains(keys, k) {
			if _, ok := r.peers[k]; ok {
				keys = append(keys, k)
			}
		}
	}
	r.mu.Unlock()
	for _, k := range keys {
		if err := r.sp.ResetPeer(ctx, k); err != nil {
			r.log.Warn("resetting BGP session after link down", "peer", k.String(), "error", err)
			continue
		}
		r.log.Info("BGP session reset: its port lost carrier", "peer", k.String())
	}
}

// Stop stops the speaker with graceful restart: peers keep our routes for
// GracefulRestartTime, and the kernel routes stay in place.
func (r *Reconciler) Stop(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopLocked(ctx)
}

func (r *Reconciler) stopLocked(ctx context.Context) error {
	if !r.started {
		return nil
	}
	r.cancelWatch()
	// The watch callback takes r.mu: wait for it without holding it.
	r.mu.Unlock()
	<-r.watchDone
	r.mu.Lock()
	err := r.sp.Stop(ctx)
	r.started = false
	r.reset()
	if err != nil {
		return fmt.Errorf("stopping BGP speaker: %w", err)
	}
	return nil
}

// adoptLocked re-originates, from the routes of ours the kernel holds, the
// EVPN exports (a VRF route via a machine port) and the imports handed to
// machines (a VRF route via the L3VNI's SVI) of the previous run, and books
// them like any other origination, held (r.held) until a best path of the
// same kind confirms them: the speaker's report of the re-origination
// itself, or an import arriving before the machine's session is back, must
// not withdraw them or touch their kernel routes. The sweep withdraws those
// no best path confirmed.
func (r *Reconciler) adoptLocked(ctx context.Context) error {
	routes, err := r.fib.Kernel(ctx)
	if err != nil {
		return fmt.Errorf("reading the routes of the previous run: %w", err)
	}
	byTable := make(map[uint32]TenantVRF)
	for _, v := range r.vrfs {
		byTable[v.Table] = v
	}
	d := &r.desired
	var adv []Path
	for _, rt := range routes {
		v, ok := byTable[rt.Table]
		if !ok || !v.evpn() || len(rt.NextHops) == 0 {
			continue
		}
		k := vrfPrefix{VRF: v.Name, Prefix: rt.Prefix}
		viaSVI := true
		for _, nh := range rt.NextHops {
			viaSVI = viaSVI && nh.Interface == v.SVI
		}
		if viaSVI {
			p := Path{Family: IPv4Unicast, VRF: v.Name, Prefix: rt.Prefix, LocalPref: importLocalPref}
			if rt.Prefix.Addr().Is6() {
				p.Family = IPv6Unicast
			}
			r.injects[k] = p
			r.held[k] = false
			adv = append(adv, p)
			continue
		}
		p := Path{
			Family: EVPN, Prefix: rt.Prefix, NextHop: d.VTEP, RD: RD(d.RouterID, v.VNI),
			RouteTargets: []string{RT(d.ASN, v.VNI)}, RouterMAC: v.RouterMAC, VNI: v.VNI,
		}
		r.exports[k] = p
		r.held[k] = true
		adv = append(adv, p)
	}
	if len(adv) == 0 {
		return nil
	}
	r.log.Info("graceful restart: re-originating what the kernel still forwards", "paths", len(adv))
	if err := r.sp.Advertise(ctx, adv); err != nil {
		return fmt.Errorf("re-originating %d paths of the previous run: %w", len(adv), err)
	}
	return nil
}

// sweepOrigins recomputes every destination the reconciler originates for,
// so originations adopted from the previous run that no best path
// confirmed are withdrawn.
func (r *Reconciler) sweepOrigins(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started {
		return nil
	}
	clear(r.held)
	s := newScope()
	for k := range r.exports {
		s.vrf[k] = struct{}{}
	}
	for k := range r.injects {
		s.vrf[k] = struct{}{}
	}
	return r.recompute(ctx, s, nil)
}
