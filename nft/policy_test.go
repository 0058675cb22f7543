package nft

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	p4 := netip.MustParsePrefix
	ok := Tenant{Name: "a", Prefixes: []netip.Prefix{p4("10.1.0.0/24")}}
	for _, tc := range []struct {
		name string
		p    Policy
		want string // substring of the error; empty: valid
	}{
		{"valid", Policy{Tenants: []Tenant{ok}}, ""},
		{"mixed families", Policy{Tenants: []Tenant{{Name: "a", Prefixes: ok.Prefixes,
			Egress: []Rule{{Action: Accept, CIDRs: []netip.Prefix{p4("10.0.0.0/8"), p4("2001:db8::/32")}}}}}},
			"tenant a: egress rule 0: mixes IPv4 and IPv6 CIDRs"},
		{"host bits", Policy{Input: []Rule{{Action: Accept, CIDRs: []netip.Prefix{p4("10.0.0.1/8")}}}},
			"input rule 0: 10.0.0.1/8 has host bits set (did you mean 10.0.0.0/8?)"},
		{"reversed ports", Policy{Input: []Rule{{Action: Accept, Protocol: ProtoTCP, Ports: []PortRange{{90, 80}}}}},
			"port range 90-80 is reversed"},
		{"port 0", Policy{Input: []Rule{{Action: Accept, Protocol: ProtoUDP, Ports: []PortRange{{0, 80}}}}},
			"starts at port 0"},
		{"ports without tcp/udp", Policy{Input: []Rule{{Action: Accept, Ports: []PortRange{{80, 80}}}}},
			`ports need protocol tcp or udp, not "any"`},
		{"long comment", Policy{Input: []Rule{{Action: Accept, Comment: strings.Repeat("x", 129)}}},
			"comment is 129 bytes long: at most 128"},
		{"quote in comment", Policy{Input: []Rule{{Action: Accept, Comment: `a "b"`}}}, "double quote"},
		{"no action", Policy{Input: []Rule{{}}}, "action is missing"},
		{"bad protocol", Policy{Input: []Rule{{Action: Drop, Protocol: "sctp"}}}, `protocol "sctp"`},
		{"bad tenant name", Policy{Tenants: []Tenant{{Name: "a/b", Prefixes: ok.Prefixes}}}, `tenant 0: name "a/b" contains '/'`},
		{"duplicate tenant", Policy{Tenants: []Tenant{ok, ok}}, "tenant a: listed twice"},
		{"unidentified tenant", Policy{Tenants: []Tenant{{Name: "a"}}}, "neither interfaces nor prefixes"},
		{"overlapping tenants", Policy{Tenants: []Tenant{ok, {Name: "b", Prefixes: []netip.Prefix{p4("10.1.0.128/25")}}}},
			"tenant b: prefix 10.1.0.128/25 overlaps tenant a's 10.1.0.0/24"},
		{"shared interface", Policy{Tenants: []Tenant{{Name: "a", Interfaces: []string{"vrf1"}}, {Name: "b", Interfaces: []string{"vrf1"}}}},
			"interface vrf1 is also tenant a's"},
		{"long interface", Policy{Tenants: []Tenant{{Name: "a", Interfaces: []string{"abcdefghijklmnop"}}}}, "longer than 15 bytes"},
		{"snat without ips", Policy{Tenants: []Tenant{{Name: "a", Prefixes: ok.Prefixes, NAT: NAT{Mode: NATSNAT}}}},
			"snat needs at least one egress IP"},
		{"nat without prefixes", Policy{Tenants: []Tenant{{Name: "a", Interfaces: []string{"x"}, NAT: NAT{Mode: NATMasquerade}}}},
			"NAT needs the tenant's prefixes"},
		{"snat ip of a missing family", Policy{Tenants: []Tenant{{Name: "a", Prefixes: ok.Prefixes,
			NAT: NAT{Mode: NATSNAT, EgressIPs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}}}}},
			"egress IPs of a family (IPv6) the tenant has no prefix of"},
		{"two rates", Policy{Tenants: []Tenant{{Name: "a", Prefixes: ok.Prefixes, RateLimit: RateLimit{PacketsPerSecond: 1, BytesPerSecond: 1}}}},
			"set packets or bytes per second, not both"},
	} {
		err := Validate(tc.p)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: Validate: %v, want nil", tc.name, err)
		case tc.want != "" && err == nil:
			t.Errorf("%s: Validate: nil, want an error containing %q", tc.name, tc.want)
		case tc.want != "" && !strings.Contains(err.Error(), tc.want):
			t.Errorf("%s: Validate: %q, want it to contain %q", tc.name, err, tc.want)
		}
		if err != nil {
			if _, ok := errors.AsType[*ValidationError](err); !ok {
				t.Errorf("%s: error %v is not a *ValidationError", tc.name, err)
			}
		}
	}
}
