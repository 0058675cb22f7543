package nft

import (
	"reflect"
	"slices"
)

// The fast path for small changes to big policies: when the new policy
// differs from the last applied one only in rules' CIDRs or ports (same
// rules otherwise, same tenants), only those rules' sets are rebuilt and
// diffed; nothing else is translated. A change of one entry among 50k
// costs a comparison of the two policies plus the work for one rule.

// setChange is the new contents of one set and the items to delete and add.
type setChange struct {
	spec     *setSpec
	items    []item
	del, add []item
}

// rulesDelta compares two policies. ok is false when they differ in more
// than rules' CIDRs and ports; then the whole policy must be translated.
func rulesDelta(old, new Policy, sets map[string]*setSpec) (changes []setChange, ok bool) {
	if len(old.Input) != len(new.Input) || len(old.Tenants) != len(new.Tenants) {
		return nil, false
	}
	for i := range new.Input {
		if changes, ok = ruleDelta(changes, inputSetBase(i), old.Input[i], new.Input[i], sets); !ok {
			return nil, false
		}
	}
	for ti := range new.Tenants {
		a, b := &old.Tenants[ti], &new.Tenants[ti]
		if a.Name != b.Name || !slices.Equal(a.Interfaces, b.Interfaces) || !slices.Equal(a.Prefixes, b.Prefixes) ||
			a.RateLimit != b.RateLimit || !reflect.DeepEqual(a.NAT, b.NAT) ||
			len(a.Egress) != len(b.Egress) || len(a.Ingress) != len(b.Ingress) {
			return nil, false
		}
		for i := range b.Egress {
			if changes, ok = ruleDelta(changes, ruleSetBase(b.Name, ChainEgress, i), a.Egress[i], b.Egress[i], sets); !ok {
				return nil, false
			}
		}
		for i := range b.Ingress {
			if changes, ok = ruleDelta(changes, ruleSetBase(b.Name, ChainIngress, i), a.Ingress[i], b.Ingress[i], sets); !ok {
				return nil, false
			}
		}
	}
	return changes, true
}

func ruleDelta(changes []setChange, base string, a, b Rule, sets map[string]*setSpec) ([]setChange, bool) {
	if a.Action != b.Action || a.Protocol != b.Protocol || a.Comment != b.Comment ||
		(len(a.CIDRs) > 0) != (len(b.CIDRs) > 0) || (len(a.Ports) > 0) != (len(b.Ports) > 0) {
		return nil, false
	}
	if len(b.CIDRs) > 0 && !slices.Equal(a.CIDRs, b.CIDRs) {
		v6 := b.CIDRs[0].Addr().Is6()
		if a.CIDRs[0].Addr().Is6() != v6 {
			return nil, false
		}
		spec := sets[netSet(base, v6)]
		if spec == nil {
			return nil, false
		}
		changes = appendChange(changes, spec, cidrItems(b.CIDRs))
	}
	if len(b.Ports) > 0 && !slices.Equal(a.Ports, b.Ports) {
		spec := sets[portSet(base)]
		if spec == nil {
			return nil, false
		}
		changes = appendChange(changes, spec, portItems(b.Ports))
	}
	return changes, true
}

func appendChange(changes []setChange, spec *setSpec, items []item) []setChange {
	del, add := diffItems(spec.items, items)
	if len(del) == 0 && len(add) == 0 {
		return changes
	}
	return append(changes, setChange{spec: spec, items: items, del: del, add: add})
}

// clonePolicy deep-copies the slices of a policy, so that the caller may
// change its policy after Apply without changing what Apply remembers.
func clonePolicy(p Policy) Policy {
	cloneRules := func(rs []Rule) []Rule {
		out := slices.Clone(rs)
		for i := range out {
			out[i].CIDRs = slices.Clone(out[i].CIDRs)
			out[i].Ports = slices.Clone(out[i].Ports)
		}
		return out
	}
	out := Policy{Input: cloneRules(p.Input), Tenants: slices.Clone(p.Tenants)}
	for i := range out.Tenants {
		t := &out.Tenants[i]
		t.Interfaces = slices.Clone(t.Interfaces)
		t.Prefixes = slices.Clone(t.Prefixes)
		t.Egress = cloneRules(t.Egress)
		t.Ingress = cloneRules(t.Ingress)
		t.NAT.EgressIPs = slices.Clone(t.NAT.EgressIPs)
		t.NAT.Interfaces = slices.Clone(t.NAT.Interfaces)
	}
	return out
}
