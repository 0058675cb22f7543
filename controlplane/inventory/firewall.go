package inventory

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/metalfabric/fabric/controlplane/model"
	"github.com/metalfabric/fabric/controlplane/store"
)

// bucketFirewalls holds the firewall policy of each tenant network that
// has one, keyed by network name.
const bucketFirewalls = "firewalls"

// Limits of a firewall policy.
const (
	maxFirewallRules   = 10_000  // per direction
	maxFirewallEntries = 200_000 // CIDRs and port ranges of one policy
	maxRuleComment     = 128     // nft's comment limit
	maxEgressIPs       = 256
)

// SetFirewallPolicy sets (replaces) the firewall policy of a tenant
// network and recompiles every firewall's config. A policy without rules
// and without NAT removes the network's policy.
func (inv *Inventory) SetFirewallPolicy(ctx context.Context, p model.FirewallPolicy) (model.FirewallPolicy, error) {
	if err := validName("network", p.Network); err != nil {
		return model.FirewallPolicy{}, fmt.Errorf("setting firewall policy: %w", err)
	}
	if err := validFirewallPolicy(p); err != nil {
		return model.FirewallPolicy{}, fmt.Errorf("setting firewall policy of network %s: %w", p.Network, err)
	}
	_, err := inv.mutate(ctx, func(t txn, _ uint64) error {
		n, err := t.network(p.Network)
		if err != nil {
			return err
		}
		for _, pf := range p.Public {
			if n.Prefix.Overlaps(pf) {
				return errorf(ErrInvalid, "public prefix %s overlaps the network's own prefix %s", pf, n.Prefix)
			}
		}
		for _, a := range p.EgressIPs {
			if a.Is6() != n.Prefix.Addr().Is6() {
				return errorf(ErrInvalid, "egress IP %s is not of the address family of the network's prefix %s", a, n.Prefix)
			}
		}
		if err := t.touchFirewalls(); err != nil {
			return err
		}
		if len(p.Ingress) == 0 && len(p.Egress) == 0 && !p.NAT && len(p.Public) == 0 {
			return t.tx.Delete(bucketFirewalls, p.Network)
		}
		return t.put(bucketFirewalls, p.Network, p)
	})
	if err != nil {
		return model.FirewallPolicy{}, fmt.Errorf("setting firewall policy of network %s: %w", p.Network, err)
	}
	inv.log.Info("firewall policy set", "network", p.Network, "ingress", len(p.Ingress), "egress", len(p.Egress), "nat", p.NAT)
	return p, nil
}

// FirewallPolicy returns a network's firewall policy; a network without
// one has an empty policy.
func (inv *Inventory) FirewallPolicy(ctx context.Context, network string) (model.FirewallPolicy, error) {
	if err := validName("network", network); err != nil {
		return model.FirewallPolicy{}, fmt.Errorf("reading firewall policy: %w", err)
	}
	p := model.FirewallPolicy{Network: network}
	err := inv.st.View(ctx, func(tx store.Tx) error {
		t := txn{tx: tx}
		if _, err := t.network(network); err != nil {
			return err
		}
		err := t.get(bucketFirewalls, network, &p)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return model.FirewallPolicy{}, fmt.Errorf("reading firewall policy of network %s: %w", network, err)
	}
	return p, nil
}

// touchFirewalls marks every firewall device for recompilation.
func (t txn) touchFirewalls() error {
	devs, err := list[model.Device](t, bucketDevices)
	if err != nil {
		return err
	}
	for _, d := range devs {
		if d.Role == model.RoleFirewall {
			t.touch(d.Hostname)
		}
	}
	return nil
}

// firewallInput reads what a firewall's config needs: every policy, the
// networks they belong to, and every external network.
func (t txn) firewallInput() ([]model.FirewallPolicy, map[string]model.Network, error) {
	pols, err := list[model.FirewallPolicy](t, bucketFirewalls)
	if err != nil {
		return nil, nil, err
	}
	nets := make(map[string]model.Network, len(pols))
	for _, p := range pols {
		n, err := t.network(p.Network)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		nets[n.Name] = n
	}
	all, err := list[model.Network](t, bucketNetworks)
	if err != nil {
		return nil, nil, err
	}
	for _, n := range all {
		if n.External {
			nets[n.Name] = n
		}
	}
	return pols, nets, nil
}

// validFirewallPolicy checks what can be checked without the store.
func validFirewallPolicy(p model.FirewallPolicy) error {
	entries := 0
	for _, dir := range []struct {
		name  string
		rules []model.FirewallRule
	}{{"ingress", p.Ingress}, {"egress", p.Egress}} {
		if len(dir.rules) > maxFirewallRules {
			return errorf(ErrInvalid, "%d %s rules: at most %d", len(dir.rules), dir.name, maxFirewallRules)
		}
		for i, r := range dir.rules {
			if err := validFirewallRule(r); err != nil {
				return fmt.Errorf("%s rule %d: %w", dir.name, i, err)
			}
			entries += len(r.CIDRs) + len(r.Ports)
		}
	}
	if entries > maxFirewallEntries {
		return errorf(ErrInvalid, "%d CIDRs and port ranges: at most %d per policy", entries, maxFirewallEntries)
	}
	if len(p.EgressIPs) > 0 && !p.NAT {
		return errorf(ErrInvalid, "egress IPs are given but NAT is off")
	}
	if len(p.EgressIPs) > maxEgressIPs {
		return errorf(ErrInvalid, "%d egress IPs: at most %d", len(p.EgressIPs), maxEgressIPs)
	}
	if len(p.Public) > maxEgressIPs {
		return errorf(ErrInvalid, "%d public prefixes: at most %d", len(p.Public), maxEgressIPs)
	}
	for _, pf := range p.Public {
		if !pf.IsValid() || pf.Addr().Zone() != "" || pf.Addr().Is4In6() || pf != pf.Masked() {
			return errorf(ErrInvalid, "public prefix %v is not a canonical IPv4 or IPv6 prefix", pf)
		}
	}
	seen := make(map[netip.Addr]bool)
	for _, a := range p.EgressIPs {
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			return errorf(ErrInvalid, "egress IP %q is not a plain IPv4 or IPv6 address", a)
		}
		if seen[a] {
			return errorf(ErrInvalid, "egress IP %s is listed twice", a)
		}
		seen[a] = true
	}
	return nil
}

func validFirewallRule(r model.FirewallRule) error {
	switch r.Action {
	case "accept", "drop":
	case "":
		return errorf(ErrInvalid, "action is missing: want accept or drop")
	default:
		return errorf(ErrInvalid, "action %q is not accept or drop", r.Action)
	}
	switch r.Protocol {
	case "", "any", "tcp", "udp", "icmp":
	default:
		return errorf(ErrInvalid, "protocol %q is not one of tcp, udp, icmp, any", r.Protocol)
	}
	if len(r.Comment) > maxRuleComment {
		return errorf(ErrInvalid, "comment is %d bytes long: at most %d", len(r.Comment), maxRuleComment)
	}
	if strings.ContainsAny(r.Comment, "\"\x00\n") {
		return errorf(ErrInvalid, "comment contains a double quote, NUL or newline")
	}
	for i, c := range r.CIDRs {
		if !c.IsValid() {
			return errorf(ErrInvalid, "CIDR %q is not valid", c)
		}
		if c.Addr().Is4In6() || c.Addr().Zone() != "" {
			return errorf(ErrInvalid, "CIDR %s: write IPv4 as IPv4, without a zone", c)
		}
		if c != c.Masked() {
			return errorf(ErrInvalid, "CIDR %s has host bits set (did you mean %s?)", c, c.Masked())
		}
		if i > 0 && c.Addr().Is6() != r.CIDRs[0].Addr().Is6() {
			return errorf(ErrInvalid, "mixes IPv4 and IPv6 CIDRs (%s and %s): use one rule per address family", r.CIDRs[0], c)
		}
	}
	if len(r.Ports) > 0 && r.Protocol != "tcp" && r.Protocol != "udp" {
		proto := r.Protocol
		if proto == "" {
			proto = "any"
		}
		return errorf(ErrInvalid, "ports need protocol tcp or udp, not %s", proto)
	}
	for _, pr := range r.Ports {
		if pr.From == 0 || pr.From > pr.To {
			return errorf(ErrInvalid, "port range %d-%d is invalid: want 1 <= from <= to <= 65535", pr.From, pr.To)
		}
	}
	return nil
}
