package server

import (
	"fmt"
	"net/netip"
	"slices"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/controlplane/inventory"
	"github.com/metalfabric/fabric/controlplane/ipam"
	"github.com/metalfabric/fabric/controlplane/model"
)

// This file is the only place where API types meet model types.

func roleFromProto(r apiv1.Role) model.Role {
	switch r {
	case apiv1.Role_ROLE_LEAF:
		return model.RoleLeaf
	case apiv1.Role_ROLE_SPINE:
		return model.RoleSpine
	case apiv1.Role_ROLE_FIREWALL:
		return model.RoleFirewall
	case apiv1.Role_ROLE_UNSPECIFIED:
		return ""
	}
	return model.Role(r.String()) // unknown enum value: rejected by validation
}

func roleToProto(r model.Role) apiv1.Role {
	switch r {
	case model.RoleLeaf:
		return apiv1.Role_ROLE_LEAF
	case model.RoleSpine:
		return apiv1.Role_ROLE_SPINE
	case model.RoleFirewall:
		return apiv1.Role_ROLE_FIREWALL
	}
	return apiv1.Role_ROLE_UNSPECIFIED
}

func portsFromProto(ps []*apiv1.Port) []model.Port {
	out := make([]model.Port, 0, len(ps))
	for _, p := range ps {
		out = append(out, model.Port{Name: p.GetName(), MAC: p.GetMac(), MTU: p.GetMtu(), OperUp: p.GetOperUp()})
	}
	return out
}

func portsToProto(ps []model.Port) []*apiv1.Port {
	out := make([]*apiv1.Port, 0, len(ps))
	for _, p := range ps {
		out = append(out, &apiv1.Port{Name: p.Name, Mac: p.MAC, Mtu: p.MTU, OperUp: p.OperUp})
	}
	return out
}

func stepErrorsFromProto(es []*apiv1.StepError) []model.StepError {
	var out []model.StepError
	for _, e := range es {
		out = append(out, model.StepError{Step: e.GetStep(), Message: e.GetMessage()})
	}
	return out
}

func stepErrorsToProto(es []model.StepError) []*apiv1.StepError {
	var out []*apiv1.StepError
	for _, e := range es {
		out = append(out, &apiv1.StepError{Step: e.Step, Message: e.Message})
	}
	return out
}

func configToProto(c model.DeviceConfig) *apiv1.DeviceConfig {
	out := &apiv1.DeviceConfig{Hostname: c.Hostname, Version: c.Version, Role: roleToProto(c.Role), RouterMac: c.RouterMAC, Asn: c.ASN}
	if c.Loopback.IsValid() {
		out.Loopback = c.Loopback.String()
	}
	if c.VTEP.IsValid() {
		out.Vtep = c.VTEP.String()
	}
	for _, p := range c.Ports {
		out.Ports = append(out.Ports, &apiv1.PortConfig{Name: p.Name, Description: p.Description, AdminUp: p.AdminUp})
	}
	for _, v := range c.VRFs {
		out.Vrfs = append(out.Vrfs, &apiv1.Vrf{
			Name:     v.Name,
			Vni:      v.VNI,
			Table:    v.Table,
			Network:  v.Network,
			Ports:    append([]string(nil), v.Ports...),
			L3Vni:    v.L3VNI,
			External: v.External,
			MachinePeers: func() []*apiv1.MachinePeer {
				var ps []*apiv1.MachinePeer
				for _, p := range v.MachinePeers {
					ps = append(ps, &apiv1.MachinePeer{Port: p.Port, Machine: p.Machine, Allowed: prefixStrings(p.Allowed), MaxPrefixes: p.MaxPrefixes})
				}
				return ps
			}(),
		})
	}
	for _, u := range c.Underlay {
		pu := &apiv1.UnderlayPeer{Port: u.Port, Peer: u.Peer, PeerAsn: u.PeerASN, Passive: u.Passive}
		if u.Address.IsValid() {
			pu.Address = u.Address.String()
		}
		if u.PeerAddress.IsValid() {
			pu.PeerAddress = u.PeerAddress.String()
		}
		out.Underlay = append(out.Underlay, pu)
	}
	for _, f := range c.Firewall {
		out.Firewall = append(out.Firewall, &apiv1.FirewallTenant{
			Policy: firewallPolicyToProto(f.FirewallPolicy),
			Prefix: f.Prefix.String(),
			Vni:    f.VNI,
			Vrf:    f.VRF,
		})
	}
	return out
}

func firewallPolicyToProto(p model.FirewallPolicy) *apiv1.FirewallPolicy {
	out := &apiv1.FirewallPolicy{Network: p.Network, Nat: p.NAT,
		Ingress: firewallRulesToProto(p.Ingress), Egress: firewallRulesToProto(p.Egress)}
	for _, a := range p.EgressIPs {
		out.EgressIps = append(out.EgressIps, a.String())
	}
	out.PublicPrefixes = prefixStrings(p.Public)
	return out
}

func firewallRulesToProto(rs []model.FirewallRule) []*apiv1.FirewallRule {
	var out []*apiv1.FirewallRule
	for _, r := range rs {
		pr := &apiv1.FirewallRule{Action: r.Action, Protocol: r.Protocol, Comment: r.Comment}
		for _, c := range r.CIDRs {
			pr.Cidrs = append(pr.Cidrs, c.String())
		}
		for _, p := range r.Ports {
			pr.Ports = append(pr.Ports, &apiv1.PortRange{From: uint32(p.From), To: uint32(p.To)})
		}
		out = append(out, pr)
	}
	return out
}

// firewallPolicyFromProto parses a policy; errors name the rule.
func firewallPolicyFromProto(p *apiv1.FirewallPolicy) (model.FirewallPolicy, error) {
	out := model.FirewallPolicy{Network: p.GetNetwork(), NAT: p.GetNat()}
	var err error
	if out.Ingress, err = firewallRulesFromProto("ingress", p.GetIngress()); err != nil {
		return model.FirewallPolicy{}, err
	}
	if out.Egress, err = firewallRulesFromProto("egress", p.GetEgress()); err != nil {
		return model.FirewallPolicy{}, err
	}
	for _, s := range p.GetEgressIps() {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return model.FirewallPolicy{}, fmt.Errorf("egress IP %q is not an IP address", s)
		}
		out.EgressIPs = append(out.EgressIPs, a)
	}
	for _, s := range p.GetPublicPrefixes() {
		pf, err := netip.ParsePrefix(s)
		if err != nil {
			return model.FirewallPolicy{}, fmt.Errorf("public prefix %q is not a CIDR prefix", s)
		}
		out.Public = append(out.Public, pf)
	}
	return out, nil
}

func firewallRulesFromProto(dir string, rs []*apiv1.FirewallRule) ([]model.FirewallRule, error) {
	var out []model.FirewallRule
	for i, r := range rs {
		mr := model.FirewallRule{Action: r.GetAction(), Protocol: r.GetProtocol(), Comment: r.GetComment()}
		for _, c := range r.GetCidrs() {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				return nil, fmt.Errorf("%s rule %d: CIDR %q is not a prefix in CIDR notation", dir, i, c)
			}
			mr.CIDRs = append(mr.CIDRs, p)
		}
		for _, p := range r.GetPorts() {
			if p.GetFrom() > 65535 || p.GetTo() > 65535 {
				return nil, fmt.Errorf("%s rule %d: port range %d-%d is beyond 65535", dir, i, p.GetFrom(), p.GetTo())
			}
			mr.Ports = append(mr.Ports, model.PortRange{From: uint16(p.GetFrom()), To: uint16(p.GetTo())})
		}
		out = append(out, mr)
	}
	return out, nil
}

// prefixesFromProto parses CIDR strings.
func prefixesFromProto(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, a := range ss {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return nil, fmt.Errorf("prefix %q: %w", a, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func prefixStrings(ps []netip.Prefix) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

func routingFromProto(r *apiv1.Routing) *model.Routing {
	if r == nil {
		return nil
	}
	out := &model.Routing{
		RoutesInstalled: r.GetRoutesInstalled(),
		InstallFailures: r.GetInstallFailures(),
		FailedRoutes:    slices.Clone(r.GetFailedRoutes()),
		EVPNExported:    r.GetEvpnExported(),
		EVPNImported:    r.GetEvpnImported(),
	}
	for _, s := range r.GetSessions() {
		out.Sessions = append(out.Sessions, model.BGPSession{
			Peer: s.GetPeer(), VRF: s.GetVrf(), Description: s.GetDescription(), Address: s.GetAddress(),
			ASN: s.GetAsn(), State: s.GetState(), Uptime: s.GetUptime().AsDuration(),
			Received: s.GetReceived(), Accepted: s.GetAccepted(), Rejected: s.GetRejected(), Installed: s.GetInstalled(),
		})
	}
	return out
}

func routingToProto(r *model.Routing) *apiv1.Routing {
	if r == nil {
		return nil
	}
	out := &apiv1.Routing{
		RoutesInstalled: r.RoutesInstalled,
		InstallFailures: r.InstallFailures,
		FailedRoutes:    slices.Clone(r.FailedRoutes),
		EvpnExported:    r.EVPNExported,
		EvpnImported:    r.EVPNImported,
	}
	for _, s := range r.Sessions {
		out.Sessions = append(out.Sessions, &apiv1.BgpSession{
			Peer: s.Peer, Vrf: s.VRF, Description: s.Description, Address: s.Address,
			Asn: s.ASN, State: s.State, Uptime: durationpb.New(s.Uptime),
			Received: s.Received, Accepted: s.Accepted, Rejected: s.Rejected, Installed: s.Installed,
		})
	}
	return out
}

func networkToProto(n inventory.NetworkInfo) *apiv1.Network {
	return &apiv1.Network{Name: n.Name, Prefix: n.Prefix.String(), Vni: n.VNI, Allocated: uint32(n.Allocated), Capacity: ipam.Capacity(n.Prefix), Parent: n.Parent, External: n.External}
}

func connectionsFromProto(cs []*apiv1.Connection) []model.Connection {
	out := make([]model.Connection, 0, len(cs))
	for _, c := range cs {
		out = append(out, model.Connection{Device: c.GetDevice(), Port: c.GetPort()})
	}
	return out
}

func machineToProto(m model.Machine, live model.Liveness) *apiv1.Machine {
	out := &apiv1.Machine{Name: m.Name, Manual: m.Manual, ChassisId: m.ChassisID, Liveness: livenessToProto(live)}
	for _, c := range m.Connections {
		out.Connections = append(out.Connections, &apiv1.Connection{Device: c.Device, Port: c.Port})
	}
	for _, c := range m.Learned {
		out.Learned = append(out.Learned, &apiv1.Connection{Device: c.Device, Port: c.Port})
	}
	if !m.LastSeen.IsZero() {
		out.LastSeen = timestamppb.New(m.LastSeen)
	}
	if a := m.Allocation; a != nil {
		out.Allocation = &apiv1.Allocation{Network: a.Network, Ip: a.IP.String(), Revision: a.Revision, Announce: prefixStrings(a.Announce)}
	}
	return out
}

func deviceToProto(d inventory.DeviceInfo, connected bool) *apiv1.Device {
	out := &apiv1.Device{
		Hostname:       d.Hostname,
		Role:           roleToProto(d.Role),
		ChassisMac:     d.ChassisMAC,
		Ports:          portsToProto(d.Ports),
		DesiredVersion: d.DesiredVersion,
		AppliedVersion: d.AppliedVersion,
		Errors:         stepErrorsToProto(d.Errors),
		Connected:      connected,
		Asn:            d.ASN,
		Neighbors:      neighborsToProto(d.Neighbors),
		Routing:        routingToProto(d.Routing),
	}
	if d.Drift != (model.Drift{}) {
		out.Drift = &apiv1.Drift{Repairs: d.Drift.Repairs, UnmanagedChanges: d.Drift.UnmanagedChanges, LastUnmanaged: d.Drift.LastUnmanaged}
	}
	if d.Loopback.IsValid() {
		out.Loopback = netip.PrefixFrom(d.Loopback, d.Loopback.BitLen()).String()
	}
	if !d.LastSeen.IsZero() {
		out.LastSeen = timestamppb.New(d.LastSeen)
	}
	return out
}

func convergenceToProto(c model.Convergence) *apiv1.Convergence {
	out := &apiv1.Convergence{Machine: c.Machine, Revision: c.Revision, Converged: c.Converged}
	for _, d := range c.Devices {
		out.Devices = append(out.Devices, &apiv1.DeviceConvergence{
			Hostname:        d.Hostname,
			RequiredVersion: d.RequiredVersion,
			AppliedVersion:  d.AppliedVersion,
			Converged:       d.Converged,
			Errors:          stepErrorsToProto(d.Errors),
		})
	}
	return out
}

func registerToModel(req *apiv1.RegisterRequest) model.Device {
	return model.Device{
		Hostname:   req.GetHostname(),
		Role:       roleFromProto(req.GetRole()),
		ChassisMAC: req.GetChassisMac(),
		Ports:      portsFromProto(req.GetPorts()),
	}
}

func livenessToProto(l model.Liveness) apiv1.Liveness {
	switch l {
	case model.LivenessAlive:
		return apiv1.Liveness_LIVENESS_ALIVE
	case model.LivenessUnknown:
		return apiv1.Liveness_LIVENESS_UNKNOWN
	case model.LivenessDead:
		return apiv1.Liveness_LIVENESS_DEAD
	}
	return apiv1.Liveness_LIVENESS_UNSPECIFIED
}

func neighborsFromProto(ns []*apiv1.Neighbor) []model.Neighbor {
	out := make([]model.Neighbor, 0, len(ns))
	for _, n := range ns {
		m := model.Neighbor{
			Port:              n.GetPort(),
			ChassisID:         n.GetChassisId(),
			PortID:            n.GetPortId(),
			PortDescription:   n.GetPortDescription(),
			SystemName:        n.GetSystemName(),
			SystemDescription: n.GetSystemDescription(),
			MgmtAddrs:         append([]string(nil), n.GetMgmtAddrs()...),
			TTLSeconds:        n.GetTtlSeconds(),
		}
		if ts := n.GetLastSeen(); ts != nil {
			m.LastSeen = ts.AsTime()
		}
		out = append(out, m)
	}
	return out
}

func neighborsToProto(ns []model.Neighbor) []*apiv1.Neighbor {
	var out []*apiv1.Neighbor
	for _, n := range ns {
		p := &apiv1.Neighbor{
			Port:              n.Port,
			ChassisId:         n.ChassisID,
			PortId:            n.PortID,
			PortDescription:   n.PortDescription,
			SystemName:        n.SystemName,
			SystemDescription: n.SystemDescription,
			MgmtAddrs:         append([]string(nil), n.MgmtAddrs...),
			TtlSeconds:        n.TTLSeconds,
		}
		if !n.LastSeen.IsZero() {
			p.LastSeen = timestamppb.New(n.LastSeen)
		}
		out = append(out, p)
	}
	return out
}

func plannedPortsFromProto(ps []*apiv1.PlannedPort) []model.PlannedPort {
	out := make([]model.PlannedPort, 0, len(ps))
	for _, p := range ps {
		out = append(out, model.PlannedPort{Port: p.GetPort(), Neighbor: p.GetNeighbor()})
	}
	return out
}

func planToProto(p model.CablingPlan) *apiv1.CablingPlan {
	out := &apiv1.CablingPlan{Device: p.Device}
	for _, pp := range p.Ports {
		out.Ports = append(out.Ports, &apiv1.PlannedPort{Port: pp.Port, Neighbor: pp.Neighbor})
	}
	return out
}
