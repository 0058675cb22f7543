package agent

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/metalfabric/fabric/bgp"
	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/fabric"
	"github.com/metalfabric/fabric/lldp"
)

// This file is the protobuf edge: nothing else in the agent, and nothing in
// the reconcilers, sees apiv1 config types.

// desiredFromProto converts a snapshot into the fabric reconciler's desired
// state; vlans is this switch's range for L3VNI VLANs. A VRF without a name
// gets the conventional "vrf<VNI>". Ports the controller hands over with
// attributes become fabric ports (in the VRF that lists them); ports only
// listed in a VRF stay the VRF's shorthand ports. Malformed addresses are an
// error: the snapshot is then rejected as a whole.
func desiredFromProto(cfg *apiv1.DeviceConfig, vlans fabric.VLANRange) (fabric.Desired, error) {
	d := fabric.Desired{VLANRange: vlans}
	if lo := cfg.GetLoopback(); lo != "" {
		p, err := netip.ParsePrefix(lo)
		if err != nil {
			return fabric.Desired{}, fmt.Errorf("loopback %q: %w", lo, err)
		}
		d.Loopback.Addrs = []netip.Prefix{p}
	}
	if v := cfg.GetVtep(); v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return fabric.Desired{}, fmt.Errorf("vtep %q: %w", v, err)
		}
		d.VTEP = a
	}
	var routerMAC net.HardwareAddr
	if m := cfg.GetRouterMac(); m != "" {
		var err error
		if routerMAC, err = net.ParseMAC(m); err != nil {
			return fabric.Desired{}, fmt.Errorf("router mac %q: %w", m, err)
		}
	}
	handed := make(map[string]*apiv1.PortConfig, len(cfg.GetPorts()))
	for _, p := range cfg.GetPorts() {
		handed[p.GetName()] = p
	}
	vrfOf := make(map[string]string)
	for _, v := range cfg.GetVrfs() {
		name := v.GetName()
		if name == "" && v.GetVni() != 0 {
			name = fmt.Sprintf("vrf%d", v.GetVni())
		}
		vrf := fabric.VRF{Name: name, Table: v.GetTable()}
		if v.GetL3Vni() {
			vrf.L3VNI = &fabric.L3VNI{VNI: v.GetVni(), RouterMAC: routerMAC}
		}
		for _, p := range v.GetPorts() {
			if _, ok := handed[p]; ok {
				vrfOf[p] = name
				continue
			}
			vrf.Ports = append(vrf.Ports, p)
		}
		d.VRFs = append(d.VRFs, vrf)
	}
	for _, p := range cfg.GetPorts() {
		d.Ports = append(d.Ports, fabric.Port{
			Name:        p.GetName(),
			AdminUp:     p.GetAdminUp(),
			Description: p.GetDescription(),
			VRF:         vrfOf[p.GetName()],
		})
	}
	// A numbered underlay session puts its /31 on the port, which is then
	// a routed port in the default VRF, set up.
	for _, u := range cfg.GetUnderlay() {
		local, _, err := underlayAddrs(u)
		if err != nil {
			return fabric.Desired{}, err
		}
		if !local.IsValid() {
			continue
		}
		if i := slices.IndexFunc(d.Ports, func(p fabric.Port) bool { return p.Name == u.GetPort() }); i >= 0 {
			d.Ports[i].Addrs = append(d.Ports[i].Addrs, local)
			continue
		}
		d.Ports = append(d.Ports, fabric.Port{Name: u.GetPort(), AdminUp: true, Addrs: []netip.Prefix{local}})
	}
	return d, nil
}

// underlayAddrs returns a numbered underlay session's own address on its
// port and the neighbour's address; both invalid for an unnumbered one. The
// two must come together, be IPv4, and the peer must be the other address
// of a /31 (or another address of a longer prefix).
func underlayAddrs(u *apiv1.UnderlayPeer) (netip.Prefix, netip.Addr, error) {
	if u.GetAddress() == "" && u.GetPeerAddress() == "" {
		return netip.Prefix{}, netip.Addr{}, nil
	}
	what := fmt.Sprintf("underlay session on %s", u.GetPort())
	if u.GetAddress() == "" || u.GetPeerAddress() == "" {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("%s: address %q and peer address %q: want both or neither", what, u.GetAddress(), u.GetPeerAddress())
	}
	local, err := netip.ParsePrefix(u.GetAddress())
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("%s: address %q: %w", what, u.GetAddress(), err)
	}
	peer, err := netip.ParseAddr(u.GetPeerAddress())
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("%s: peer address %q: %w", what, u.GetPeerAddress(), err)
	}
	if !local.Addr().Is4() || !peer.Is4() || local.Bits() > 31 {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("%s: address %s and peer address %s: want IPv4 in a /31", what, local, peer)
	}
	if !local.Contains(peer) || peer == local.Addr() {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("%s: peer address %s is not the other address of %s", what, peer, local)
	}
	return local, peer, nil
}

func driftToProto(s DriftStats) *apiv1.Drift {
	return &apiv1.Drift{Repairs: s.Repairs, UnmanagedChanges: s.Unmanaged, LastUnmanaged: s.LastUnmanaged}
}

func roleToProto(r Role) apiv1.Role {
	switch r {
	case RoleLeaf:
		return apiv1.Role_ROLE_LEAF
	case RoleSpine:
		return apiv1.Role_ROLE_SPINE
	case RoleFirewall:
		return apiv1.Role_ROLE_FIREWALL
	default:
		return apiv1.Role_ROLE_UNSPECIFIED
	}
}

func portsToProto(links []fabric.Link) []*apiv1.Port {
	ports := make([]*apiv1.Port, 0, len(links))
	for _, l := range links {
		ports = append(ports, &apiv1.Port{
			Name:   l.Name,
			Mac:    l.MAC,
			Mtu:    uint32(max(l.MTU, 0)),
			OperUp: l.OperUp(),
		})
	}
	return ports
}

// stepErrorsToProto names each step after the subsystem that ran it.
func stepErrorsToProto(subsystem string, errs []fabric.StepError) []*apiv1.StepError {
	out := make([]*apiv1.StepError, 0, len(errs))
	for _, e := range errs {
		out = append(out, &apiv1.StepError{Step: subsystem + ": " + e.Step, Message: e.Err.Error()})
	}
	return out
}

// neighborsToProto converts the LLDP neighbour table. IDs are rendered by
// their subtype (a MAC as aa:bb:cc:dd:ee:ff, an interface name as text).
func neighborsToProto(nbrs []lldp.Neighbor) []*apiv1.Neighbor {
	out := make([]*apiv1.Neighbor, 0, len(nbrs))
	for _, n := range nbrs {
		pn := &apiv1.Neighbor{
			Port:              n.Port,
			ChassisId:         n.ChassisID.String(),
			PortId:            n.PortID.String(),
			PortDescription:   n.PortDescription,
			SystemName:        n.SystemName,
			SystemDescription: n.SystemDescription,
			TtlSeconds:        uint32(max(n.TTL.Seconds(), 0)),
		}
		for _, a := range n.MgmtAddrs {
			pn.MgmtAddrs = append(pn.MgmtAddrs, a.String())
		}
		if !n.LastSeen.IsZero() {
			pn.LastSeen = timestamppb.New(n.LastSeen)
		}
		out = append(out, pn)
	}
	return out
}

// routingFromProto converts a snapshot into the routing reconciler's
// desired state. The L3VNI devices of each VRF (VLAN, SVI, its MAC as the
// router MAC) are read from state, the kernel as the fabric reconciler left
// it: a VRF whose L3VNI is not (yet) in the kernel takes part in no EVPN.
func routingFromProto(cfg *apiv1.DeviceConfig, state fabric.Actual) (bgp.Desired, error) {
	d := bgp.Desired{ASN: cfg.GetAsn()}
	if lo := cfg.GetLoopback(); lo != "" {
		p, err := netip.ParsePrefix(lo)
		if err != nil {
			return bgp.Desired{}, fmt.Errorf("loopback %q: %w", lo, err)
		}
		d.RouterID = p.Addr()
		d.Networks = []netip.Prefix{p.Masked()}
	}
	if v := cfg.GetVtep(); v != "" {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return bgp.Desired{}, fmt.Errorf("vtep %q: %w", v, err)
		}
		d.VTEP = a
	}
	for _, u := range cfg.GetUnderlay() {
		_, peer, err := underlayAddrs(u)
		if err != nil {
			return bgp.Desired{}, err
		}
		d.Underlay = append(d.Underlay, bgp.UnderlayPeer{Interface: u.GetPort(), Address: peer, ASN: u.GetPeerAsn(), Description: u.GetPeer(), Passive: u.GetPassive()})
	}
	// On firewalls: the default route into tenant VNIs, egress IPs into
	// the external VNI (firewall.go; a malformed policy is reported by the
	// firewall step and originates nothing).
	var originate map[string][]netip.Prefix
	if len(cfg.GetFirewall()) > 0 {
		if plan, err := planFirewall(cfg, state); err == nil {
			originate = plan.originate
		}
	}
	for _, v := range cfg.GetVrfs() {
		name := v.GetName()
		if name == "" && v.GetVni() != 0 {
			name = fmt.Sprintf("vrf%d", v.GetVni())
		}
		tv := bgp.TenantVRF{Name: name, VNI: v.GetVni(), Table: v.GetTable(), Originate: originate[name]}
		if v.GetL3Vni() {
			if vlan, ok := state.L3VNIVLAN(v.GetVni()); ok {
				if svi, ok := state.Link(fabric.SVIName(vlan)); ok {
					if mac, err := net.ParseMAC(svi.MAC); err == nil {
						tv.SVI, tv.VXLAN, tv.VLAN, tv.RouterMAC = svi.Name, fabric.VXLANName(v.GetVni()), vlan, mac
					}
				}
			}
		}
		for _, m := range v.GetMachinePeers() {
			mp := bgp.MachinePeer{Interface: m.GetPort(), Description: m.GetMachine(), MaxPrefixes: m.GetMaxPrefixes(), Allowed: []netip.Prefix{}}
			for _, s := range m.GetAllowed() {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return bgp.Desired{}, fmt.Errorf("VRF %s, machine %s: allowed prefix %q: %w", name, m.GetMachine(), s, err)
				}
				mp.Allowed = append(mp.Allowed, p)
			}
			tv.Machines = append(tv.Machines, mp)
		}
		d.VRFs = append(d.VRFs, tv)
	}
	return d, nil
}

func routingToProto(st bgp.Status) *apiv1.Routing {
	out := &apiv1.Routing{
		RoutesInstalled: uint64(st.RoutesInstalled),
		InstallFailures: uint64(st.FailedCount),
		FailedRoutes:    st.Failed,
		EvpnExported:    uint64(st.EVPNExported),
		EvpnImported:    uint64(st.EVPNImported),
	}
	for _, s := range st.Sessions {
		bs := &apiv1.BgpSession{
			Peer: s.Key.Name, Vrf: s.Key.VRF, Description: s.Description, Address: s.Address,
			Asn: s.ASN, State: string(s.State), Uptime: durationpb.New(s.Uptime), Installed: uint64(s.Installed),
		}
		for _, f := range s.Families {
			bs.Received += f.Received
			bs.Accepted += f.Accepted
			bs.Rejected += f.Rejected
		}
		out.Sessions = append(out.Sessions, bs)
	}
	return out
}
