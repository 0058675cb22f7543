package bgp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/metalfabric/fabric/bgp/fib"
)

// cmpOpts compares netip values by value.
var cmpOpts = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

// fakeSpeaker is an in-memory Speaker. It records every call (as a short
// string), keeps a model of what is configured and originated (Advertise
// replaces by family/VRF/RD/prefix, Withdraw removes by the same key, as the
// GoBGP speaker does), and lets the test push best-path batches into the
// WatchBest callback synchronously.
type fakeSpeaker struct {
	mu      sync.Mutex
	calls   []string
	started bool
	global  Global
	vrfs    map[string]VRF
	peers   map[PeerKey]Peer
	adv     map[advKey]Path
	states  []PeerState
	// fail makes the named operation ("AddPeer", "Advertise", ...) fail.
	fail       map[string]error
	peersCalls int

	fn       func([]Update)
	watching chan struct{} // closed when WatchBest registered fn
}

type advKey struct {
	Family Family
	VRF    string
	RD     string
	Prefix netip.Prefix
}

func keyOf(p Path) advKey {
	return advKey{Family: p.Family, VRF: p.VRF, RD: p.RD, Prefix: p.Prefix}
}

func newFakeSpeaker() *fakeSpeaker {
	return &fakeSpeaker{
		vrfs: map[string]VRF{}, peers: map[PeerKey]Peer{}, adv: map[advKey]Path{},
		fail: map[string]error{}, watching: make(chan struct{}),
	}
}

func (s *fakeSpeaker) record(op string, arg string) error {
	s.calls = append(s.calls, strings.TrimSpace(op+" "+arg))
	return s.fail[op]
}

func (s *fakeSpeaker) Start(_ context.Context, g Global) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.record("Start", fmt.Sprint(g.ASN)); err != nil {
		return err
	}
	s.started, s.global = true, g
	return nil
}

func (s *fakeSpeaker) Stop(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.record("Stop", ""); err != nil {
		return err
	}
	s.started = false
	s.vrfs, s.peers, s.adv = map[string]VRF{}, map[PeerKey]Peer{}, map[advKey]Path{}
	return nil
}

func (s *fakeSpeaker) AddVRF(_ context.Context, v VRF) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.record("AddVRF", v.Name); err != nil {
		return err
	}
	s.vrfs[v.Name] = v
	return nil
}

func (s *fakeSpeaker) DeleteVRF(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.record("DeleteVRF", name); err != nil {
		return err
	}
	delete(s.vrfs, name)
	return nil
}

func (s *fakeSpeaker) AddPeer(_ context.Context, p Peer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.record("AddPeer", p.Key().String()); err != nil {
		return err
	}
	if _, dup := s.peers[p.Key()]; dup {
		return fmt.Errorf("peer %s exists", p.Key())
	}
	s.peers[p.Key()] = p
	return nil
}

func (s *fakeSpeaker) UpdatePeer(_ context.Context, p Peer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.record("UpdatePeer", p.Key().String()); err != nil {
		return err
	}
	if _, ok := s.peers[p.Key()]; !ok {
		return fmt.Errorf("peer %s unknown", p.Key())
	}
	s.peers[p.Key()] = p
	return nil
}

func (s *fakeSpeaker) DeletePeer(_ context.Context, k PeerKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.record("DeletePeer", k.String()); err != nil {
		return err
	}
	delete(s.peers, k)
	return nil
}

func (s *fakeSpeaker) ResetPeer(_ context.Context, k PeerKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.record("ResetPeer", k.String())
}

func describe(ps []Path) string {
	var ds []string
	for _, p := range ps {
		d := string(p.Family) + " "
		if p.VRF != "" {
			d += p.VRF + "/"
		}
		if p.RD != "" {
			d += "[" + p.RD + "]"
		}
		ds = append(ds, d+p.Prefix.String())
	}
	slices.Sort(ds)
	return strings.Join(ds, ",")
}

func (s *fakeSpeaker) Advertise(_ context.Context, ps []Path) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.record("Advertise", describe(ps)); err != nil {
		return err
	}
	for _, p := range ps {
		s.adv[keyOf(p)] = p
	}
	return nil
}

func (s *fakeSpeaker) Withdraw(_ context.Context, ps []Path) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.record("Withdraw", describe(ps)); err != nil {
		return err
	}
	for _, p := range ps {
		delete(s.adv, keyOf(p))
	}
	return nil
}

func (s *fakeSpeaker) WatchBest(ctx context.Context, fn func([]Update)) error {
	s.mu.Lock()
	s.fn = fn
	close(s.watching)
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	s.fn = nil
	s.watching = make(chan struct{})
	s.mu.Unlock()
	return ctx.Err()
}

func (s *fakeSpeaker) Peers(context.Context) ([]PeerState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peersCalls++
	if err := s.fail["Peers"]; err != nil {
		return nil, err
	}
	return slices.Clone(s.states), nil
}

// push hands a batch to the reconciler's WatchBest callback and returns
// once the reconciler processed it.
func (s *fakeSpeaker) push(t *testing.T, us ...Update) {
	t.Helper()
	s.mu.Lock()
	w := s.watching
	s.mu.Unlock()
	select {
	case <-w:
	case <-time.After(5 * time.Second):
		t.Fatal("WatchBest was never called")
	}
	s.mu.Lock()
	fn := s.fn
	s.mu.Unlock()
	fn(us)
}

// takeCalls returns the calls recorded since the last takeCalls.
func (s *fakeSpeaker) takeCalls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

func (s *fakeSpeaker) setStates(st ...PeerState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.states = st
}

// originated returns the paths the speaker holds as ours, sorted.
func (s *fakeSpeaker) originated() []Path {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.SortedFunc(maps.Values(s.adv), func(a, b Path) int {
		return cmp.Or(cmp.Compare(a.Family, b.Family), cmp.Compare(a.VRF, b.VRF), cmp.Compare(a.RD, b.RD), a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
	})
}

// fakeFIB is an in-memory kernel: routes by table and prefix, remotes by
// VXLAN device, VTEP and MAC. It logs every step in order and can be told to
// fail given prefixes.
type fakeFIB struct {
	mu      sync.Mutex
	routes  map[RouteKey]fib.Route
	remotes map[string]fib.Remote
	fail    map[netip.Prefix]error
	ops     []string
	syncs   int
}

func newFakeFIB() *fakeFIB {
	return &fakeFIB{routes: map[RouteKey]fib.Route{}, remotes: map[string]fib.Remote{}, fail: map[netip.Prefix]error{}}
}

func remKey(rm fib.Remote) string {
	return fmt.Sprintf("%s %s %s", rm.VXLAN, rm.VTEP, rm.RouterMAC)
}

func routeStr(rt fib.Route) string {
	var nhs []string
	for _, nh := range rt.NextHops {
		s := nh.Addr.String() + "@" + nh.Interface
		if nh.OnLink {
			s += " onlink"
		}
		nhs = append(nhs, s)
	}
	return fmt.Sprintf("%d %s [%s]", rt.Table, rt.Prefix, strings.Join(nhs, ", "))
}

func sortedRoutes(rs []fib.Route) []fib.Route {
	return slices.SortedFunc(slices.Values(rs), func(a, b fib.Route) int {
		return cmp.Or(cmp.Compare(a.Table, b.Table), a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()))
	})
}

func sortedRemotes(rs []fib.Remote) []fib.Remote {
	return slices.SortedFunc(slices.Values(rs), func(a, b fib.Remote) int { return cmp.Compare(remKey(a), remKey(b)) })
}

func (f *fakeFIB) Install(_ context.Context, routes []fib.Route, remotes []fib.Remote) []RouteError {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rm := range sortedRemotes(remotes) {
		f.ops = append(f.ops, "+remote "+remKey(rm))
		f.remotes[remKey(rm)] = rm
	}
	var errs []RouteError
	for _, rt := range sortedRoutes(routes) {
		if err := f.fail[rt.Prefix]; err != nil {
			f.ops = append(f.ops, "!route "+routeStr(rt))
			errs = append(errs, RouteError{Table: rt.Table, Prefix: rt.Prefix.String(), Err: err})
			continue
		}
		f.ops = append(f.ops, "+route "+routeStr(rt))
		f.routes[RouteKey{Table: rt.Table, Prefix: rt.Prefix}] = rt
	}
	return errs
}

func (f *fakeFIB) Remove(_ context.Context, routes []fib.Route, remotes []fib.Remote) []RouteError {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rt := range sortedRoutes(routes) {
		f.ops = append(f.ops, fmt.Sprintf("-route %d %s", rt.Table, rt.Prefix))
		delete(f.routes, RouteKey{Table: rt.Table, Prefix: rt.Prefix})
	}
	for _, rm := range sortedRemotes(remotes) {
		f.ops = append(f.ops, "-remote "+remKey(rm))
		delete(f.remotes, remKey(rm))
	}
	return nil
}

func (f *fakeFIB) Sync(_ context.Context, routes []fib.Route, remotes []fib.Remote) ([]RouteError, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncs++
	f.ops = append(f.ops, "sync")
	f.routes, f.remotes = map[RouteKey]fib.Route{}, map[string]fib.Remote{}
	for _, rm := range remotes {
		f.remotes[remKey(rm)] = rm
	}
	var errs []RouteError
	for _, rt := range routes {
		if err := f.fail[rt.Prefix]; err != nil {
			errs = append(errs, RouteError{Table: rt.Table, Prefix: rt.Prefix.String(), Err: err})
			continue
		}
		f.routes[RouteKey{Table: rt.Table, Prefix: rt.Prefix}] = rt
	}
	return errs, nil
}

func (f *fakeFIB) setFail(p netip.Prefix, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, p)
	} else {
		f.fail[p] = err
	}
}

func (f *fakeFIB) takeOps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.ops
	f.ops = nil
	return o
}

// kernel returns the routes, sorted.
func (f *fakeFIB) kernel() []fib.Route {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedRoutes(slices.Collect(maps.Values(f.routes)))
}

func (f *fakeFIB) remoteList() []fib.Remote {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedRemotes(slices.Collect(maps.Values(f.remotes)))
}

func (f *fakeFIB) syncCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncs
}

var errInjected = errors.New("injected failure")

// ---- fixtures ----

const testASN = 4200000001 // low 16 bits: 59905

var (
	routerID = netip.MustParseAddr("10.255.0.1")
	ourVTEP  = netip.MustParseAddr("10.254.0.1")
	vtepA    = netip.MustParseAddr("10.254.0.2")
	vtepB    = netip.MustParseAddr("10.254.0.3")
	macRed   = mustMAC("02:00:00:00:10:01")
	macBlue  = mustMAC("02:00:00:00:20:01")
	macA     = mustMAC("02:00:00:00:00:0a")
	macA2    = mustMAC("02:00:00:00:00:aa")
	macB     = mustMAC("02:00:00:00:00:0b")
	llSpine1 = netip.MustParseAddr("fe80::1")
	llSpine2 = netip.MustParseAddr("fe80::2")
	llHost1  = netip.MustParseAddr("fe80::a1")
)

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// leaf is a typical leaf: two underlay links, VRFs red (VNI 10, table 10,
// machine on swp1 allowed 192.0.2.0/24) and blue (VNI 20, table 20, machine
// on swp2).
func leaf() Desired {
	return Desired{
		ASN: testASN, RouterID: routerID, VTEP: ourVTEP,
		Networks: []netip.Prefix{pfx("10.255.0.1/32")},
		Underlay: []UnderlayPeer{{Interface: "swp31", Description: "spine1"}, {Interface: "swp32", Description: "spine2"}},
		VRFs: []TenantVRF{
			{
				Name: "blue", VNI: 20, Table: 20, SVI: "l3vni20", VXLAN: "vx20", VLAN: 20, RouterMAC: macBlue,
				Machines: []MachinePeer{{Interface: "swp2", Allowed: []netip.Prefix{pfx("198.51.100.0/24")}}},
			},
			{
				Name: "red", VNI: 10, Table: 10, SVI: "l3vni10", VXLAN: "vx10", VLAN: 10, RouterMAC: macRed,
				Machines: []MachinePeer{{Interface: "swp1", Allowed: []netip.Prefix{pfx("192.0.2.0/24")}, MaxPrefixes: 10}},
			},
		},
	}
}

// withoutVRF returns d without the named VRF.
func withoutVRF(d Desired, name string) Desired {
	d.VRFs = slices.DeleteFunc(slices.Clone(d.VRFs), func(v TenantVRF) bool { return v.Name == name })
	return d
}

// machinePath is a path received from a machine session in a VRF.
func machineUpdate(vrf, prefix, iface string, nh netip.Addr) Update {
	p := pfx(prefix)
	return Update{Family: IPv4Unicast, VRF: vrf, Prefix: p, Paths: []Path{{
		Family: IPv4Unicast, VRF: vrf, Prefix: p, NextHop: nh.WithZone(iface), Interface: iface,
		ASPath: []uint32{4210000000}, Peer: PeerKey{VRF: vrf, Name: iface},
	}}}
}

func withdrawal(f Family, vrf, prefix, rd string) Update {
	return Update{Family: f, VRF: vrf, Prefix: pfx(prefix), RD: rd}
}

// type5 is a type-5 route received from another leaf.
func type5(prefix string, vtep netip.Addr, mac net.HardwareAddr, vni uint32, rts ...string) Update {
	p := pfx(prefix)
	rd := RD(netip.AddrFrom4([4]byte{10, 255, 0, vtep.As4()[3]}), vni)
	return Update{Family: EVPN, Prefix: p, RD: rd, Paths: []Path{{
		Family: EVPN, Prefix: p, NextHop: vtep, Interface: "swp31", RD: rd, RouteTargets: rts,
		RouterMAC: mac, VNI: vni, ASPath: []uint32{4200000000, 4200000002}, Peer: PeerKey{Name: "swp31"},
	}}}
}

// underlayUpdate is a global best path with one path per (link-local, link).
func underlayUpdate(prefix string, hops ...string) Update {
	p := pfx(prefix)
	u := Update{Family: IPv4Unicast, Prefix: p}
	for _, h := range hops {
		addr, iface, _ := strings.Cut(h, "%")
		u.Paths = append(u.Paths, Path{
			Family: IPv4Unicast, Prefix: p, NextHop: netip.MustParseAddr(addr).WithZone(iface), Interface: iface,
			ASPath: []uint32{4200000000}, Peer: PeerKey{Name: iface},
		})
	}
	return u
}

// harness is a reconciler over the fakes, already applied with d.
type harness struct {
	sp  *fakeSpeaker
	fib *fakeFIB
	r   *Reconciler
}

func newHarness(t *testing.T, d Desired, opts ...Option) *harness {
	t.Helper()
	h := &harness{sp: newFakeSpeaker(), fib: newFakeFIB()}
	h.r = NewReconciler(h.sp, h.fib, append([]Option{WithListenPort(-1)}, opts...)...)
	t.Cleanup(func() { _ = h.r.Stop(context.Background()) })
	if err := h.r.Apply(t.Context(), d); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	h.sp.takeCalls()
	h.fib.takeOps()
	return h
}

func onlink(addr netip.Addr, svi string) fib.NextHop {
	return fib.NextHop{Addr: addr, Interface: svi, OnLink: true}
}

func remote(vtep netip.Addr, mac net.HardwareAddr, vni uint32) fib.Remote {
	return fib.Remote{VTEP: vtep, RouterMAC: mac, SVI: fmt.Sprintf("l3vni%d", vni), VXLAN: fmt.Sprintf("vx%d", vni), VLAN: uint16(vni)}
}

func (f *fakeFIB) Kernel(context.Context) ([]fib.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sortedRoutes(slices.Collect(maps.Values(f.routes))), nil
}
