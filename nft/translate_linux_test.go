//go:build linux

package nft

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

func findSet(t *testing.T, rs *ruleset, name string) *setSpec {
	t.Helper()
	for _, s := range rs.sets {
		if s.name == name {
			return s
		}
	}
	t.Fatalf("no set %s", name)
	return nil
}

func chainRules(rs *ruleset, chain string) [][]expr.Any {
	var out [][]expr.Any
	for _, r := range rs.rules {
		if r.chain == chain {
			out = append(out, r.exprs)
		}
	}
	return out
}

var allowUnexported = cmp.Options{
	cmp.AllowUnexported(setSpec{}, item{}),
	cmp.Comparer(func(a, b nftables.SetDatatype) bool {
		return a.Name == b.Name && a.Bytes == b.Bytes && a.GetNFTMagic() == b.GetNFTMagic()
	}),
}

func TestTranslateRule(t *testing.T) {
	p := Policy{Tenants: []Tenant{{
		Name:     "a",
		Prefixes: pfx("10.1.0.0/24"),
		Egress: []Rule{{Action: Accept, Protocol: ProtoTCP,
			CIDRs: pfx("10.9.0.0/16", "10.9.1.0/24", "192.0.2.0/24"),
			Ports: []PortRange{{443, 443}, {8000, 8100}, {8050, 9000}, {65000, 65535}}, Comment: "web"}},
	}}}
	rs := translate(p)

	// The CIDRs: the covered /24 is dropped, each interval is [start, end).
	want := &setSpec{name: "a/egress/0/net4", keyType: nftables.TypeIPAddr, interval: true, items: []item{
		{start: []byte{10, 9, 0, 0}, end: []byte{10, 10, 0, 0}},
		{start: []byte{192, 0, 2, 0}, end: []byte{192, 0, 3, 0}},
	}}
	if diff := cmp.Diff(want, findSet(t, rs, "a/egress/0/net4"), allowUnexported); diff != "" {
		t.Errorf("CIDR set (-want +got):\n%s", diff)
	}
	// Ports: overlapping ranges merged, the range reaching 65535 is open.
	want = &setSpec{name: "a/egress/0/ports", keyType: nftables.TypeInetService, interval: true, items: []item{
		{start: []byte{0x01, 0xbb}, end: []byte{0x01, 0xbc}},
		{start: []byte{0x1f, 0x40}, end: []byte{0x23, 0x29}},
		{start: []byte{0xfd, 0xe8}},
	}}
	if diff := cmp.Diff(want, findSet(t, rs, "a/egress/0/ports"), allowUnexported); diff != "" {
		t.Errorf("port set (-want +got):\n%s", diff)
	}

	// The rule: family, address lookup, protocol, port lookup, counters,
	// verdict; comment in the rule.
	var got ruleSpec
	for _, r := range rs.rules {
		if r.comment == "web" {
			got = r
		}
	}
	wantRule := ruleSpec{chain: "a/egress", comment: "web", exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: "a/egress/0/net4"},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: "a/egress/0/ports"},
		&expr.Objref{Type: objCounter, Name: "a/egress/rule/0"},
		&expr.Objref{Type: objCounter, Name: "a/egress/accepted"},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}}
	if diff := cmp.Diff(wantRule, got, cmp.AllowUnexported(ruleSpec{})); diff != "" {
		t.Errorf("rule (-want +got):\n%s", diff)
	}

	// Dispatch: the tenant prefix jumps to the tenant's chains.
	want = &setSpec{name: "from/net4", keyType: nftables.TypeIPAddr, dataType: nftables.TypeVerdict, isMap: true, interval: true, items: []item{
		{start: []byte{10, 1, 0, 0}, end: []byte{10, 1, 1, 0}, verdict: &expr.Verdict{Kind: expr.VerdictJump, Chain: "a/egress"}},
	}}
	if diff := cmp.Diff(want, findSet(t, rs, "from/net4"), allowUnexported); diff != "" {
		t.Errorf("dispatch map (-want +got):\n%s", diff)
	}
	fwd := chainRules(rs, chainForward)
	wantFwd0 := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, IsDestRegSet: true, SetName: "from/net4"},
	}
	if diff := cmp.Diff(wantFwd0, fwd[0]); diff != "" {
		t.Errorf("first forward rule (-want +got):\n%s", diff)
	}
	if n := len(fwd); n != 4 { // from/net4, to/net4, established, drop
		t.Errorf("forward chain has %d rules, want 4", n)
	}
}

func TestTranslateNAT(t *testing.T) {
	p := Policy{Tenants: []Tenant{{
		Name:     "a",
		Prefixes: pfx("10.1.0.0/24", "2001:db8::/64"),
		NAT:      NAT{Mode: NATSNAT, EgressIPs: addrs("192.0.2.1", "192.0.2.2")},
	}}}
	rs := translate(p)
	// IPv6 has a prefix but no egress IP: no IPv6 NAT rule.
	nat := chainRules(rs, chainPostrouting)
	if len(nat) != 1 {
		t.Fatalf("postrouting has %d rules, want 1", len(nat))
	}
	want := &setSpec{name: "a/snat4", keyType: nftables.TypeMark, dataType: nftables.TypeIPAddr, isMap: true,
		byteOrder: binaryutil.NativeEndian, items: []item{
			{start: binaryutil.NativeEndian.PutUint32(0), val: []byte{192, 0, 2, 1}},
			{start: binaryutil.NativeEndian.PutUint32(1), val: []byte{192, 0, 2, 2}},
		}}
	if diff := cmp.Diff(want, findSet(t, rs, "a/snat4"), allowUnexported); diff != "" {
		t.Errorf("snat map (-want +got):\n%s", diff)
	}
	wantTail := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Hash{SourceRegister: 1, DestRegister: 1, Length: 4, Modulus: 2, Type: expr.HashTypeJenkins},
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: "a/snat4"},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
	}
	if diff := cmp.Diff(wantTail, nat[0][len(nat[0])-4:]); diff != "" {
		t.Errorf("snat rule tail (-want +got):\n%s", diff)
	}
}

func TestPrefixEnd(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8":       "11.0.0.0",
		"10.0.0.255/32":    "10.0.1.0",
		"255.255.255.0/24": "",
		"0.0.0.0/0":        "",
		"2001:db8::/32":    "2001:db9::",
		"::/0":             "",
		"2001:db8::ff/128": "2001:db8::100",
	} {
		got, ok := prefixEnd(netip.MustParsePrefix(in))
		if (want == "") == ok || ok && got.String() != want {
			t.Errorf("prefixEnd(%s) = %v, %v; want %q", in, got, ok, want)
		}
	}
}

func TestShapeAndDiff(t *testing.T) {
	base := Policy{Tenants: []Tenant{{Name: "a", Prefixes: pfx("10.1.0.0/24"),
		Egress: []Rule{{Action: Accept, CIDRs: pfx("192.0.2.0/24", "198.51.100.0/24")}}}}}
	changed := base
	changed.Tenants = []Tenant{base.Tenants[0]}
	changed.Tenants[0].Egress = []Rule{{Action: Accept, CIDRs: pfx("192.0.2.0/24", "203.0.113.0/24")}}
	a, b := translate(base), translate(changed)
	if !sameShape(a, b) {
		t.Fatal("a changed CIDR changes the shape; want elements only")
	}
	del, add := diffItems(findSet(t, a, "a/egress/0/net4").items, findSet(t, b, "a/egress/0/net4").items)
	if diff := cmp.Diff([]item{prefixItem(pfx("198.51.100.0/24")[0])}, del, allowUnexported); diff != "" {
		t.Errorf("deleted (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]item{prefixItem(pfx("203.0.113.0/24")[0])}, add, allowUnexported); diff != "" {
		t.Errorf("added (-want +got):\n%s", diff)
	}
	other := changed
	other.Tenants = []Tenant{changed.Tenants[0]}
	other.Tenants[0].Egress = []Rule{{Action: Drop, CIDRs: pfx("192.0.2.0/24")}}
	if sameShape(a, translate(other)) {
		t.Error("a changed action keeps the shape; want a full replace")
	}
}
