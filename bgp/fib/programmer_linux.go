package fib

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Programmer installs routes and EVPN remotes into one network namespace.
// Its methods are safe for concurrent use; they are serialised.
//
// It keeps a record of what it installed (read from the kernel by Sync, or
// by the first Apply), so Apply only sends what changes. Routes that the
// kernel removes by itself (a device going down or away) are not noticed
// until the next Sync: call Sync after link events and now and then.
type Programmer struct {
	mu     sync.Mutex
	o      options
	c      *conn
	h      *netlink.Handle // device name <-> index lookups only
	closed bool

	loaded  bool                 // routes/stale/facts reflect the kernel
	routes  map[routeKey]Route   // ours, as installed (normalised)
	stale   []kRoute             // ours but not in a form we install (other metric or type): Sync withdraws them
	remotes map[remoteKey]Remote // the remotes wanted as of the last Sync/Apply
	facts   facts                // neighbour/FDB entries of ours, as installed
	hops    *hopInterner         // shared next-hop slices of single-path routes
}

// New opens the kernel sockets of a programmer in the namespace given by
// WithNetns, or else in the calling thread's namespace.
func New(opts ...Option) (*Programmer, error) {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	ns := netns.None()
	if o.ns.set {
		ns = o.ns.ns
	}
	c, err := dialAt(ns, o.window)
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		c.close()
		return nil, fmt.Errorf("opening a netlink handle: %w", err)
	}
	return &Programmer{o: o, c: c, h: h, routes: map[routeKey]Route{}, remotes: map[remoteKey]Remote{}, facts: newFacts(), hops: newHopInterner()}, nil
}

// Close releases the sockets. Installed routes stay in the kernel.
func (p *Programmer) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.h.Close()
	return p.c.close()
}

// Installed returns the routes the programmer believes are in the kernel
// (what it installed or found with our protocol), sorted.
func (p *Programmer) Installed() []Route {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Route, 0, len(p.routes))
	for _, r := range p.routes {
		r.NextHops = slices.Clone(r.NextHops) // ours are shared and never modified
		out = append(out, r)
	}
	sortRoutes(out)
	return out
}

// Sync makes the kernel hold exactly routes and remotes among what is ours:
// it reads every route with our protocol (all tables, IPv4 and IPv6) and
// our neighbour/FDB entries, installs the remotes' entries, then the missing
// or changed routes, then withdraws our routes that are not wanted, then
// the entries of remotes that are no longer wanted (remotes before the
// routes that resolve through them, and removed after them). Routes of
// other protocols are never touched.
//
// Per-route and per-remote failures do not stop the others: they are in
// Result and the returned error wraps ErrSomeFailed. Other errors (reading
// the kernel) mean nothing was changed.
func (p *Programmer) Sync(ctx context.Context, routes []Route, remotes []Remote) (Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Result{}, errClosed
	}
	l := p.newLinks()
	if err := p.load(ctx, l); err != nil {
		return Result{}, err
	}
	want := make(map[remoteKey]Remote, len(remotes))
	for _, r := range remotes {
		want[r.key()] = r
	}
	return p.apply(ctx, l, diffRoutes(routes, p.routes, p.hops), want, true)
}

// Apply makes an incremental change: b.Set routes are installed or
// replaced, b.Delete routes withdrawn (when installed by us), remotes added
// or removed. A route that is already installed as wanted costs nothing.
// The first Apply of a programmer that has not synced reads the kernel
// first. Order and failures as for Sync.
func (p *Programmer) Apply(ctx context.Context, b Batch) (Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Result{}, errClosed
	}
	l := p.newLinks()
	if !p.loaded {
		if err := p.load(ctx, l); err != nil {
			return Result{}, err
		}
	}
	want := make(map[remoteKey]Remote, len(p.remotes)+len(b.SetRemotes))
	for k, r := range p.remotes {
		want[k] = r
	}
	for _, r := range b.DeleteRemotes {
		delete(want, r.key())
	}
	for _, r := range b.SetRemotes {
		want[r.key()] = r
	}
	return p.apply(ctx, l, diffBatch(b.Set, b.Delete, p.routes, p.hops), want, false)
}

func (p *Programmer) apply(ctx context.Context, l *links, plan routePlan, want map[remoteKey]Remote, withdrawStale bool) (Result, error) {
	var res Result
	res.Failures = append(res.Failures, plan.invalid...)
	res.Unchanged = plan.unchanged
	fp := p.planFacts(want, l, &res)
	p.runFacts(ctx, fp.adds, &res)
	p.install(ctx, plan.set, l, &res)
	var stale []kRoute
	if withdrawStale {
		stale = p.stale
	}
	p.withdraw(ctx, plan.del, stale, &res)
	p.runFacts(ctx, fp.dels, &res)
	p.remotes = want
	return res, res.err()
}

// links resolves device names and indexes for one call, with a cache.
type links struct {
	h       *netlink.Handle
	byName  map[string]linkRes
	byIndex map[int32]string
}

type linkRes struct {
	index int32
	err   error
}

func (p *Programmer) newLinks() *links {
	return &links{h: p.h, byName: map[string]linkRes{}, byIndex: map[int32]string{}}
}

func (l *links) index(name string) (int32, error) {
	if r, ok := l.byName[name]; ok {
		return r.index, r.err
	}
	var r linkRes
	lk, err := l.h.LinkByName(name)
	if err != nil {
		r.err = fmt.Errorf("device %s: %w", name, err)
	} else {
		r.index = int32(lk.Attrs().Index)
		l.byIndex[r.index] = name
	}
	l.byName[name] = r
	return r.index, r.err
}

func (l *links) name(index int32) string {
	if index == 0 {
		return ""
	}
	if n, ok := l.byIndex[index]; ok {
		return n
	}
	n := fmt.Sprintf("if%d", index) // vanished: never equal to a wanted device
	if lk, err := l.h.LinkByIndex(int(index)); err == nil {
		n = lk.Attrs().Name
		l.byName[n] = linkRes{index: index}
	}
	l.byIndex[index] = n
	return n
}

// kernelRoute turns a route into the request form.
func (p *Programmer) kernelRoute(r Route, l *links) (kRoute, error) {
	k := kRoute{Table: r.table(), Prefix: r.Prefix, Protocol: Protocol, Type: rtnUnicast, Scope: rtScopeUniverse, Metric: p.o.metric}
	k.Hops = make([]kHop, len(r.NextHops))
	for i, nh := range r.NextHops {
		h := kHop{Gateway: nh.Addr}
		if nh.Interface != "" {
			idx, err := l.index(nh.Interface)
			if err != nil {
				return k, fmt.Errorf("next hop %w", err)
			}
			h.Ifindex = idx
		}
		if nh.OnLink {
			h.Flags = rtnhFOnlink
		}
		k.Hops[i] = h
	}
	if len(k.Hops) == 1 && !k.Hops[0].Gateway.IsValid() {
		k.Scope = rtScopeLink
	}
	return k, nil
}

// routeOf turns a dumped route into ours (normalised).
func routeOf(k kRoute, l *links, in *hopInterner) Route {
	r := Route{Table: k.Table, Prefix: k.Prefix}
	for _, h := range k.Hops {
		r.NextHops = append(r.NextHops, NextHop{Addr: h.Gateway, Interface: l.name(h.Ifindex), OnLink: h.Flags&rtnhFOnlink != 0})
	}
	return r.normalize(in)
}

// load reads our routes and our neighbour/FDB entries from the kernel.
func (p *Programmer) load(ctx context.Context, l *links) error {
	var ks []kRoute
	for _, fam := range []uint8{afInet, afInet6} {
		n0 := len(ks)
		err := p.c.dump(ctx,
			func(b []byte, seq uint32) []byte { return appendDumpRoutes(b, seq, fam, Protocol) },
			func() { ks = ks[:n0] },
			func(typ uint16, payload []byte) error {
				if typ != rtmNewRoute {
					return nil
				}
				k, err := parseRouteMsg(payload)
				if err != nil {
					p.o.log.Warn("skipping an undecodable route", "err", err)
					return nil
				}
				if k.Protocol == Protocol && k.Flags&rtmFCloned == 0 {
					ks = append(ks, k)
				}
				return nil
			})
		if err != nil {
			return fmt.Errorf("reading the kernel's routes (family %d): %w", fam, err)
		}
	}
	routes := make(map[routeKey]Route, len(ks))
	var stale []kRoute
	for _, k := range ks {
		if k.Type != rtnUnicast || k.Metric != p.o.metric || len(k.Hops) == 0 {
			stale = append(stale, k)
			continue
		}
		r := routeOf(k, l, p.hops)
		if _, dup := routes[r.key()]; dup {
			stale = append(stale, k)
			continue
		}
		routes[r.key()] = r
	}
	f, err := p.loadFacts(ctx)
	if err != nil {
		return err
	}
	p.routes, p.stale, p.facts, p.loaded = routes, stale, f, true
	if len(p.remotes) == 0 {
		p.remotes = remotesOf(f, l)
	}
	p.o.log.Debug("read the kernel's state", "routes", len(routes), "stale", len(stale), "neighbours", len(f.neigh))
	return nil
}

// install adds or replaces routes: NLM_F_EXCL for a route we do not have
// (so another protocol's route with the same key is reported, not
// replaced), NLM_F_REPLACE for ours.
func (p *Programmer) install(ctx context.Context, set []Route, l *links, res *Result) {
	ks := make([]kRoute, 0, len(set))
	rs := make([]Route, 0, len(set))
	for _, r := range set {
		k, err := p.kernelRoute(r, l)
		if err != nil {
			res.Failures = append(res.Failures, RouteFailure{Route: r, Err: fmt.Errorf("installing %s: %w", r.where(), err)})
			continue
		}
		ks, rs = append(ks, k), append(rs, r)
	}
	if len(ks) == 0 {
		return
	}
	errs := p.c.exec(ctx, len(ks), func(i int, b []byte, seq uint32, flags uint16) []byte {
		flags |= nlmFCreate | nlmFExcl
		if _, ok := p.routes[rs[i].key()]; ok {
			flags = flags&^nlmFExcl | nlmFReplace
		}
		return appendRouteMsg(b, rtmNewRoute, flags, seq, &ks[i])
	})
	for i, err := range errs {
		r := rs[i]
		if err == nil {
			p.routes[r.key()] = r
			res.Installed++
			continue
		}
		if errors.Is(err, ErrAckLost) {
			p.loaded = false // re-read before the next Apply
			delete(p.routes, r.key())
		}
		res.Failures = append(res.Failures, RouteFailure{Route: r, Err: fmt.Errorf("installing %s: %w", r.where(), err)})
	}
}

// withdraw deletes our routes; the requests carry our protocol, so the
// kernel never deletes another protocol's route for us. A route already
// gone (ESRCH) counts as withdrawn.
func (p *Programmer) withdraw(ctx context.Context, del []Route, stale []kRoute, res *Result) {
	n := len(del) + len(stale)
	if n == 0 {
		return
	}
	req := func(i int) kRoute {
		if i < len(del) {
			return kRoute{Table: del[i].table(), Prefix: del[i].Prefix, Protocol: Protocol, Scope: rtScopeNowhere, Metric: p.o.metric}
		}
		s := stale[i-len(del)]
		return kRoute{Table: s.Table, Prefix: s.Prefix, Protocol: Protocol, Scope: rtScopeNowhere, Type: s.Type, Metric: s.Metric}
	}
	errs := p.c.exec(ctx, n, func(i int, b []byte, seq uint32, flags uint16) []byte {
		k := req(i)
		return appendRouteMsg(b, rtmDelRoute, flags, seq, &k)
	})
	var keep []kRoute
	for i, err := range errs {
		if errors.Is(err, unix.ESRCH) {
			err = nil
		}
		var r Route
		if i < len(del) {
			r = del[i]
		} else {
			s := stale[i-len(del)]
			r = Route{Table: s.Table, Prefix: s.Prefix}
		}
		if err == nil {
			if i < len(del) {
				delete(p.routes, r.key())
			}
			res.Deleted++
			continue
		}
		if i >= len(del) {
			keep = append(keep, stale[i-len(del)])
		}
		if errors.Is(err, ErrAckLost) {
			p.loaded = false
		}
		res.Failures = append(res.Failures, RouteFailure{Route: r, Delete: true, Err: fmt.Errorf("withdrawing %s: %w", r.where(), err)})
	}
	if stale != nil {
		p.stale = keep
	}
}

// Neighbour and FDB entries ("facts") of EVPN remotes.

type mac [6]byte

type neighKey struct {
	ifindex int32
	ip      netip.Addr
}

type fdbKey struct {
	ifindex int32
	mac     mac
}

type masterKey struct {
	ifindex int32
	mac     mac
	vlan    uint16
}

type facts struct {
	neigh  map[neighKey]mac       // SVI, VTEP -> router MAC (permanent, NDA_PROTOCOL 200)
	self   map[fdbKey]netip.Addr  // VXLAN, router MAC -> VTEP (self, permanent)
	master map[masterKey]struct{} // VXLAN port, router MAC, VLAN (master, static)
}

func newFacts() facts {
	return facts{neigh: map[neighKey]mac{}, self: map[fdbKey]netip.Addr{}, master: map[masterKey]struct{}{}}
}

// loadFacts reads our neighbours (NDA_PROTOCOL == Protocol) and the FDB
// entries recognised through them (see the package documentation).
func (p *Programmer) loadFacts(ctx context.Context) (facts, error) {
	f := newFacts()
	var all []kNeigh
	for _, fam := range []uint8{afInet, afInet6, afBridge} {
		n0 := len(all)
		err := p.c.dump(ctx,
			func(b []byte, seq uint32) []byte { return appendDumpNeigh(b, seq, fam) },
			func() { all = all[:n0] },
			func(typ uint16, payload []byte) error {
				if typ != rtmNewNeigh {
					return nil
				}
				n, err := parseNeighMsg(payload)
				if err != nil {
					p.o.log.Warn("skipping an undecodable neighbour", "err", err)
					return nil
				}
				if len(n.LLAddr) == 6 && (fam == afBridge || n.Protocol == Protocol) {
					all = append(all, n)
				}
				return nil
			})
		if err != nil {
			return f, fmt.Errorf("reading the kernel's neighbours (family %d): %w", fam, err)
		}
	}
	type ipMAC struct {
		ip  netip.Addr
		mac mac
	}
	byIPMAC := map[ipMAC]bool{}
	for _, n := range all {
		if n.Family != afBridge && n.Dst.IsValid() {
			m := mac(n.LLAddr)
			f.neigh[neighKey{n.Ifindex, n.Dst.Unmap()}] = m
			byIPMAC[ipMAC{n.Dst.Unmap(), m}] = true
		}
	}
	isMaster := func(n kNeigh) bool { return n.Master != 0 || n.Flags&ntfMaster != 0 }
	for _, n := range all {
		if n.Family == afBridge && !isMaster(n) && n.Dst.IsValid() && n.State&nudPermanent != 0 && byIPMAC[ipMAC{n.Dst.Unmap(), mac(n.LLAddr)}] {
			f.self[fdbKey{n.Ifindex, mac(n.LLAddr)}] = n.Dst.Unmap()
		}
	}
	for _, n := range all {
		if n.Family == afBridge && isMaster(n) && n.State&nudNoarp != 0 && n.State&nudPermanent == 0 {
			if _, ok := f.self[fdbKey{n.Ifindex, mac(n.LLAddr)}]; ok {
				f.master[masterKey{n.Ifindex, mac(n.LLAddr), n.Vlan}] = struct{}{}
			}
		}
	}
	return f, nil
}

// remotesOf reconstructs the remotes whose three entries are all installed
// (used when Apply runs before any Sync).
func remotesOf(f facts, l *links) map[remoteKey]Remote {
	out := map[remoteKey]Remote{}
	for nk, m := range f.neigh {
		for sk, dst := range f.self {
			if sk.mac != m || dst != nk.ip {
				continue
			}
			for mk := range f.master {
				if mk.ifindex == sk.ifindex && mk.mac == m {
					r := Remote{VTEP: nk.ip, RouterMAC: net.HardwareAddr(m[:]), SVI: l.name(nk.ifindex), VXLAN: l.name(sk.ifindex), VLAN: mk.vlan}
					out[r.key()] = r
				}
			}
		}
	}
	return out
}

// factOp is one neighbour/FDB request.
type factOp struct {
	del   bool
	msg   kNeigh
	what  string // "neighbour 10.0.0.2 lladdr ... dev vlan1000"
	owner Remote
	apply func(facts) // records the success
}

type factPlan struct{ adds, dels []factOp }

// planFacts compares the entries the wanted remotes need with the installed
// ones. Adds go VXLAN FDB, bridge FDB, neighbour; deletes the other way
// round.
func (p *Programmer) planFacts(want map[remoteKey]Remote, l *links, res *Result) factPlan {
	w := newFacts()
	owner := map[any]Remote{}
	keys := make([]remoteKey, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b remoteKey) int { return a.vtep.Compare(b.vtep) })
	for _, k := range keys {
		r := want[k]
		if err := r.validate(); err != nil {
			res.RemoteFailures = append(res.RemoteFailures, RemoteFailure{Remote: r, Err: fmt.Errorf("installing remote %s: %w", r.VTEP, err)})
			continue
		}
		svi, err := l.index(r.SVI)
		if err == nil {
			var vx int32
			if vx, err = l.index(r.VXLAN); err == nil {
				m, ip := mac(r.RouterMAC), r.VTEP.WithZone("").Unmap()
				nk, sk, mk := neighKey{svi, ip}, fdbKey{vx, m}, masterKey{vx, m, r.VLAN}
				w.neigh[nk], w.self[sk], w.master[mk] = m, ip, struct{}{}
				for _, key := range []any{nk, sk, mk} {
					if _, ok := owner[key]; !ok {
						owner[key] = r
					}
				}
				continue
			}
		}
		res.RemoteFailures = append(res.RemoteFailures, RemoteFailure{Remote: r, Err: fmt.Errorf("installing remote %s: %w", r.VTEP, err)})
	}
	var fp factPlan
	fam := func(a netip.Addr) uint8 { return uint8(familyOf(a)) }
	// Adds.
	for k, dst := range sortedSelf(w.self) {
		if cur, ok := p.facts.self[k]; ok && cur == dst {
			continue
		}
		fp.adds = append(fp.adds, factOp{
			msg:   kNeigh{Family: afBridge, Ifindex: k.ifindex, State: nudPermanent, Flags: ntfSelf, LLAddr: k.mac[:], Dst: dst},
			what:  fmt.Sprintf("fdb %s dev %s dst %s self", net.HardwareAddr(k.mac[:]), l.name(k.ifindex), dst),
			owner: owner[k], apply: func(f facts) { f.self[k] = dst },
		})
	}
	for k := range sortedKeys(w.master) {
		if _, ok := p.facts.master[k]; ok {
			continue
		}
		fp.adds = append(fp.adds, factOp{
			msg:   kNeigh{Family: afBridge, Ifindex: k.ifindex, State: nudNoarp, Flags: ntfMaster, LLAddr: k.mac[:], Vlan: k.vlan},
			what:  fmt.Sprintf("fdb %s dev %s vlan %d master static", net.HardwareAddr(k.mac[:]), l.name(k.ifindex), k.vlan),
			owner: owner[k], apply: func(f facts) { f.master[k] = struct{}{} },
		})
	}
	for k, m := range sortedNeigh(w.neigh) {
		if cur, ok := p.facts.neigh[k]; ok && cur == m {
			continue
		}
		fp.adds = append(fp.adds, factOp{
			msg:   kNeigh{Family: fam(k.ip), Ifindex: k.ifindex, State: nudPermanent, Dst: k.ip, LLAddr: m[:], Protocol: Protocol},
			what:  fmt.Sprintf("neighbour %s lladdr %s dev %s", k.ip, net.HardwareAddr(m[:]), l.name(k.ifindex)),
			owner: owner[k], apply: func(f facts) { f.neigh[k] = m },
		})
	}
	// Deletes: installed entries no wanted remote needs.
	for k, m := range sortedNeigh(p.facts.neigh) {
		if _, ok := w.neigh[k]; ok {
			continue
		}
		fp.dels = append(fp.dels, factOp{
			del:   true,
			msg:   kNeigh{Family: fam(k.ip), Ifindex: k.ifindex, Dst: k.ip},
			what:  fmt.Sprintf("neighbour %s lladdr %s dev %s", k.ip, net.HardwareAddr(m[:]), l.name(k.ifindex)),
			owner: Remote{VTEP: k.ip, RouterMAC: net.HardwareAddr(m[:]), SVI: l.name(k.ifindex)},
			apply: func(f facts) { delete(f.neigh, k) },
		})
	}
	for k := range sortedKeys(p.facts.master) {
		if _, ok := w.master[k]; ok {
			continue
		}
		fp.dels = append(fp.dels, factOp{
			del:   true,
			msg:   kNeigh{Family: afBridge, Ifindex: k.ifindex, Flags: ntfMaster, LLAddr: k.mac[:], Vlan: k.vlan},
			what:  fmt.Sprintf("fdb %s dev %s vlan %d master static", net.HardwareAddr(k.mac[:]), l.name(k.ifindex), k.vlan),
			owner: Remote{RouterMAC: net.HardwareAddr(k.mac[:]), VXLAN: l.name(k.ifindex), VLAN: k.vlan},
			apply: func(f facts) { delete(f.master, k) },
		})
	}
	for k, dst := range sortedSelf(p.facts.self) {
		if _, ok := w.self[k]; ok {
			continue
		}
		fp.dels = append(fp.dels, factOp{
			del:   true,
			msg:   kNeigh{Family: afBridge, Ifindex: k.ifindex, Flags: ntfSelf, LLAddr: k.mac[:], Dst: dst},
			what:  fmt.Sprintf("fdb %s dev %s dst %s self", net.HardwareAddr(k.mac[:]), l.name(k.ifindex), dst),
			owner: Remote{VTEP: dst, RouterMAC: net.HardwareAddr(k.mac[:]), VXLAN: l.name(k.ifindex)},
			apply: func(f facts) { delete(f.self, k) },
		})
	}
	return fp
}

// runFacts sends neighbour/FDB requests; an entry already gone (ENOENT),
// or on a device that is gone (ENODEV), counts as removed.
func (p *Programmer) runFacts(ctx context.Context, ops []factOp, res *Result) {
	if len(ops) == 0 {
		return
	}
	errs := p.c.exec(ctx, len(ops), func(i int, b []byte, seq uint32, flags uint16) []byte {
		if ops[i].del {
			return appendNeighMsg(b, rtmDelNeigh, flags, seq, &ops[i].msg)
		}
		return appendNeighMsg(b, rtmNewNeigh, flags|nlmFCreate|nlmFReplace, seq, &ops[i].msg)
	})
	for i, err := range errs {
		op := ops[i]
		// Gone already, or its device is (deleting an SVI or VXLAN device
		// takes its entries along): removed.
		if op.del && (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV)) {
			err = nil
		}
		if err == nil {
			op.apply(p.facts)
			if op.del {
				res.RemotesDeleted++
			} else {
				res.RemotesInstalled++
			}
			continue
		}
		if errors.Is(err, ErrAckLost) {
			p.loaded = false
		}
		verb := "installing"
		if op.del {
			verb = "removing"
		}
		res.RemoteFailures = append(res.RemoteFailures, RemoteFailure{Remote: op.owner, Delete: op.del, Err: fmt.Errorf("%s %s: %w", verb, op.what, err)})
	}
}
