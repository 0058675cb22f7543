package agent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/fabric"
	"github.com/metalfabric/fabric/nft"
)

// The firewall role (--role firewall). The controller gives a firewall a
// VRF with an L3VNI for every tenant network it serves (the networks with
// a firewall policy) and for the external (internet) network, plus the
// policies. After the fabric reconciler and routing, the agent
//
//   - applies the policies with nftables (package nft, table inet fabric):
//     per tenant its egress and ingress rules and source NAT to its egress
//     IPs on the way into the external VRF (matched on the external L3VNI's
//     SVI: for a route leaked via a VRF device, the nat postrouting hook
//     sees the device the packet finally leaves through, not the VRF); the firewall's own BGP
//     (tcp 179) and VXLAN (udp 4789) accepted on input; forwarding between
//     underlay ports (the firewall is an ECMP path of the underlay too)
//     accepted;
//   - leaks routes between the VRFs in the kernel (LeakProtocol): a default
//     route in each tenant VRF's table into the external VRF, and the
//     tenant's prefix in the external VRF's table back into the tenant VRF
//     (for the replies, once conntrack has undone the NAT);
//   - originates over EVPN (routingFromProto, bgp.TenantVRF.Originate) the
//     default route into each tenant VNI and the tenants' egress IPs and
//     public prefixes into the external VNI, never the tenants' private
//     prefixes; a public prefix is also leaked from the external VRF into
//     the tenant VRF (its machines announce it to the leaves), so traffic
//     to it passes the tenant's ingress rules.

// LeakProtocol is the rtm_protocol of the route-leaking routes the
// firewall role installs (bgp/fib's Protocol, 200, is the FIB programmer's,
// which removes every route of its protocol it did not install itself).
// Only routes of this protocol are ever changed or deleted by the leaker.
const LeakProtocol = 201

// underlayTenant names the nft pseudo-tenant that accepts forwarding
// between underlay ports. Network names cannot start with '_'.
const underlayTenant = "_underlay"

// PolicyApplier programs a firewall policy (package nft's Firewall).
type PolicyApplier interface {
	Apply(ctx context.Context, p nft.Policy) (nft.ApplyResult, error)
}

// Leaker makes the kernel hold exactly the given leak routes of
// LeakProtocol.
type Leaker interface {
	Sync(ctx context.Context, routes []LeakRoute) error
}

// LeakRoute is a route in one VRF's table pointing into another VRF (its
// device as the route's only next hop).
type LeakRoute struct {
	Table  uint32
	Prefix netip.Prefix
	// Dev is the VRF device the route points into.
	Dev string
}

func (r LeakRoute) String() string {
	return fmt.Sprintf("%s dev %s table %d", r.Prefix, r.Dev, r.Table)
}

// WithFirewall turns the firewall role on: the policy applier and the
// route leaker run after routing on every snapshot. Leaker nil: the
// kernel leaker (NewKernelLeaker).
func WithFirewall(p PolicyApplier, l Leaker) Option {
	return func(a *Agent) {
		if l == nil {
			l = NewKernelLeaker()
		}
		a.fwPolicy, a.fwLeaker = p, l
	}
}

// firewallPlan is what a snapshot asks of the firewall role.
type firewallPlan struct {
	policy nft.Policy
	leaks  []LeakRoute
	// originate are the type-5 originations by VRF name.
	originate map[string][]netip.Prefix
	// problems are parts of the config the firewall cannot serve (the rest
	// is applied).
	problems []fabric.StepError
}

// planFirewall derives the firewall role's work from a snapshot and the
// kernel state the fabric reconciler reached (the external L3VNI's SVI). It
// is pure. A snapshot without firewall policies and without an external
// VRF (any leaf's or spine's) gives an empty plan.
func planFirewall(cfg *apiv1.DeviceConfig, state fabric.Actual) (firewallPlan, error) {
	plan := firewallPlan{originate: make(map[string][]netip.Prefix)}
	vrfs := make(map[string]*apiv1.Vrf)
	var ext *apiv1.Vrf
	for _, v := range cfg.GetVrfs() {
		name := vrfName(v)
		vrfs[name] = v
		if v.GetExternal() && ext == nil {
			ext = v
		}
	}
	// The firewall's own traffic: BGP sessions (underlay, both families)
	// and VXLAN to its VTEP.
	plan.policy.Input = []nft.Rule{
		{Action: nft.Accept, Protocol: nft.ProtoTCP, Ports: []nft.PortRange{{From: 179, To: 179}}, Comment: "BGP"},
		{Action: nft.Accept, Protocol: nft.ProtoUDP, Ports: []nft.PortRange{{From: 4789, To: 4789}}, Comment: "VXLAN"},
	}
	var underlay []string
	for _, u := range cfg.GetUnderlay() {
		underlay = append(underlay, u.GetPort())
	}
	if len(underlay) > 0 {
		slices.Sort(underlay)
		plan.policy.Tenants = append(plan.policy.Tenants, nft.Tenant{
			Name: underlayTenant, Interfaces: slices.Compact(underlay),
			Egress:  []nft.Rule{{Action: nft.Accept, Comment: "underlay transit"}},
			Ingress: []nft.Rule{{Action: nft.Accept, Comment: "underlay transit"}},
		})
	}
	var egressIPs, public []netip.Prefix
	for _, ft := range cfg.GetFirewall() {
		pol := ft.GetPolicy()
		name := pol.GetNetwork()
		prefix, err := netip.ParsePrefix(ft.GetPrefix())
		if err != nil {
			return firewallPlan{}, fmt.Errorf("firewall tenant %s: prefix %q: %w", name, ft.GetPrefix(), err)
		}
		t := nft.Tenant{Name: name, Prefixes: []netip.Prefix{prefix.Masked()}}
		v := vrfs[ft.GetVrf()]
		if v != nil && !v.GetExternal() {
			t.Interfaces = []string{ft.GetVrf()}
		}
		if t.Egress, err = rulesFromProto(pol.GetEgress()); err != nil {
			return firewallPlan{}, fmt.Errorf("firewall tenant %s: egress: %w", name, err)
		}
		if t.Ingress, err = rulesFromProto(pol.GetIngress()); err != nil {
			return firewallPlan{}, fmt.Errorf("firewall tenant %s: ingress: %w", name, err)
		}
		var ips []netip.Addr
		for _, s := range pol.GetEgressIps() {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return firewallPlan{}, fmt.Errorf("firewall tenant %s: egress IP %q: %w", name, s, err)
			}
			ips = append(ips, a)
		}
		if pol.GetNat() {
			t.NAT = nft.NAT{Mode: nft.NATSNAT, EgressIPs: ips}
			if len(ips) == 0 {
				// Masquerade would take the address of the external VRF's
				// device, which has none.
				t.NAT.Mode = nft.NATMasquerade
				plan.problems = append(plan.problems, fabric.StepError{Step: "plan tenant " + name,
					Err: fmt.Errorf("NAT without egress IPs: the firewall has no address of its own to translate to; set egress IPs from the external network")})
			}
			if ext != nil {
				t.NAT.Interfaces = []string{vrfName(ext)}
				if vlan, ok := state.L3VNIVLAN(ext.GetVni()); ok {
					t.NAT.Interfaces = append(t.NAT.Interfaces, fabric.SVIName(vlan))
				} else {
					plan.problems = append(plan.problems, fabric.StepError{Step: "plan tenant " + name,
						Err: fmt.Errorf("the external VRF %s has no L3VNI in the kernel yet: NAT only matches traffic leaving through it", vrfName(ext))})
				}
				for _, a := range ips {
					egressIPs = append(egressIPs, netip.PrefixFrom(a, a.BitLen()))
				}
			}
		}
		plan.policy.Tenants = append(plan.policy.Tenants, t)
		if ext == nil || v == nil || v.GetExternal() {
			continue
		}
		// Route leaking: the tenant's default route into the external VRF,
		// the tenant's prefix (replies, after un-NAT) back.
		def := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if prefix.Addr().Is6() {
			def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		plan.leaks = append(plan.leaks,
			LeakRoute{Table: v.GetTable(), Prefix: def, Dev: vrfName(ext)},
			LeakRoute{Table: ext.GetTable(), Prefix: prefix.Masked(), Dev: ft.GetVrf()})
		plan.originate[ft.GetVrf()] = append(plan.originate[ft.GetVrf()], def)
		// Public prefixes: routed from the external VRF into the tenant
		// (the forward chain sends that traffic through the tenant's
		// ingress rules by its output interface) and announced into the
		// external VNI.
		for _, s := range pol.GetPublicPrefixes() {
			pf, err := netip.ParsePrefix(s)
			if err != nil {
				return firewallPlan{}, fmt.Errorf("firewall tenant %s: public prefix %q: %w", name, s, err)
			}
			plan.leaks = append(plan.leaks, LeakRoute{Table: ext.GetTable(), Prefix: pf.Masked(), Dev: ft.GetVrf()})
			public = append(public, pf.Masked())
		}
	}
	if ext != nil && len(egressIPs)+len(public) > 0 {
		plan.originate[vrfName(ext)] = append(egressIPs, public...)
	}
	for k, ps := range plan.originate {
		slices.SortFunc(ps, netip.Prefix.Compare)
		plan.originate[k] = slices.Compact(ps)
	}
	return plan, nil
}

func vrfName(v *apiv1.Vrf) string {
	if v.GetName() == "" && v.GetVni() != 0 {
		return fmt.Sprintf("vrf%d", v.GetVni())
	}
	return v.GetName()
}

func rulesFromProto(rs []*apiv1.FirewallRule) ([]nft.Rule, error) {
	var out []nft.Rule
	for i, r := range rs {
		nr := nft.Rule{Action: nft.Action(r.GetAction()), Protocol: nft.Protocol(r.GetProtocol()), Comment: r.GetComment()}
		for _, c := range r.GetCidrs() {
			p, err := netip.ParsePrefix(c)
			if err != nil {
				return nil, fmt.Errorf("rule %d: CIDR %q: %w", i, c, err)
			}
			nr.CIDRs = append(nr.CIDRs, p)
		}
		for _, pr := range r.GetPorts() {
			if pr.GetFrom() > 65535 || pr.GetTo() > 65535 {
				return nil, fmt.Errorf("rule %d: port range %d-%d out of range", i, pr.GetFrom(), pr.GetTo())
			}
			nr.Ports = append(nr.Ports, nft.PortRange{From: uint16(pr.GetFrom()), To: uint16(pr.GetTo())})
		}
		out = append(out, nr)
	}
	return out, nil
}

// firewallErrorsToProto reports the firewall role's steps under their own
// names ("nft: ...", "leak: ...").
func firewallErrorsToProto(errs []fabric.StepError) []*apiv1.StepError {
	out := make([]*apiv1.StepError, 0, len(errs))
	for _, e := range errs {
		out = append(out, &apiv1.StepError{Step: e.Step, Message: e.Err.Error()})
	}
	return out
}

// applyFirewall runs the firewall role for a snapshot: the nft policy,
// then the route leaks. Failures come back as steps "nft: ..." and
// "leak: ...".
func (a *Agent) applyFirewall(ctx context.Context, cfg *apiv1.DeviceConfig, state fabric.Actual) []fabric.StepError {
	if a.fwPolicy == nil {
		return nil
	}
	plan, err := planFirewall(cfg, state)
	if err != nil {
		return []fabric.StepError{{Step: "nft: convert policy", Err: err}}
	}
	var out []fabric.StepError
	for _, p := range plan.problems {
		out = append(out, fabric.StepError{Step: "nft: " + p.Step, Err: p.Err})
	}
	res, err := a.fwPolicy.Apply(ctx, plan.policy)
	if err != nil {
		out = append(out, fabric.StepError{Step: "nft: apply policy", Err: err})
	} else {
		a.log.Info("firewall policy applied", "tenants", len(plan.policy.Tenants), "full", res.Full, "rules", res.Rules, "added", res.Added, "deleted", res.Deleted)
	}
	if err := a.fwLeaker.Sync(ctx, plan.leaks); err != nil {
		for _, e := range unjoin(err) {
			out = append(out, fabric.StepError{Step: "leak: sync routes", Err: e})
		}
	}
	return out
}
