// Package compile turns inventory and allocations into each device's desired
// config. It is pure: no I/O, no clock, no store, no protobuf. Versions are
// not its business either; it leaves DeviceConfig.Version zero.
package compile

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strings"

	"github.com/metalfabric/fabric/controlplane/model"
)

// Input is everything the compiler looks at.
type Input struct {
	Devices  []model.Device
	Networks []model.Network
	Machines []model.Machine
	// Neighbors are the devices' LLDP neighbour tables by hostname: the
	// fabric links in them become underlay sessions.
	Neighbors map[string][]model.Neighbor
	// Firewalls are the tenant networks' firewall policies; every firewall
	// device gets all of them.
	Firewalls []model.FirewallPolicy
	// Numbered makes the underlay sessions numbered: each gets the
	// addresses of its link's /31 in LinkNets (see Number).
	Numbered bool
	LinkNets map[Link]netip.Prefix
}

// DefaultMachineMaxPrefixes is the max-prefix guard of machine sessions.
const DefaultMachineMaxPrefixes = 256

// Compile returns one config per device, sorted by hostname.
//
// Every device gets its loopback, its ASN and an underlay session on every
// port where LLDP sees another registered device (numbered with
// Input.LinkNets when Input.Numbered, see Number). A leaf gets one VRF per network that has
// at least one allocated machine cabled to one of its ports; the VRF holds
// those ports and has an L3VNI (the leaf's loopback is its VTEP, its chassis
// MAC the router MAC), and each such port is handed to the agent up, with the
// machine's name as description. Spines and firewalls get no VRFs yet;
// firewalls get every tenant network's firewall policy (FirewallTenants).
// Allocations to unknown networks and connections to unknown devices are
// ignored.
func Compile(in Input) []model.DeviceConfig {
	networks := make(map[string]model.Network, len(in.Networks))
	for _, n := range in.Networks {
		networks[n.Name] = n
	}
	byDevice := make(map[string][]model.Attachment)
	for _, m := range in.Machines {
		for _, a := range Attachments(m) {
			byDevice[a.Device] = append(byDevice[a.Device], a.Attachment)
		}
	}
	devices := make(map[string]model.Device, len(in.Devices))
	for _, d := range in.Devices {
		devices[strings.ToLower(d.Hostname)] = d
	}
	out := make([]model.DeviceConfig, 0, len(in.Devices))
	for _, d := range in.Devices {
		sessions := Sessions(d, in.Neighbors[d.Hostname], devices)
		underlay := Unnumbered(sessions)
		if in.Numbered {
			underlay = Number(sessions, in.LinkNets)
		}
		cfg := Device(d, networks, byDevice[d.Hostname], underlay)
		if d.Role == model.RoleFirewall {
			Firewall(&cfg, d, in.Firewalls, networks)
		}
		out = append(out, cfg)
	}
	slices.SortFunc(out, func(a, b model.DeviceConfig) int { return cmp.Compare(a.Hostname, b.Hostname) })
	return out
}

// DeviceAttachment is an attachment to one device.
type DeviceAttachment struct {
	Device string
	model.Attachment
}

// Attachments returns what m contributes to device configs, one attachment
// per device it is cabled to, sorted by device; none when m is free.
func Attachments(m model.Machine) []DeviceAttachment {
	if m.Allocation == nil {
		return nil
	}
	var out []DeviceAttachment
	for _, c := range m.Connections {
		i := slices.IndexFunc(out, func(a DeviceAttachment) bool { return a.Device == c.Device })
		if i < 0 {
			out = append(out, DeviceAttachment{Device: c.Device, Attachment: model.Attachment{
				Machine: m.Name, Network: m.Allocation.Network, Allowed: m.Allocation.Allowed()}})
			i = len(out) - 1
		}
		out[i].Ports = append(out[i].Ports, c.Port)
	}
	for i := range out {
		slices.Sort(out[i].Ports)
		out[i].Ports = slices.Compact(out[i].Ports)
	}
	slices.SortFunc(out, func(a, b DeviceAttachment) int { return cmp.Compare(a.Device, b.Device) })
	return out
}

// Device compiles one device's config (see Compile) from the networks and
// the attachments of the machines cabled to it, in machine name order (a
// port claimed twice goes to the last). Compile calls it for every device,
// so compiling one device alone gives exactly what Compile gives it.
func Device(d model.Device, networks map[string]model.Network, atts []model.Attachment, underlay []model.UnderlayPeer) model.DeviceConfig {
	cfg := model.DeviceConfig{Hostname: d.Hostname, Role: d.Role, ASN: d.ASN, Underlay: underlay}
	if d.Loopback.IsValid() {
		cfg.Loopback = netip.PrefixFrom(d.Loopback, d.Loopback.BitLen())
	}
	if d.Role != model.RoleLeaf {
		return cfg
	}
	cfg.VTEP = d.Loopback
	cfg.RouterMAC = d.ChassisMAC
	// network -> set of ports, port -> machine, port -> allowance
	ports := make(map[string]map[string]struct{})
	owner := make(map[string]string)
	allowed := make(map[string][]netip.Prefix)
	for _, a := range atts {
		if _, ok := networks[a.Network]; !ok {
			continue
		}
		set := ports[a.Network]
		if set == nil {
			set = make(map[string]struct{})
			ports[a.Network] = set
		}
		for _, p := range a.Ports {
			set[p] = struct{}{}
			owner[p] = a.Machine
			allowed[p] = a.Allowed
		}
	}
	for netName, set := range ports {
		n := networks[netName]
		vrfPorts := slices.Sorted(maps.Keys(set))
		var peers []model.MachinePeer
		for _, p := range vrfPorts {
			peers = append(peers, model.MachinePeer{Port: p, Machine: owner[p], Allowed: allowed[p], MaxPrefixes: DefaultMachineMaxPrefixes})
		}
		cfg.VRFs = append(cfg.VRFs, model.VRF{
			Name:         VRFName(n.VNI),
			VNI:          n.VNI,
			Table:        n.VNI,
			Network:      n.Name,
			Ports:        vrfPorts,
			L3VNI:        cfg.VTEP.IsValid(),
			MachinePeers: peers,
		})
	}
	for _, port := range slices.Sorted(maps.Keys(owner)) {
		cfg.Ports = append(cfg.Ports, model.PortConfig{Name: port, Description: owner[port], AdminUp: true})
	}
	slices.SortFunc(cfg.VRFs, func(a, b model.VRF) int {
		return cmp.Or(cmp.Compare(a.VNI, b.VNI), cmp.Compare(a.Network, b.Network))
	})
	return cfg
}

// Underlay returns a device's unnumbered underlay sessions from its LLDP
// neighbour table: one per port whose neighbour identity names a registered
// device (devices keyed by lower-case hostname), sorted by port. A port that
// sees several devices (a hub, a miswiring) gets no session.
//
// Exactly one end of each session dials: self listens (Passive) when it
// ranks above the neighbour (listens), so both ends' configs agree.
func Underlay(self model.Device, nbrs []model.Neighbor, devices map[string]model.Device) []model.UnderlayPeer {
	return Unnumbered(Sessions(self, nbrs, devices))
}

// Session is an underlay session (unnumbered) with the fabric link it runs
// over.
type Session struct {
	model.UnderlayPeer
	Link Link
}

// Sessions is Underlay with each session's link: self's port and the
// neighbour's port as its LLDP port id names it (the agents announce the
// interface name; a neighbour that announces no port id gives a link
// without a remote port, which cannot be numbered). A device seen twice on
// one port counts once, with the port id of its first entry.
func Sessions(self model.Device, nbrs []model.Neighbor, devices map[string]model.Device) []Session {
	type seen struct {
		dev    model.Device
		portID string
	}
	byPort := make(map[string][]seen)
	for _, n := range nbrs {
		peer, ok := devices[strings.ToLower(n.Identity())]
		if !ok || slices.ContainsFunc(byPort[n.Port], func(s seen) bool { return s.dev.Hostname == peer.Hostname }) {
			continue
		}
		byPort[n.Port] = append(byPort[n.Port], seen{peer, n.PortID})
	}
	var out []Session
	for _, port := range slices.Sorted(maps.Keys(byPort)) {
		if ss := byPort[port]; len(ss) == 1 {
			peer := ss[0].dev
			out = append(out, Session{
				UnderlayPeer: model.UnderlayPeer{Port: port, Peer: peer.Hostname, PeerASN: peer.ASN, Passive: listens(self, peer)},
				Link:         NewLink(LinkEnd{Device: self.Hostname, Port: port}, LinkEnd{Device: peer.Hostname, Port: ss[0].portID}),
			})
		}
	}
	return out
}

// Unnumbered returns the sessions as unnumbered underlay peers.
func Unnumbered(ss []Session) []model.UnderlayPeer {
	var out []model.UnderlayPeer
	for _, s := range ss {
		out = append(out, s.UnderlayPeer)
	}
	return out
}

// Number returns the sessions as numbered underlay peers, each with the
// addresses of its link's /31 in nets: the end that dials (not Passive)
// gets the lower address, the end that listens the upper one, so the two
// ends of a link always agree (both derive Passive from the same rule). A
// session whose link has no IPv4 /31 in nets is left out: a numbered
// underlay does not fall back to unnumbered sessions per link (the
// inventory allocates a /31 for every link whose ends are both known).
func Number(ss []Session, nets map[Link]netip.Prefix) []model.UnderlayPeer {
	var out []model.UnderlayPeer
	for _, s := range ss {
		p, ok := nets[s.Link]
		if !ok || !p.Addr().Is4() || p.Bits() != 31 || p != p.Masked() {
			continue
		}
		lo, hi := p.Addr(), p.Addr().Next()
		own, peer := lo, hi
		if s.Passive {
			own, peer = hi, lo
		}
		u := s.UnderlayPeer
		u.Address = netip.PrefixFrom(own, 31)
		u.PeerAddress = peer
		out = append(out, u)
	}
	return out
}

// LinkEnd is one end of a fabric link: a device (lower-case hostname) and
// its port.
type LinkEnd struct {
	Device string `json:"device"`
	Port   string `json:"port"`
}

// Link is a fabric link between two device ports, its ends in order (by
// device, then port), so that both ends' neighbour tables name it alike.
type Link struct {
	A LinkEnd `json:"a"`
	B LinkEnd `json:"b"`
}

// NewLink returns the link between x and y.
func NewLink(x, y LinkEnd) Link {
	x.Device, y.Device = strings.ToLower(x.Device), strings.ToLower(y.Device)
	if cmp.Or(cmp.Compare(x.Device, y.Device), cmp.Compare(x.Port, y.Port)) > 0 {
		x, y = y, x
	}
	return Link{A: x, B: y}
}

// Complete reports whether both ends' devices and ports are known (a
// neighbour that announces no port id leaves its end's port empty).
func (l Link) Complete() bool {
	return l.A.Device != "" && l.A.Port != "" && l.B.Device != "" && l.B.Port != ""
}

// Has reports whether device is one of the link's ends.
func (l Link) Has(device string) bool {
	d := strings.ToLower(device)
	return l.A.Device == d || l.B.Device == d
}

// String names the link as "a:port~b:port"; each part is query-escaped,
// so distinct links have distinct names (a store key).
func (l Link) String() string {
	e := url.QueryEscape
	return e(l.A.Device) + ":" + e(l.A.Port) + "~" + e(l.B.Device) + ":" + e(l.B.Port)
}

// listens tells which end of a session between two devices waits for the
// other to connect: the higher tier (spine above leaf above firewall), and
// between equals the greater hostname. The end that dials treats the other
// as upstream (bgp.Peer.Upstream: valley-free export), so a firewall, at the
// bottom, is never a transit between leaves.
func listens(self, peer model.Device) bool {
	tier := func(r model.Role) int {
		switch r {
		case model.RoleSpine:
			return 2
		case model.RoleLeaf:
			return 1
		}
		return 0
	}
	return cmp.Or(cmp.Compare(tier(self.Role), tier(peer.Role)),
		cmp.Compare(strings.ToLower(self.Hostname), strings.ToLower(peer.Hostname))) > 0
}

// FirewallTenants returns what a firewall gets of the policies: each with
// its network's prefix, VNI and VRF name, sorted by network. Policies of
// unknown networks are left out.
func FirewallTenants(policies []model.FirewallPolicy, networks map[string]model.Network) []model.FirewallTenant {
	var out []model.FirewallTenant
	for _, p := range policies {
		n, ok := networks[p.Network]
		if !ok {
			continue
		}
		out = append(out, model.FirewallTenant{FirewallPolicy: p, Prefix: n.Prefix, VNI: n.VNI, VRF: VRFName(n.VNI)})
	}
	slices.SortFunc(out, func(a, b model.FirewallTenant) int { return cmp.Compare(a.Network, b.Network) })
	return out
}

// Firewall completes a firewall's config (Device compiled its loopback,
// ASN and underlay): the policies (FirewallTenants), the VTEP and router
// MAC like a leaf's, and one VRF with an L3VNI and no ports for each
// network that has a policy (the tenants the firewall serves) and for each
// external network (marked External; the tenants' default route leaks
// into it). networks must hold every network with a policy and every
// external network.
func Firewall(cfg *model.DeviceConfig, d model.Device, policies []model.FirewallPolicy, networks map[string]model.Network) {
	cfg.Firewall = FirewallTenants(policies, networks)
	cfg.VTEP = d.Loopback
	cfg.RouterMAC = d.ChassisMAC
	seen := make(map[string]bool)
	add := func(n model.Network) {
		if seen[n.Name] {
			return
		}
		seen[n.Name] = true
		cfg.VRFs = append(cfg.VRFs, model.VRF{
			Name: VRFName(n.VNI), VNI: n.VNI, Table: n.VNI, Network: n.Name,
			L3VNI: cfg.VTEP.IsValid(), External: n.External,
		})
	}
	for _, t := range cfg.Firewall {
		add(networks[t.Network])
	}
	for _, name := range slices.Sorted(maps.Keys(networks)) {
		if networks[name].External {
			add(networks[name])
		}
	}
	slices.SortFunc(cfg.VRFs, func(a, b model.VRF) int {
		return cmp.Or(cmp.Compare(a.VNI, b.VNI), cmp.Compare(a.Network, b.Network))
	})
}

// VRFName is the kernel name of a tenant VRF.
func VRFName(vni uint32) string { return fmt.Sprintf("vrf%d", vni) }

// Equal reports whether two configs describe the same desired state,
// ignoring Version.
func Equal(a, b model.DeviceConfig) bool {
	a.Version, b.Version = 0, 0
	return reflect.DeepEqual(normalize(a), normalize(b))
}

// normalize makes empty and nil slices compare equal (JSON round trips turn
// one into the other).
func normalize(c model.DeviceConfig) model.DeviceConfig {
	if len(c.VRFs) == 0 {
		c.VRFs = nil
	}
	if len(c.Ports) == 0 {
		c.Ports = nil
	}
	if len(c.Underlay) == 0 {
		c.Underlay = nil
	}
	if len(c.Firewall) == 0 {
		c.Firewall = nil
	}
	vrfs := make([]model.VRF, len(c.VRFs))
	for i, v := range c.VRFs {
		if len(v.Ports) == 0 {
			v.Ports = nil
		}
		if len(v.MachinePeers) == 0 {
			v.MachinePeers = nil
		}
		vrfs[i] = v
	}
	if c.VRFs != nil {
		c.VRFs = vrfs
	}
	return c
}
