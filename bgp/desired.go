package bgp

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

// Desired is the routing part of a device's desired state, in the
// project's own terms. The agent builds it from the controller's config and
// from what the fabric reconciler reached (the L3VNI devices and their VLAN).
type Desired struct {
	ASN      uint32
	RouterID netip.Addr
	// VTEP is the local VXLAN tunnel endpoint: the next hop of the EVPN
	// type-5 routes this device originates. Invalid on devices without
	// VXLAN (spines), which then only carry EVPN routes.
	VTEP netip.Addr
	// Networks are originated in the global RIB (the loopback /32).
	Networks []netip.Prefix
	// Underlay are the sessions to other switches.
	Underlay []UnderlayPeer
	// VRFs are the tenant VRFs, sorted by name.
	VRFs []TenantVRF
}

// UnderlayPeer is an eBGP session on a fabric link, carrying IPv4 unicast
// and EVPN: unnumbered (IPv6 link-local, RFC 5549 next hops) unless Address
// is set.
type UnderlayPeer struct {
	// Interface is the fabric port the session runs over (also for a
	// numbered session: a port that loses carrier resets it).
	Interface string
	// Address makes the session numbered: the neighbour's IPv4 address on
	// the link (the other address of the port's /31, which the fabric
	// reconciler puts on the port).
	Address netip.Addr
	// ASN of the neighbour switch; 0 accepts any external AS.
	ASN         uint32
	Description string
	// Passive: this end listens and the neighbour dials (one active end
	// per link; see Peer.Passive).
	Passive bool
}

// TenantVRF is one tenant VRF with its L3VNI and machine sessions.
type TenantVRF struct {
	// Name is the kernel VRF device name.
	Name  string
	VNI   uint32
	Table uint32
	// The L3VNI's kernel devices as the fabric reconciler reached them:
	// the SVI in the VRF, the VXLAN device, the SVI's VLAN and MAC (the
	// router MAC of the type-5 routes). SVI empty: no L3VNI, no EVPN.
	SVI       string
	VXLAN     string
	VLAN      uint16
	RouterMAC net.HardwareAddr
	Machines  []MachinePeer
	// Originate are prefixes this device exports as EVPN type-5 routes of
	// the VRF's VNI (next hop its VTEP) on its own behalf, sorted: a
	// firewall's default route into a tenant VNI, its SNAT addresses into
	// the internet VNI. The reconciler installs no kernel route for them
	// (the caller routes them, e.g. by route leaking) and ignores imports
	// of them.
	Originate []netip.Prefix
}

// MachinePeer is an eBGP unnumbered session with a machine on a port in
// the VRF; only prefixes inside Allowed are accepted.
type MachinePeer struct {
	Interface   string
	Description string
	Allowed     []netip.Prefix
	MaxPrefixes uint32
}

// evpn reports whether the VRF takes part in EVPN.
func (v TenantVRF) evpn() bool { return v.SVI != "" && v.VXLAN != "" && v.VNI != 0 }

// Defaults of the sessions the reconciler configures.
const (
	// GracefulRestartTime is how long peers keep our routes while the agent
	// restarts.
	GracefulRestartTime = 120 * time.Second
	// SelectionDeferral bounds how long a restarting agent's speaker holds
	// its updates back waiting for its peers' End-of-RIB.
	SelectionDeferral = 30 * time.Second
	// MainTable is the kernel's main routing table: underlay routes go
	// there.
	MainTable = 254
	// importLocalPref is the local preference of EVPN imports handed to
	// machines (below the default 100 of a machine's own announcement).
	importLocalPref = 50
)

// Validate checks a desired state before anything is touched.
func (d Desired) Validate() error {
	if d.ASN == 0 {
		return fmt.Errorf("no ASN")
	}
	if !d.RouterID.Is4() {
		return fmt.Errorf("router id %v is not an IPv4 address", d.RouterID)
	}
	if d.VTEP.IsValid() && !d.VTEP.Is4() {
		return fmt.Errorf("VTEP %v is not an IPv4 address", d.VTEP)
	}
	ports := make(map[string]string)
	claim := func(port, what string) error {
		if port == "" {
			return fmt.Errorf("%s: no interface", what)
		}
		if o, ok := ports[port]; ok {
			return fmt.Errorf("interface %s has two sessions (%s and %s)", port, o, what)
		}
		ports[port] = what
		return nil
	}
	numbered := make(map[netip.Addr]string)
	for _, u := range d.Underlay {
		if err := claim(u.Interface, "underlay session"); err != nil {
			return err
		}
		if !u.Address.IsValid() {
			continue
		}
		if a := u.Address; !a.Is4() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return fmt.Errorf("underlay session on %s: peer address %s is not a unicast IPv4 address", u.Interface, a)
		}
		if o, ok := numbered[u.Address]; ok {
			return fmt.Errorf("underlay sessions on %s and %s have the same peer address %s", o, u.Interface, u.Address)
		}
		numbered[u.Address] = u.Interface
	}
	names := make(map[string]bool)
	vnis := make(map[uint32]string)
	rds := make(map[string]string)
	tables := make(map[uint32]string)
	for _, v := range d.VRFs {
		if v.Name == "" || names[v.Name] {
			return fmt.Errorf("VRF name %q empty or duplicate", v.Name)
		}
		names[v.Name] = true
		if o, ok := vnis[v.VNI]; ok && v.VNI != 0 {
			return fmt.Errorf("VRFs %s and %s share VNI %d", o, v.Name, v.VNI)
		}
		vnis[v.VNI] = v.Name
		if rd := RD(d.RouterID, v.VNI); v.VNI != 0 {
			if o, ok := rds[rd]; ok {
				return fmt.Errorf("VRFs %s and %s would share the route distinguisher %s (VNIs equal in their low 16 bits)", o, v.Name, rd)
			}
			rds[rd] = v.Name
		}
		if v.Table == 0 || v.Table == MainTable {
			return fmt.Errorf("VRF %s: table %d", v.Name, v.Table)
		}
		// Routes are keyed by table: two VRFs in one table would fight
		// over them.
		if o, ok := tables[v.Table]; ok {
			return fmt.Errorf("VRFs %s and %s share table %d", o, v.Name, v.Table)
		}
		tables[v.Table] = v.Name
		if v.evpn() && (len(v.RouterMAC) != 6 || !d.VTEP.IsValid()) {
			return fmt.Errorf("VRF %s: an L3VNI needs a router MAC and a VTEP", v.Name)
		}
		for _, p := range v.Originate {
			if !p.IsValid() || p != p.Masked() {
				return fmt.Errorf("VRF %s: originated prefix %v is not canonical", v.Name, p)
			}
		}
		for _, m := range v.Machines {
			if err := claim(m.Interface, "machine session in "+v.Name); err != nil {
				return err
			}
			for _, p := range m.Allowed {
				if !p.IsValid() || p != p.Masked() {
					return fmt.Errorf("VRF %s, machine %s: allowed prefix %v is not canonical", v.Name, m.Interface, p)
				}
			}
		}
	}
	return nil
}

// global is the speaker's global configuration for d.
func (d Desired) global(listenPort int32, restarting bool) Global {
	return Global{ASN: d.ASN, RouterID: d.RouterID, ListenPort: listenPort, Multipath: true, GracefulRestart: GracefulRestartTime,
		Restarting: restarting, SelectionDeferral: SelectionDeferral}
}

// peers returns every session d asks for, sorted by key.
func (d Desired) peers() []Peer {
	var out []Peer
	for _, u := range d.Underlay {
		p := Peer{
			Interface: u.Interface, ASN: u.ASN, Families: []Family{IPv4Unicast, EVPN},
			GracefulRestart: true, Description: u.Description, Passive: u.Passive,
			// The end that dials is the lower tier (compile.Underlay):
			// the neighbour it dials is upstream.
			Upstream: !u.Passive,
		}
		if u.Address.IsValid() {
			p.Interface, p.Address = "", u.Address
		}
		out = append(out, p)
	}
	for _, v := range d.VRFs {
		for _, m := range v.Machines {
			out = append(out, Peer{
				Interface: m.Interface, VRF: v.Name, Families: []Family{IPv4Unicast},
				Allowed: nonNil(m.Allowed), MaxPrefixes: m.MaxPrefixes,
				GracefulRestart: true, Description: m.Description,
			})
		}
	}
	slices.SortFunc(out, func(a, b Peer) int { return comparePeerKey(a.Key(), b.Key()) })
	return out
}

// nonNil makes an empty allowance reject everything rather than accept all.
func nonNil(ps []netip.Prefix) []netip.Prefix {
	if ps == nil {
		return []netip.Prefix{}
	}
	return ps
}

// speakerVRFs returns the speaker's VRF RIBs for d.
func (d Desired) speakerVRFs() []VRF {
	var out []VRF
	for _, v := range d.VRFs {
		rt := RT(d.ASN, v.VNI)
		out = append(out, VRF{Name: v.Name, RD: RD(d.RouterID, v.VNI), ImportRTs: []string{rt}, ExportRTs: []string{rt}, ID: v.VNI})
	}
	return out
}

// networkPaths returns the global originations of d.
func (d Desired) networkPaths() []Path {
	var out []Path
	for _, p := range d.Networks {
		f := IPv4Unicast
		if p.Addr().Is6() {
			f = IPv6Unicast
		}
		out = append(out, Path{Family: f, Prefix: p.Masked()})
	}
	return out
}

func comparePeerKey(a, b PeerKey) int {
	return cmp.Or(cmp.Compare(a.VRF, b.VRF), cmp.Compare(a.Name, b.Name))
}

func samePeer(a, b Peer) bool {
	return a.Interface == b.Interface && a.Address == b.Address && a.ASN == b.ASN && a.VRF == b.VRF &&
		slices.Equal(a.Families, b.Families) && slices.Equal(a.Allowed, b.Allowed) && (a.Allowed == nil) == (b.Allowed == nil) &&
		a.MaxPrefixes == b.MaxPrefixes && a.HoldTime == b.HoldTime && a.KeepaliveInterval == b.KeepaliveInterval &&
		a.ConnectRetry == b.ConnectRetry && a.GracefulRestart == b.GracefulRestart && a.Description == b.Description &&
		a.Passive == b.Passive && a.Upstream == b.Upstream
}

// needsReset tells whether changing a into b cannot be done in place.
func needsReset(a, b Peer) bool {
	return a.ASN != b.ASN || !slices.Equal(a.Families, b.Families) || a.GracefulRestart != b.GracefulRestart ||
		a.Passive != b.Passive
}

func sameVRF(a, b VRF) bool {
	return a.Name == b.Name && a.RD == b.RD && a.ID == b.ID && slices.Equal(a.ImportRTs, b.ImportRTs) && slices.Equal(a.ExportRTs, b.ExportRTs)
}
