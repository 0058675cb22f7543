package nft

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The translation is pure: a Policy becomes a ruleset, our own description
// of the table's contents in nftables terms (chains, sets with their
// elements, rules as google/nftables expressions, counter names). apply.go
// turns it into one netlink batch.

// ruleset is the desired contents of the table.
type ruleset struct {
	counters []string
	chains   []chainSpec
	sets     []*setSpec
	rules    []ruleSpec
}

type chainSpec struct {
	name string
	// Base chains only.
	hook     *nftables.ChainHook
	priority *nftables.ChainPriority
	typ      nftables.ChainType
	policy   *nftables.ChainPolicy
}

// setSpec is a named set or map. For interval sets each item is one
// interval; for the others, one element.
type setSpec struct {
	name      string
	keyType   nftables.SetDatatype
	dataType  nftables.SetDatatype // TypeInvalid for a plain set
	isMap     bool
	interval  bool
	byteOrder binaryutil.ByteOrder // nil: big endian
	items     []item
}

// item is one set entry: a key (or interval [start, end) when end is not
// nil; an interval reaching the top of the key space has a nil end and
// open true) and, in maps, a value or verdict.
type item struct {
	start   []byte
	end     []byte
	val     []byte
	verdict *expr.Verdict
}

// id identifies an item for diffs: key, interval end and value. (Key and
// end have the set's fixed key length, so the concatenation is
// unambiguous.)
func (it item) id() string {
	b := make([]byte, 0, len(it.start)+len(it.end)+len(it.val)+8)
	b = append(b, it.start...)
	b = append(b, '|')
	b = append(b, it.end...)
	b = append(b, '|')
	b = append(b, it.val...)
	if it.verdict != nil {
		b = fmt.Appendf(b, "|%d:%s", it.verdict.Kind, it.verdict.Chain)
	}
	return string(b)
}

type ruleSpec struct {
	chain   string
	exprs   []expr.Any
	comment string
}

// Chain and set names. Tenant names cannot contain '/', so "<tenant>/..."
// names never collide with each other or with the global ones.
const (
	chainInput       = "input"
	chainForward     = "forward"
	chainPostrouting = "postrouting"
	setFromIface     = "from/iface"
	setToIface       = "to/iface"
)

func tenantChain(t, dir string) string { return t + "/" + dir }

// inputSetBase and ruleSetBase prefix the names of a rule's sets.
func inputSetBase(i int) string               { return "input/" + strconv.Itoa(i) }
func ruleSetBase(t, dir string, i int) string { return tenantChain(t, dir) + "/" + strconv.Itoa(i) }
func fromNetSet(v6 bool) string               { return "from/net" + famSuffix(v6) }
func toNetSet(v6 bool) string                 { return "to/net" + famSuffix(v6) }
func srcSet(t string, v6 bool) string         { return t + "/src" + famSuffix(v6) }
func snatMap(t string, v6 bool) string {
	return t + "/snat" + famSuffix(v6)
}
func famSuffix(v6 bool) string {
	if v6 {
		return "6"
	}
	return "4"
}

// translate turns a validated policy into a ruleset.
func translate(p Policy) *ruleset {
	rs := &ruleset{}
	drop, accept := nftables.ChainPolicyDrop, nftables.ChainPolicyAccept
	rs.chains = append(rs.chains,
		chainSpec{name: chainInput, hook: nftables.ChainHookInput, priority: nftables.ChainPriorityFilter, typ: nftables.ChainTypeFilter, policy: &drop},
		chainSpec{name: chainForward, hook: nftables.ChainHookForward, priority: nftables.ChainPriorityFilter, typ: nftables.ChainTypeFilter, policy: &drop},
	)
	if slices.ContainsFunc(p.Tenants, func(t Tenant) bool { return natOn(t.NAT.Mode) }) {
		rs.chains = append(rs.chains, chainSpec{name: chainPostrouting, hook: nftables.ChainHookPostrouting,
			priority: nftables.ChainPriorityNATSource, typ: nftables.ChainTypeNAT, policy: &accept})
	}

	// input: loopback, established/related, invalid, ICMPv6 (neighbour
	// discovery, PMTU), the input rules, drop.
	inAcc := CounterName{Chain: ChainInput, Kind: KindAccepted}.String()
	inDrop := CounterName{Chain: ChainInput, Kind: KindDropped}.String()
	rs.counters = append(rs.counters, inAcc, inDrop)
	rs.rule(chainInput, "", cat(ifname(expr.MetaKeyIIFNAME, "lo"), verdict(expr.VerdictAccept)))
	rs.rule(chainInput, "", cat(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), counter(inAcc), verdict(expr.VerdictAccept)))
	rs.rule(chainInput, "", cat(ctState(expr.CtStateBitINVALID), counter(inDrop), verdict(expr.VerdictDrop)))
	rs.rule(chainInput, "", cat(l4proto(unix.IPPROTO_ICMPV6), counter(inAcc), verdict(expr.VerdictAccept)))
	for i, r := range p.Input {
		name := CounterName{Chain: ChainInput, Kind: KindRule, Rule: i}
		rs.policyRule(chainInput, inputSetBase(i), r, srcField, name.String(), inAcc, inDrop)
	}
	rs.rule(chainInput, "", cat(counter(inDrop), verdict(expr.VerdictDrop)))

	// Tenant chains, and the dispatch maps that lead to them.
	// ifname keys are strings: host byte order for nft's listing.
	fromIface := &setSpec{name: setFromIface, keyType: nftables.TypeIFName, dataType: nftables.TypeVerdict, isMap: true, byteOrder: binaryutil.NativeEndian}
	toIface := &setSpec{name: setToIface, keyType: nftables.TypeIFName, dataType: nftables.TypeVerdict, isMap: true, byteOrder: binaryutil.NativeEndian}
	var fromNet, toNet [2]*setSpec
	for f, v6 := range []bool{false, true} {
		fromNet[f] = &setSpec{name: fromNetSet(v6), keyType: addrType(v6), dataType: nftables.TypeVerdict, isMap: true, interval: true}
		toNet[f] = &setSpec{name: toNetSet(v6), keyType: addrType(v6), dataType: nftables.TypeVerdict, isMap: true, interval: true}
	}
	var tenantSets []*setSpec
	for _, t := range p.Tenants {
		eg, in := tenantChain(t.Name, ChainEgress), tenantChain(t.Name, ChainIngress)
		rs.chains = append(rs.chains, chainSpec{name: eg}, chainSpec{name: in})
		for _, ifn := range t.Interfaces {
			fromIface.items = append(fromIface.items, item{start: ifnameKey(ifn), verdict: jump(eg)})
			toIface.items = append(toIface.items, item{start: ifnameKey(ifn), verdict: jump(in)})
		}
		for _, pf := range normalizePrefixes(t.Prefixes) {
			f := fam(pf.Addr().Is6())
			fromNet[f].items = append(fromNet[f].items, withVerdict(prefixItem(pf), jump(eg)))
			toNet[f].items = append(toNet[f].items, withVerdict(prefixItem(pf), jump(in)))
		}
		rs.tenantChain(t, ChainEgress, t.Egress, dstField)
		rs.tenantChain(t, ChainIngress, t.Ingress, srcField)
		tenantSets = append(tenantSets, rs.nat(t)...)
	}
	for _, s := range []*setSpec{fromIface, fromNet[0], fromNet[1], toIface, toNet[0], toNet[1]} {
		if len(s.items) == 0 {
			continue
		}
		sortItems(s.items)
		rs.sets = append(rs.sets, s)
	}
	rs.sets = append(rs.sets, tenantSets...)

	// forward: from a tenant -> its egress chain, to a tenant -> its
	// ingress chain (interfaces first, then prefixes), else only replies.
	if len(fromIface.items) > 0 {
		rs.rule(chainForward, "", cat(meta(expr.MetaKeyIIFNAME), vmap(setFromIface)))
	}
	for f, v6 := range []bool{false, true} {
		if len(fromNet[f].items) > 0 {
			rs.rule(chainForward, "", cat(nfproto(v6), addrField(v6, srcField), vmap(fromNetSet(v6))))
		}
	}
	if len(toIface.items) > 0 {
		rs.rule(chainForward, "", cat(meta(expr.MetaKeyOIFNAME), vmap(setToIface)))
	}
	for f, v6 := range []bool{false, true} {
		if len(toNet[f].items) > 0 {
			rs.rule(chainForward, "", cat(nfproto(v6), addrField(v6, dstField), vmap(toNetSet(v6))))
		}
	}
	fwdDrop := CounterName{Chain: ChainForward, Kind: KindDropped}.String()
	rs.counters = append(rs.counters, fwdDrop)
	rs.rule(chainForward, "", cat(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept)))
	rs.rule(chainForward, "", cat(counter(fwdDrop), verdict(expr.VerdictDrop)))
	return rs
}

func natOn(m NATMode) bool { return m == NATMasquerade || m == NATSNAT }

// tenantChain fills a tenant's egress or ingress chain: rate limit,
// established/related, invalid, the rules, drop.
func (rs *ruleset) tenantChain(t Tenant, dir string, rules []Rule, field addrSide) {
	chain := tenantChain(t.Name, dir)
	acc := CounterName{Tenant: t.Name, Chain: dir, Kind: KindAccepted}.String()
	drp := CounterName{Tenant: t.Name, Chain: dir, Kind: KindDropped}.String()
	rs.counters = append(rs.counters, acc, drp)
	if rl := t.RateLimit; rl.PacketsPerSecond > 0 || rl.BytesPerSecond > 0 {
		lim := CounterName{Tenant: t.Name, Chain: dir, Kind: KindRateLimited}.String()
		rs.counters = append(rs.counters, lim)
		l := &expr.Limit{Type: expr.LimitTypePkts, Rate: rl.PacketsPerSecond, Over: true, Unit: expr.LimitTimeSecond, Burst: rl.Burst}
		if rl.BytesPerSecond > 0 {
			l.Type, l.Rate = expr.LimitTypePktBytes, rl.BytesPerSecond
		}
		rs.rule(chain, "", cat([]expr.Any{l}, counter(lim), counter(drp), verdict(expr.VerdictDrop)))
	}
	rs.rule(chain, "", cat(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), counter(acc), verdict(expr.VerdictAccept)))
	rs.rule(chain, "", cat(ctState(expr.CtStateBitINVALID), counter(drp), verdict(expr.VerdictDrop)))
	for i, r := range rules {
		name := CounterName{Tenant: t.Name, Chain: dir, Kind: KindRule, Rule: i}.String()
		rs.policyRule(chain, ruleSetBase(t.Name, dir, i), r, field, name, acc, drp)
	}
	rs.rule(chain, "", cat(counter(drp), verdict(expr.VerdictDrop)))
}

// policyRule adds one policy rule: its CIDRs and ports go to sets named
// setBase/net4 (or net6) and setBase/ports; the rule counts into its own
// counter and the chain's accepted or dropped counter. A rule without
// CIDRs matches both families; ICMP then needs one nft rule per family.
func (rs *ruleset) policyRule(chain, setBase string, r Rule, field addrSide, ruleCounter, acc, drp string) {
	var tail []expr.Any
	if r.Action == Accept {
		tail = cat(counter(ruleCounter), counter(acc), verdict(expr.VerdictAccept))
	} else {
		tail = cat(counter(ruleCounter), counter(drp), verdict(expr.VerdictDrop))
	}
	rs.counters = append(rs.counters, ruleCounter)
	var ports []expr.Any
	if len(r.Ports) > 0 {
		s := &setSpec{name: portSet(setBase), keyType: nftables.TypeInetService, interval: true, items: portItems(r.Ports)}
		rs.sets = append(rs.sets, s)
		ports = cat(transportDport(), lookup(s.name))
	}
	proto := func(v6 bool) []expr.Any {
		switch r.Protocol {
		case ProtoTCP:
			return l4proto(unix.IPPROTO_TCP)
		case ProtoUDP:
			return l4proto(unix.IPPROTO_UDP)
		case ProtoICMP:
			if v6 {
				return l4proto(unix.IPPROTO_ICMPV6)
			}
			return l4proto(unix.IPPROTO_ICMP)
		}
		return nil
	}
	if len(r.CIDRs) == 0 {
		if r.Protocol == ProtoICMP {
			for _, v6 := range []bool{false, true} {
				rs.rule(chain, r.Comment, cat(nfproto(v6), proto(v6), tail))
			}
			return
		}
		rs.rule(chain, r.Comment, cat(proto(false), ports, tail))
		return
	}
	v6 := r.CIDRs[0].Addr().Is6()
	s := &setSpec{name: netSet(setBase, v6), keyType: addrType(v6), interval: true, items: cidrItems(r.CIDRs)}
	rs.sets = append(rs.sets, s)
	rs.rule(chain, r.Comment, cat(nfproto(v6), addrField(v6, field), lookup(s.name), proto(v6), ports, tail))
}

func portSet(setBase string) string         { return setBase + "/ports" }
func netSet(setBase string, v6 bool) string { return setBase + "/net" + famSuffix(v6) }

// portItems are the elements of a rule's port set.
func portItems(ports []PortRange) []item {
	var out []item
	for _, pr := range normalizePorts(ports) {
		it := item{start: binaryutil.BigEndian.PutUint16(pr.From)}
		if pr.To < 65535 {
			it.end = binaryutil.BigEndian.PutUint16(pr.To + 1)
		}
		out = append(out, it)
	}
	return out
}

// cidrItems are the elements of a rule's address set.
func cidrItems(cidrs []netip.Prefix) []item {
	norm := normalizePrefixes(cidrs)
	out := make([]item, len(norm))
	for i, pf := range norm {
		out[i] = prefixItem(pf)
	}
	return out
}

// nat adds a tenant's postrouting rules and returns their sets.
func (rs *ruleset) nat(t Tenant) []*setSpec {
	if !natOn(t.NAT.Mode) {
		return nil
	}
	var sets []*setSpec
	name := CounterName{Tenant: t.Name, Chain: ChainNAT, Kind: KindTranslated}.String()
	rs.counters = append(rs.counters, name)
	var oifs []expr.Any
	if len(t.NAT.Interfaces) > 0 {
		s := &setSpec{name: t.Name + "/nat/oifs", keyType: nftables.TypeIFName, byteOrder: binaryutil.NativeEndian}
		for _, ifn := range t.NAT.Interfaces {
			s.items = append(s.items, item{start: ifnameKey(ifn)})
		}
		sortItems(s.items)
		s.items = slices.CompactFunc(s.items, func(a, b item) bool { return a.id() == b.id() })
		sets = append(sets, s)
		oifs = cat(meta(expr.MetaKeyOIFNAME), lookup(s.name))
	}
	for _, v6 := range []bool{false, true} {
		var src []netip.Prefix
		for _, p := range normalizePrefixes(t.Prefixes) {
			if p.Addr().Is6() == v6 {
				src = append(src, p)
			}
		}
		var ips []netip.Addr
		for _, a := range t.NAT.EgressIPs {
			if a.Is6() == v6 {
				ips = append(ips, a)
			}
		}
		if len(src) == 0 || t.NAT.Mode == NATSNAT && len(ips) == 0 {
			continue
		}
		s := &setSpec{name: srcSet(t.Name, v6), keyType: addrType(v6), interval: true}
		for _, p := range src {
			s.items = append(s.items, prefixItem(p))
		}
		sets = append(sets, s)
		match := cat(nfproto(v6), addrField(v6, srcField), lookup(s.name), oifs, counter(name))
		nfp := uint32(unix.NFPROTO_IPV4)
		if v6 {
			nfp = unix.NFPROTO_IPV6
		}
		switch {
		case t.NAT.Mode == NATMasquerade:
			rs.rule(chainPostrouting, "", cat(match, []expr.Any{&expr.Masq{}}))
		case len(ips) == 1:
			rs.rule(chainPostrouting, "", cat(match, []expr.Any{
				&expr.Immediate{Register: 1, Data: ips[0].AsSlice()},
				&expr.NAT{Type: expr.NATTypeSourceNAT, Family: nfp, RegAddrMin: 1},
			}))
		default:
			// Pick the egress IP by a hash of the source address, so a
			// tenant host keeps one public address.
			m := &setSpec{name: snatMap(t.Name, v6), keyType: nftables.TypeMark, dataType: addrType(v6), isMap: true,
				byteOrder: binaryutil.NativeEndian}
			for i, a := range ips {
				m.items = append(m.items, item{start: binaryutil.NativeEndian.PutUint32(uint32(i)), val: a.AsSlice()})
			}
			sets = append(sets, m)
			off, l := addrOffset(v6, srcField)
			rs.rule(chainPostrouting, "", cat(match, []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: l},
				&expr.Hash{SourceRegister: 1, DestRegister: 1, Length: l, Modulus: uint32(len(ips)), Type: expr.HashTypeJenkins},
				&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: m.name},
				&expr.NAT{Type: expr.NATTypeSourceNAT, Family: nfp, RegAddrMin: 1},
			}))
		}
	}
	return sets
}

func (rs *ruleset) rule(chain, comment string, exprs []expr.Any) {
	rs.rules = append(rs.rules, ruleSpec{chain: chain, exprs: exprs, comment: comment})
}

// Expression helpers.

type addrSide int

const (
	srcField addrSide = iota
	dstField
)

func fam(v6 bool) int {
	if v6 {
		return 1
	}
	return 0
}

func addrType(v6 bool) nftables.SetDatatype {
	if v6 {
		return nftables.TypeIP6Addr
	}
	return nftables.TypeIPAddr
}

func addrOffset(v6 bool, side addrSide) (offset, length uint32) {
	switch {
	case !v6 && side == srcField:
		return 12, 4
	case !v6:
		return 16, 4
	case side == srcField:
		return 8, 16
	}
	return 24, 16
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func meta(key expr.MetaKey) []expr.Any {
	return []expr.Any{&expr.Meta{Key: key, Register: 1}}
}

func nfproto(v6 bool) []expr.Any {
	p := byte(unix.NFPROTO_IPV4)
	if v6 {
		p = unix.NFPROTO_IPV6
	}
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}}}
}

func ifname(key expr.MetaKey, name string) []expr.Any {
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifnameKey(name)}}
}

func addrField(v6 bool, side addrSide) []expr.Any {
	off, l := addrOffset(v6, side)
	return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: l}}
}

func transportDport() []expr.Any {
	return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}}
}

func lookup(set string) []expr.Any {
	return []expr.Any{&expr.Lookup{SourceRegister: 1, SetName: set}}
}

func vmap(set string) []expr.Any {
	return []expr.Any{&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: set}}
}

func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// objCounter is NFT_OBJECT_COUNTER.
const objCounter = 1

func counter(name string) []expr.Any { return []expr.Any{&expr.Objref{Type: objCounter, Name: name}} }

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func jump(chain string) *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }

func ifnameKey(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}

func prefixItem(p netip.Prefix) item {
	it := item{start: p.Addr().AsSlice()}
	if end, ok := prefixEnd(p); ok {
		it.end = end.AsSlice()
	}
	return it
}

func withVerdict(it item, v *expr.Verdict) item {
	it.verdict = v
	return it
}

// prefixEnd returns the first address after p, false when p reaches the
// top of the address space.
func prefixEnd(p netip.Prefix) (netip.Addr, bool) {
	a := p.Masked().Addr().AsSlice()
	host := len(a)*8 - p.Bits()
	// Set the host bits, then add one.
	for i := len(a) - 1; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		a[i] |= byte(1<<n - 1)
		host -= n
	}
	for i := len(a) - 1; i >= 0; i-- {
		a[i]++
		if a[i] != 0 {
			r, _ := netip.AddrFromSlice(a)
			return r, true
		}
	}
	return netip.Addr{}, false
}

// normalizePrefixes sorts, dedupes and drops prefixes covered by another
// one (interval sets refuse overlapping elements).
func normalizePrefixes(ps []netip.Prefix) []netip.Prefix {
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	n := 0
	for _, p := range out {
		if n > 0 && out[n-1].Addr().Is6() == p.Addr().Is6() && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out[n] = p
		n++
	}
	return out[:n]
}

// normalizePorts sorts and merges overlapping port ranges.
func normalizePorts(rs []PortRange) []PortRange {
	out := slices.Clone(rs)
	slices.SortFunc(out, func(a, b PortRange) int { return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To)) })
	n := 0
	for _, r := range out {
		if n > 0 && r.From <= out[n-1].To {
			out[n-1].To = max(out[n-1].To, r.To)
			continue
		}
		out[n] = r
		n++
	}
	return out[:n]
}

func sortItems(items []item) {
	slices.SortFunc(items, func(a, b item) int {
		return cmp.Or(slices.Compare(a.start, b.start), slices.Compare(a.end, b.end))
	})
}

// elements turns items into set elements: an interval is its start
// element (carrying the value) and, unless it is open-ended, an end
// element flagged IntervalEnd.
func (s *setSpec) elements(items []item) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, 2*len(items))
	for _, it := range items {
		out = append(out, nftables.SetElement{Key: it.start, Val: it.val, VerdictData: it.verdict})
		if s.interval && it.end != nil {
			out = append(out, nftables.SetElement{Key: it.end, IntervalEnd: true})
		}
	}
	return out
}

func jumpTo(chain string) []expr.Any { return []expr.Any{jump(chain)} }
