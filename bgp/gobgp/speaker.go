package gobgp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	pkt "github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/metalfabric/fabric/bgp"
)

// Data-centre defaults (bgp.Peer documents them).
const (
	defaultHoldTime     = 9 * time.Second
	defaultKeepalive    = 3 * time.Second
	defaultConnectRetry = time.Second
	// defaultReresolve is how long an unnumbered session may stay down
	// before the neighbour's link-local address is resolved again.
	defaultReresolve = 10 * time.Second
)

// Errors callers may branch on.
var (
	ErrNotStarted    = errors.New("speaker not started")
	ErrAlreadyExists = errors.New("already exists")
	ErrNotFound      = errors.New("not found")
)

// Option configures a Speaker.
type Option func(*Speaker)

// WithLogger sets the logger. GoBGP's own messages go to it as well (with
// component=gobgp); GoBGP's debug output is only produced when the logger
// has Debug enabled. The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(s *Speaker) { s.log = l }
}

// WithReresolveAfter sets how long an unnumbered session may stay down before
// the neighbour's link-local address is resolved again (default 10 s).
func WithReresolveAfter(d time.Duration) Option {
	return func(s *Speaker) { s.reresolve = d }
}

// Speaker is a bgp.Speaker on top of an embedded GoBGP server.
//
// Process-wide GoBGP state: GoBGP keeps the multipath switch and the route
// selection options in package variables, so all speakers of one process
// must agree on Global.Multipath.
type Speaker struct {
	log       *slog.Logger
	reresolve time.Duration

	mu      sync.Mutex
	srv     *server.BgpServer
	started bool
	global  bgp.Global
	vrfs    map[string]bgp.VRF
	rdToVRF map[string]string
	peers   map[bgp.PeerKey]*peerEntry
	byAddr  map[netip.Addr]bgp.PeerKey // transport address -> peer
	adv     map[advKey]advEntry
	stopped chan struct{} // closed by Stop
	wg      sync.WaitGroup
	// restartUntil: peers added before it announce the restart state.
	restartUntil time.Time
}

var _ bgp.Speaker = (*Speaker)(nil)

type peerEntry struct {
	cfg bgp.Peer
	// addr is the transport address (resolved link-local of an unnumbered
	// peer; invalid until resolved), gaddr GoBGP's neighbour key for it
	// ("fe80::1%swp1"); empty while the peer is not configured in GoBGP.
	addr  netip.Addr
	gaddr string
	// Unnumbered peers: cancel stops the resolver, kick asks it to resolve
	// again now.
	cancel context.CancelFunc
	kick   chan struct{}
	done   chan struct{}
}

type advKey struct {
	Family bgp.Family
	VRF    string
	RD     string
	Prefix netip.Prefix
}

type advEntry struct {
	path  *api.Path
	table api.TableType
	vrf   string
}

// New returns a speaker; Start starts it.
func New(opts ...Option) *Speaker {
	s := &Speaker{
		log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		reresolve: defaultReresolve,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Start starts the speaker. A stopped speaker can be started again (it
// reuses its GoBGP server: GoBGP's Serve loop never returns).
func (s *Speaker) Start(ctx context.Context, g bgp.Global) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return fmt.Errorf("starting speaker: %w", ErrAlreadyExists)
	}
	if !g.RouterID.Is4() {
		return fmt.Errorf("starting speaker: router ID %v is not IPv4", g.RouterID)
	}
	if g.ASN == 0 {
		return errors.New("starting speaker: ASN 0")
	}
	if s.srv == nil {
		s.srv = server.NewBgpServer(server.LoggerOption(newSlogAdapter(s.log)))
		go s.srv.Serve()
	}
	port := g.ListenPort
	if port == 0 {
		port = 179
	}
	err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:              g.ASN,
		RouterId:         g.RouterID.String(),
		ListenPort:       port,
		ListenAddresses:  g.ListenAddrs,
		UseMultiplePaths: g.Multipath,
	}})
	if err != nil {
		return fmt.Errorf("starting speaker: %w", err)
	}
	s.started = true
	s.global = g
	s.restartUntil = time.Time{}
	if g.Restarting && g.GracefulRestart > 0 {
		s.restartUntil = time.Now().Add(deferral(g))
	}
	s.vrfs = map[string]bgp.VRF{}
	s.rdToVRF = map[string]string{}
	s.peers = map[bgp.PeerKey]*peerEntry{}
	s.byAddr = map[netip.Addr]bgp.PeerKey{}
	s.adv = map[advKey]advEntry{}
	s.stopped = make(chan struct{})
	if err := s.policiesLocked(ctx); err != nil {
		// Leave nothing half started: Start may be called again.
		_ = s.srv.StopBgp(context.WithoutCancel(ctx), &api.StopBgpRequest{})
		s.started = false
		return err
	}
	s.log.Info("bgp speaker started", "asn", g.ASN, "router_id", g.RouterID, "port", port)
	return nil
}

// Stop stops the speaker. With Global.GracefulRestart set, the sessions of
// peers with GracefulRestart are closed at the TCP level first (no
// NOTIFICATION), so those peers keep our routes for the restart time; see
// shutdownSessions for why.
func (s *Speaker) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.started {
		s.mu.Unlock()
		return nil
	}
	s.started = false
	close(s.stopped)
	var entries []*peerEntry
	grAddrs := map[netip.Addr]bool{}
	for _, e := range s.peers {
		entries = append(entries, e)
		if e.cancel != nil {
			e.cancel()
		}
		if s.global.GracefulRestart > 0 && e.cfg.GracefulRestart && e.addr.IsValid() {
			grAddrs[e.addr.WithZone("")] = true
		}
	}
	port := int(s.global.ListenPort)
	if port == 0 {
		port = 179
	}
	s.mu.Unlock()
	// The resolvers take s.mu: wait for them outside it.
	for _, e := range entries {
		if e.done != nil {
			<-e.done
		}
	}
	if len(grAddrs) > 0 {
		n, err := shutdownSessions(grAddrs, port)
		if err != nil {
			s.log.Warn("graceful stop: closing sessions", "err", err)
		}
		s.log.Info("graceful stop: sessions closed without notification", "sessions", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.srv.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
		return fmt.Errorf("stopping speaker: %w", err)
	}
	s.wg.Wait()
	s.log.Info("bgp speaker stopped")
	return nil
}

// AddVRF adds a VRF RIB. The VRF imports its own export route targets as
// well, so paths of one VRF (ours and its peers') reach all its peers.
func (s *Speaker) AddVRF(ctx context.Context, v bgp.VRF) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return fmt.Errorf("adding vrf %s: %w", v.Name, ErrNotStarted)
	}
	if _, ok := s.vrfs[v.Name]; ok {
		return fmt.Errorf("adding vrf %s: %w", v.Name, ErrAlreadyExists)
	}
	av, rd, err := apiVRF(v)
	if err != nil {
		return fmt.Errorf("adding vrf %s: %w", v.Name, err)
	}
	if other, ok := s.rdToVRF[rd]; ok {
		return fmt.Errorf("adding vrf %s: RD %s already used by vrf %s", v.Name, rd, other)
	}
	if err := s.srv.AddVrf(ctx, &api.AddVrfRequest{Vrf: av}); err != nil {
		return fmt.Errorf("adding vrf %s: %w", v.Name, err)
	}
	s.vrfs[v.Name] = v
	s.rdToVRF[rd] = v.Name
	s.log.Info("vrf added", "vrf", v.Name, "rd", rd, "vni", v.ID)
	return nil
}

// apiVRF converts a VRF; rd is the canonical RD string (as decoded paths
// carry it).
func apiVRF(v bgp.VRF) (*api.Vrf, string, error) {
	rd, err := parseRD(v.RD)
	if err != nil {
		return nil, "", err
	}
	ard, err := apiutil.MarshalRD(rd)
	if err != nil {
		return nil, "", err
	}
	imports := slices.Clone(v.ImportRTs)
	for _, rt := range v.ExportRTs {
		if !slices.Contains(imports, rt) {
			imports = append(imports, rt)
		}
	}
	im, err := parseRTs(imports)
	if err != nil {
		return nil, "", err
	}
	ex, err := parseRTs(v.ExportRTs)
	if err != nil {
		return nil, "", err
	}
	aim, err := apiutil.MarshalRTs(im)
	if err != nil {
		return nil, "", err
	}
	aex, err := apiutil.MarshalRTs(ex)
	if err != nil {
		return nil, "", err
	}
	return &api.Vrf{Name: v.Name, Rd: ard, ImportRt: aim, ExportRt: aex, Id: v.ID}, formatRD(rd), nil
}

// DeleteVRF deletes a VRF RIB (its peers must be deleted first).
func (s *Speaker) DeleteVRF(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return fmt.Errorf("deleting vrf %s: %w", name, ErrNotStarted)
	}
	if _, ok := s.vrfs[name]; !ok {
		return nil
	}
	for k := range s.peers {
		if k.VRF == name {
			return fmt.Errorf("deleting vrf %s: peer %s still uses it", name, k)
		}
	}
	if err := s.srv.DeleteVrf(ctx, &api.DeleteVrfRequest{Name: name}); err != nil {
		return fmt.Errorf("deleting vrf %s: %w", name, err)
	}
	for k := range s.adv {
		if k.VRF == name {
			delete(s.adv, k)
		}
	}
	for rd, n := range s.rdToVRF {
		if n == name {
			delete(s.rdToVRF, rd)
		}
	}
	delete(s.vrfs, name)
	s.log.Info("vrf deleted", "vrf", name)
	return nil
}

// AddPeer adds a session. An unnumbered peer's link-local address is
// resolved in the background (and again when its session stays down).
func (s *Speaker) AddPeer(ctx context.Context, p bgp.Peer) error {
	k := p.Key()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkPeerLocked(p); err != nil {
		return fmt.Errorf("adding peer %s: %w", k, err)
	}
	if _, ok := s.peers[k]; ok {
		return fmt.Errorf("adding peer %s: %w", k, ErrAlreadyExists)
	}
	e := &peerEntry{cfg: clonePeer(p)}
	if p.Interface == "" {
		e.addr = p.Address
		e.gaddr = p.Address.String()
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(e.cfg, e.gaddr)}); err != nil {
			return fmt.Errorf("adding peer %s: %w", k, err)
		}
		s.peers[k] = e
		s.byAddr[e.addr] = k
		if p.Allowed != nil || p.Upstream {
			if err := s.applyPolicyLocked(ctx, nil); err != nil {
				return fmt.Errorf("adding peer %s: %w", k, err)
			}
		}
		s.log.Info("peer added", "peer", k.String(), "asn", p.ASN)
		return nil
	}
	rctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.kick, e.done = cancel, make(chan struct{}, 1), make(chan struct{})
	s.peers[k] = e
	// Fast path: the kernel still knows the one neighbour on the link (an
	// agent restart keeps the neighbour table), so the session is
	// configured at once. A peer that connects to a speaker that does not
	// know it yet is refused, and a graceful-restart helper (GoBGP) then
	// drops the routes it was keeping for us.
	if addr, ok := kernelLinkLocal(k.Name); ok {
		if err := s.setUnnumberedAddrLocked(ctx, k, e, addr); err != nil {
			s.log.Debug("configuring unnumbered neighbour from the neighbour table", "peer", k.String(), "err", err)
		}
	}
	go s.runUnnumbered(rctx, k, e)
	s.log.Info("unnumbered peer added", "peer", k.String(), "asn", p.ASN)
	return nil
}

func (s *Speaker) checkPeerLocked(p bgp.Peer) error {
	if !s.started {
		return ErrNotStarted
	}
	if (p.Interface == "") == !p.Address.IsValid() {
		return errors.New("set exactly one of Interface and Address")
	}
	if p.VRF != "" {
		if _, ok := s.vrfs[p.VRF]; !ok {
			return fmt.Errorf("vrf %s: %w", p.VRF, ErrNotFound)
		}
	}
	for _, f := range peerFamilies(p) {
		if _, err := routeFamily(f); err != nil {
			return err
		}
		if p.VRF != "" && f == bgp.EVPN {
			return errors.New("l2vpn-evpn is not supported on a VRF session")
		}
	}
	return nil
}

func clonePeer(p bgp.Peer) bgp.Peer {
	p.Families = slices.Clone(p.Families)
	if p.Allowed != nil {
		p.Allowed = slices.Clone(p.Allowed)
	}
	return p
}

func peerFamilies(p bgp.Peer) []bgp.Family {
	if len(p.Families) == 0 {
		return []bgp.Family{bgp.IPv4Unicast}
	}
	return p.Families
}

func seconds(d, def time.Duration) uint64 {
	if d <= 0 {
		d = def
	}
	if s := uint64((d + time.Second/2) / time.Second); s > 0 {
		return s
	}
	return 1
}

// apiPeer builds GoBGP's peer configuration for neighbour address gaddr.
func (s *Speaker) apiPeer(p bgp.Peer, gaddr string) *api.Peer {
	gr := s.global.GracefulRestart > 0 && p.GracefulRestart
	connectRetry := seconds(p.ConnectRetry, defaultConnectRetry)
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: gaddr,
			PeerAsn:         p.ASN,
			Description:     p.Description,
			Vrf:             p.VRF,
		},
		// A passive end never dials. GoBGP refuses connections for 5 s
		// (holdtimeIdle, fixed) after every failed or dropped session,
		// and in OpenSent closes an accepted connection instead of
		// resolving the collision: two GoBGP ends that both dial can
		// refuse each other in turn for minutes (measured 112 s and 161 s
		// after an agent restart). With one end listening, the dialling
		// end gets through at its next attempt after the listener's idle
		// hold.
		Transport: &api.Transport{PassiveMode: p.Passive},
	}
	ap.Timers = &api.Timers{Config: &api.TimersConfig{
		ConnectRetry:      connectRetry,
		HoldTime:          seconds(p.HoldTime, defaultHoldTime),
		KeepaliveInterval: seconds(p.KeepaliveInterval, defaultKeepalive),
		// After a reset GoBGP waits this long before reconnecting
		// (default 30 s): data-centre sessions come back at once.
		IdleHoldTimeAfterReset: connectRetry,
	}}
	if p.Interface != "" {
		// GoBGP would default the local address of a link-local
		// neighbour to our zoned link-local ("fe80::1%swp1"), which
		// net.ParseIP then fails to parse when the session comes up:
		// the next hop of our IPv4 paths would go out as "::" (FRR
		// rejects it as martian). With "::" GoBGP takes the local
		// address from the established connection instead.
		ap.Transport.LocalAddress = "::"
	}
	if p.VRF != "" {
		// Bind the session to the VRF-enslaved link (unnumbered) or to
		// the VRF device, assumed to carry the VRF's name (numbered).
		if p.Interface != "" {
			ap.Transport.BindInterface = p.Interface
		} else {
			ap.Transport.BindInterface = p.VRF
		}
	}
	if gr {
		ap.GracefulRestart = &api.GracefulRestart{
			Enabled:     true,
			RestartTime: uint32(seconds(s.global.GracefulRestart, s.global.GracefulRestart)),
			// Long-lived GR (RFC 9494) too: a GoBGP helper drops the stale
			// routes of a restarting peer as soon as one reconnection
			// attempt fails (any transition to idle), unless LLGR is
			// negotiated, which keeps them as LLGR-stale instead.
			LonglivedEnabled: true,
		}
		if time.Now().Before(s.restartUntil) {
			// RFC 4724 4.1: the restart state bit, and selection deferral
			// until every peer's End-of-RIB (GoBGP's LocalRestarting).
			ap.GracefulRestart.LocalRestarting = true
			ap.GracefulRestart.DeferralTime = uint32(deferral(s.global) / time.Second)
		}
	}
	for _, f := range peerFamilies(p) {
		rf, _ := routeFamily(f)
		af := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: apiFamily(rf), Enabled: true}}
		if p.MaxPrefixes > 0 {
			af.PrefixLimits = &api.PrefixLimit{Family: apiFamily(rf), MaxPrefixes: p.MaxPrefixes}
		}
		if gr {
			af.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
			af.LongLivedGracefulRestart = &api.LongLivedGracefulRestart{Config: &api.LongLivedGracefulRestartConfig{
				Enabled: true, RestartTime: uint32(seconds(s.global.GracefulRestart, s.global.GracefulRestart)),
			}}
		}
		ap.AfiSafis = append(ap.AfiSafis, af)
	}
	return ap
}

// UpdatePeer changes a session in place. The allowance, max prefixes and
// timers change without a reset (the allowance is re-applied with a soft
// reset in); a change of ASN or families makes GoBGP reset the session.
func (s *Speaker) UpdatePeer(ctx context.Context, p bgp.Peer) error {
	k := p.Key()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkPeerLocked(p); err != nil {
		return fmt.Errorf("updating peer %s: %w", k, err)
	}
	e, ok := s.peers[k]
	if !ok {
		return fmt.Errorf("updating peer %s: %w", k, ErrNotFound)
	}
	old := e.cfg
	e.cfg = clonePeer(p)
	if e.gaddr == "" {
		return nil // unnumbered, not resolved yet: added with the new config
	}
	resp, err := s.srv.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: s.apiPeer(e.cfg, e.gaddr)})
	if err != nil {
		return fmt.Errorf("updating peer %s: %w", k, err)
	}
	if !allowanceEqual(old.Allowed, p.Allowed) || old.Upstream != p.Upstream || (p.Upstream && old.ASN != p.ASN) {
		if err := s.applyPolicyLocked(ctx, []string{e.gaddr}); err != nil {
			return fmt.Errorf("updating peer %s: %w", k, err)
		}
	} else if resp.GetNeedsSoftResetIn() {
		s.softResetIn(ctx, e.gaddr)
	}
	s.log.Info("peer updated", "peer", k.String())
	return nil
}

func allowanceEqual(a, b []netip.Prefix) bool {
	return (a == nil) == (b == nil) && slices.Equal(a, b)
}

// DeletePeer removes a session.
func (s *Speaker) DeletePeer(ctx context.Context, k bgp.PeerKey) error {
	s.mu.Lock()
	e, ok := s.peers[k]
	if !ok || !s.started {
		s.mu.Unlock()
		return nil
	}
	delete(s.peers, k)
	if e.cancel != nil {
		e.cancel()
	}
	s.mu.Unlock()
	if e.done != nil {
		<-e.done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.gaddr != "" {
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: e.gaddr}); err != nil {
			return fmt.Errorf("deleting peer %s: %w", k, err)
		}
		delete(s.byAddr, e.addr)
	}
	if e.cfg.Allowed != nil || e.cfg.Upstream {
		if err := s.applyPolicyLocked(ctx, nil); err != nil {
			return fmt.Errorf("deleting peer %s: %w", k, err)
		}
	}
	s.log.Info("peer deleted", "peer", k.String())
	return nil
}

// ResetPeer hard-resets a session; an unnumbered peer's address is resolved
// again right away.
func (s *Speaker) ResetPeer(ctx context.Context, k bgp.PeerKey) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.peers[k]
	if !ok {
		return fmt.Errorf("resetting peer %s: %w", k, ErrNotFound)
	}
	if e.kick != nil {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
	if e.gaddr == "" {
		return nil
	}
	if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: e.gaddr, Communication: "reset by fabric"}); err != nil {
		return fmt.Errorf("resetting peer %s: %w", k, err)
	}
	s.log.Info("peer reset", "peer", k.String())
	return nil
}

// applyPolicyLocked installs the import policy for the current allowances
// and soft-resets (in) the peers with an allowance plus extra, so that the
// paths already received are judged again.
func (s *Speaker) applyPolicyLocked(ctx context.Context, extra []string) error {
	var as []allowance
	reset := slices.Clone(extra)
	for _, e := range s.peers {
		if e.cfg.Allowed == nil || !e.addr.IsValid() {
			continue
		}
		as = append(as, allowance{Neighbor: e.addr, Allowed: e.cfg.Allowed})
		reset = append(reset, e.gaddr)
	}
	sets, pol := importPolicy(as)
	var up []upstream
	for _, e := range s.peers {
		if e.cfg.Upstream && e.addr.IsValid() && e.cfg.ASN != 0 {
			up = append(up, upstream{Neighbor: e.addr, ASN: e.cfg.ASN})
		}
	}
	esets, epol := exportPolicy(up)
	// SetPolicies replaces every policy: the export policy goes in again,
	// or its assignment would point at nothing.
	if err := s.srv.SetPolicies(ctx, &api.SetPoliciesRequest{DefinedSets: append(sets, esets...), Policies: []*api.Policy{pol, epol}}); err != nil {
		return fmt.Errorf("setting import policy: %w", err)
	}
	slices.Sort(reset)
	for _, a := range slices.Compact(reset) {
		s.softResetIn(ctx, a)
	}
	return nil
}

func (s *Speaker) softResetIn(ctx context.Context, gaddr string) {
	if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: gaddr, Soft: true, Direction: api.ResetPeerRequest_IN}); err != nil {
		s.log.Debug("soft reset in", "peer", gaddr, "err", err)
	}
}

// runUnnumbered resolves an unnumbered peer's link-local address, configures
// the GoBGP neighbour for it, and resolves again when the session stays down
// for s.reresolve or ResetPeer asks for it (the neighbour's link-local
// address changes e.g. when its MAC changes).
func (s *Speaker) runUnnumbered(ctx context.Context, k bgp.PeerKey, e *peerEntry) {
	defer close(e.done)
	log := s.log.With("peer", k.String())
	backoff := 500 * time.Millisecond
	downSince := time.Now()
	warned := false
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		s.mu.Lock()
		configured := e.gaddr != ""
		s.mu.Unlock()
		due := !configured || time.Since(downSince) >= s.reresolve
		if due {
			addr, err := resolveLinkLocal(ctx, k.Name, time.Second)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if !warned {
					log.Warn("resolving unnumbered neighbour", "err", err)
					warned = true
				} else {
					log.Debug("resolving unnumbered neighbour", "err", err)
				}
				if configured {
					downSince = time.Now() // try again after another period
				}
			} else {
				warned = false
				if err := s.setUnnumberedAddr(ctx, k, e, addr); err != nil {
					log.Warn("configuring unnumbered neighbour", "addr", addr, "err", err)
				} else {
					backoff = 500 * time.Millisecond
				}
				downSince = time.Now()
			}
		}
		s.mu.Lock()
		configured = e.gaddr != ""
		s.mu.Unlock()
		wait := time.Second
		if !configured {
			wait = backoff
			backoff = min(2*backoff, 5*time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-e.kick:
			t.Stop()
			downSince = time.Time{} // resolve now
		case <-t.C:
			if s.established(ctx, e) {
				downSince = time.Now()
			} else if err := announce(k.Name); err != nil {
				log.Debug("sending router advertisement", "err", err)
			}
		}
	}
}

func (s *Speaker) established(ctx context.Context, e *peerEntry) bool {
	s.mu.Lock()
	gaddr := e.gaddr
	s.mu.Unlock()
	if gaddr == "" {
		return false
	}
	est := false
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{Address: gaddr}, func(p *api.Peer) {
		est = p.GetState().GetSessionState() == api.PeerState_ESTABLISHED
	})
	return err == nil && est
}

// setUnnumberedAddr (re)configures the GoBGP neighbour of an unnumbered peer
// for its link-local address addr.
func (s *Speaker) setUnnumberedAddr(ctx context.Context, k bgp.PeerKey, e *peerEntry, addr netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setUnnumberedAddrLocked(ctx, k, e, addr)
}

func (s *Speaker) setUnnumberedAddrLocked(ctx context.Context, k bgp.PeerKey, e *peerEntry, addr netip.Addr) error {
	if ctx.Err() != nil || s.peers[k] != e {
		return nil // deleted meanwhile
	}
	if addr == e.addr && e.gaddr != "" {
		return nil
	}
	gaddr := (&net.IPAddr{IP: addr.AsSlice(), Zone: k.Name}).String()
	if e.gaddr != "" {
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: e.gaddr}); err != nil {
			return fmt.Errorf("deleting old neighbour %s: %w", e.gaddr, err)
		}
		delete(s.byAddr, e.addr)
		s.log.Info("unnumbered neighbour changed address", "peer", k.String(), "old", e.addr, "new", addr)
		e.gaddr, e.addr = "", netip.Addr{}
	}
	if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(e.cfg, gaddr)}); err != nil {
		return err
	}
	e.addr, e.gaddr = addr, gaddr
	s.byAddr[addr] = k
	s.log.Info("unnumbered neighbour resolved", "peer", k.String(), "addr", addr)
	if e.cfg.Allowed != nil || e.cfg.Upstream {
		return s.applyPolicyLocked(ctx, nil)
	}
	return nil
}

// Advertise originates paths: global unicast, VRF unicast (Path.VRF) or EVPN
// type-5 in the global RIB. Advertising a path again replaces it.
func (s *Speaker) Advertise(ctx context.Context, paths []bgp.Path) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return fmt.Errorf("advertising: %w", ErrNotStarted)
	}
	for _, p := range paths {
		k, e, err := s.advEntry(p)
		if err != nil {
			return fmt.Errorf("advertising %s %s: %w", p.Family, p.Prefix, err)
		}
		if _, err := s.srv.AddPath(ctx, &api.AddPathRequest{TableType: e.table, VrfId: e.vrf, Path: e.path}); err != nil {
			return fmt.Errorf("advertising %s %s: %w", p.Family, p.Prefix, err)
		}
		s.adv[k] = e
	}
	return nil
}

func (s *Speaker) advEntry(p bgp.Path) (advKey, advEntry, error) {
	k := advKey{Family: p.Family, VRF: p.VRF, Prefix: p.Prefix.Masked()}
	if p.Family == bgp.EVPN {
		if p.VRF != "" {
			return k, advEntry{}, errors.New("EVPN paths live in the global RIB: leave VRF empty")
		}
		rd, err := parseRD(p.RD)
		if err != nil {
			return k, advEntry{}, err
		}
		k.RD = formatRD(rd)
	}
	ap, err := apiPath(p)
	if err != nil {
		return k, advEntry{}, err
	}
	e := advEntry{path: ap, table: api.TableType_GLOBAL}
	if p.VRF != "" {
		if _, ok := s.vrfs[p.VRF]; !ok {
			return k, advEntry{}, fmt.Errorf("vrf %s: %w", p.VRF, ErrNotFound)
		}
		e.table, e.vrf = api.TableType_VRF, p.VRF
	}
	return k, e, nil
}

// Withdraw withdraws paths Advertise originated (matched by family, VRF, RD
// and prefix); unknown paths are ignored.
func (s *Speaker) Withdraw(ctx context.Context, paths []bgp.Path) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return fmt.Errorf("withdrawing: %w", ErrNotStarted)
	}
	for _, p := range paths {
		k := advKey{Family: p.Family, VRF: p.VRF, Prefix: p.Prefix.Masked()}
		if p.Family == bgp.EVPN {
			if rd, err := parseRD(p.RD); err == nil {
				k.RD = formatRD(rd)
			}
		}
		e, ok := s.adv[k]
		if !ok {
			continue
		}
		if err := s.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: e.table, VrfId: e.vrf, Family: e.path.Family, Path: e.path}); err != nil {
			return fmt.Errorf("withdrawing %s %s: %w", p.Family, p.Prefix, err)
		}
		delete(s.adv, k)
	}
	return nil
}

// Peers returns every session's state. Rejected counts the paths refused by
// AS-path loop detection (GoBGP's own counters) plus the paths the import
// allowance filters (counted by evaluating the policy over the peer's
// Adj-RIB-In: GoBGP's Accepted counter does not reflect policy rejects).
func (s *Speaker) Peers(ctx context.Context) ([]bgp.PeerState, error) {
	s.mu.Lock()
	if !s.started {
		s.mu.Unlock()
		return nil, fmt.Errorf("listing peers: %w", ErrNotStarted)
	}
	byG := map[string]*peerEntry{}
	var out []bgp.PeerState
	type filt struct {
		i     int
		gaddr string
		fam   bgp.Family
	}
	for k, e := range s.peers {
		if e.gaddr != "" {
			byG[e.gaddr] = e
			continue
		}
		st := bgp.PeerState{Key: k, Description: e.cfg.Description, ASN: e.cfg.ASN, State: bgp.StateIdle}
		for _, f := range peerFamilies(e.cfg) {
			st.Families = append(st.Families, bgp.FamilyState{Family: f})
		}
		out = append(out, st)
	}
	s.mu.Unlock()

	var gps []*api.Peer
	if err := s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) { gps = append(gps, p) }); err != nil {
		return nil, fmt.Errorf("listing peers: %w", err)
	}
	for _, gp := range gps {
		e, ok := byG[gp.GetConf().GetNeighborAddress()]
		if !ok {
			continue
		}
		st := bgp.PeerState{
			Key:         e.cfg.Key(),
			Description: e.cfg.Description,
			Address:     e.addr.String(),
			ASN:         gp.GetState().GetPeerAsn(),
			State:       sessionState(gp.GetState().GetSessionState()),
		}
		if st.ASN == 0 {
			st.ASN = e.cfg.ASN
		}
		if st.State == bgp.StateEstablished {
			if up := gp.GetTimers().GetState().GetUptime(); up != nil {
				st.Uptime = time.Since(up.AsTime())
			}
		}
		for _, f := range peerFamilies(e.cfg) {
			fs := bgp.FamilyState{Family: f}
			rf, _ := routeFamily(f)
			for _, af := range gp.GetAfiSafis() {
				if apiutil.ToRouteFamily(af.GetConfig().GetFamily()) == rf && af.GetState() != nil {
					fs.Received = af.GetState().GetReceived()
					fs.Accepted = af.GetState().GetAccepted()
				}
			}
			if e.cfg.Allowed != nil && fs.Received > 0 {
				n, err := s.countFiltered(ctx, e.gaddr, rf)
				if err != nil {
					return nil, fmt.Errorf("listing peers: counting rejects of %s: %w", st.Key, err)
				}
				fs.Accepted -= min(n, fs.Accepted)
			}
			fs.Rejected = fs.Received - fs.Accepted
			st.Families = append(st.Families, fs)
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b bgp.PeerState) int {
		if c := cmpString(a.Key.VRF, b.Key.VRF); c != 0 {
			return c
		}
		return cmpString(a.Key.Name, b.Key.Name)
	})
	return out, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// countFiltered counts the paths of a peer's Adj-RIB-In that the import
// policy rejects.
func (s *Speaker) countFiltered(ctx context.Context, gaddr string, rf pkt.RouteFamily) (uint64, error) {
	var n uint64
	err := s.srv.ListPath(ctx, &api.ListPathRequest{
		TableType:      api.TableType_ADJ_IN,
		Name:           gaddr,
		Family:         apiFamily(rf),
		EnableFiltered: true,
	}, func(d *api.Destination) {
		for _, p := range d.Paths {
			if p.Filtered {
				n++
			}
		}
	})
	return n, err
}

func sessionState(st api.PeerState_SessionState) bgp.SessionState {
	switch st {
	case api.PeerState_CONNECT:
		return bgp.StateConnect
	case api.PeerState_ACTIVE:
		return bgp.StateActive
	case api.PeerState_OPENSENT:
		return bgp.StateOpenSent
	case api.PeerState_OPENCONFIRM:
		return bgp.StateOpenConfirm
	case api.PeerState_ESTABLISHED:
		return bgp.StateEstablished
	}
	return bgp.StateIdle
}

// deferral is the selection deferral of a restarting speaker (default 30 s).
func deferral(g bgp.Global) time.Duration {
	if g.SelectionDeferral > 0 {
		return g.SelectionDeferral
	}
	return 30 * time.Second
}

// policiesLocked installs the global import policy (allowances) and the
// EVPN next-hop export policy of a freshly started speaker.
func (s *Speaker) policiesLocked(ctx context.Context) error {
	if err := s.applyPolicyLocked(ctx, nil); err != nil {
		return fmt.Errorf("starting speaker: %w", err)
	}
	if err := s.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_IMPORT,
		Policies:      []*api.Policy{{Name: importPolicyName}},
		DefaultAction: api.RouteAction_ACCEPT,
	}}); err != nil {
		return fmt.Errorf("starting speaker: assigning import policy: %w", err)
	}
	// EVPN routes keep their next hop (the originating VTEP) when passed
	// on over eBGP: a spine must not make itself the tunnel endpoint. The
	// policy itself went in with applyPolicyLocked above.
	if err := s.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_EXPORT,
		Policies:      []*api.Policy{{Name: exportPolicyName}},
		DefaultAction: api.RouteAction_ACCEPT,
	}}); err != nil {
		return fmt.Errorf("starting speaker: assigning export policy: %w", err)
	}
	return nil
}
