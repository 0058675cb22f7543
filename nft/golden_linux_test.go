//go:build linux

package nft

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from `nft list table`")

func pfx(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, x := range s {
		out[i] = netip.MustParsePrefix(x)
	}
	return out
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, x := range s {
		out[i] = netip.MustParseAddr(x)
	}
	return out
}

// goldenPolicies are applied in a fresh namespace each and listed with
// `nft list table inet fabric`; testdata/<name>.nft holds the listing.
var goldenPolicies = map[string]Policy{
	"empty": {},
	"tenant": {
		Input: []Rule{
			{Action: Accept, Protocol: ProtoTCP, Ports: []PortRange{{22, 22}, {179, 179}}, Comment: "ssh and bgp"},
			{Action: Accept, Protocol: ProtoICMP},
		},
		Tenants: []Tenant{{
			Name:       "tenant-a",
			Interfaces: []string{"vrf100", "vlan100"},
			Prefixes:   pfx("10.1.0.0/24", "2001:db8:1::/64"),
			Egress: []Rule{
				{Action: Drop, CIDRs: pfx("10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12"), Comment: "no private ranges"},
				{Action: Accept, Protocol: ProtoTCP, Ports: []PortRange{{80, 80}, {443, 443}, {8000, 8100}}},
				{Action: Accept, Protocol: ProtoUDP, CIDRs: pfx("1.1.1.1/32", "8.8.8.8/32"), Ports: []PortRange{{53, 53}}, Comment: "dns"},
				{Action: Accept, Protocol: ProtoICMP},
			},
			Ingress: []Rule{
				{Action: Accept, Protocol: ProtoTCP, CIDRs: pfx("2001:db8:ffff::/48"), Ports: []PortRange{{22, 22}}},
				{Action: Accept, Protocol: ProtoTCP, Ports: []PortRange{{443, 443}, {1024, 65535}}},
			},
			NAT:       NAT{Mode: NATMasquerade, Interfaces: []string{"uplink0"}},
			RateLimit: RateLimit{PacketsPerSecond: 10000, Burst: 500},
		}},
	},
	"snat": {
		Tenants: []Tenant{
			{
				Name:     "a",
				Prefixes: pfx("10.1.0.0/24"),
				Egress:   []Rule{{Action: Accept}},
				NAT:      NAT{Mode: NATSNAT, EgressIPs: addrs("203.0.113.10", "203.0.113.11", "203.0.113.12")},
			},
			{
				Name:      "b",
				Prefixes:  pfx("10.2.0.0/24", "10.3.0.0/24"),
				Egress:    []Rule{{Action: Accept, CIDRs: pfx("0.0.0.0/0")}},
				NAT:       NAT{Mode: NATSNAT, EgressIPs: addrs("203.0.113.20")},
				RateLimit: RateLimit{BytesPerSecond: 125_000_000},
			},
		},
	},
}

func TestGolden(t *testing.T) {
	for name, p := range goldenPolicies {
		t.Run(name, func(t *testing.T) {
			ns := newNS(t)
			f := newFirewall(t, ns)
			mustApply(t, f, p)
			got := sh(t, ns, "nft", "list", "table", "inet", "fabric")
			file := filepath.Join("testdata", name+".nft")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("reading golden file (regenerate with go test ./nft/ -run TestGolden -args -update): %v", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("nft list table inet fabric (-want +got):\n%s", diff)
			}
		})
	}
}
