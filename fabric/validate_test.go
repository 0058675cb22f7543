package fabric_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalfabric/fabric/fabric"
	ft "github.com/metalfabric/fabric/fabric/fabrictest"
)

func TestValidate(t *testing.T) {
	kernel := actual(
		ft.Loopback(), ft.Port("swp1"), ft.Port("swp2"), ft.Port("swp3"),
		ft.VRF("mgmt", 1000, false), ft.In(ft.Port("eth0"), "mgmt"),
		ft.VRF("vrf10", 10, true),
		fabric.Link{Name: "br0", Kind: fabric.KindBridge},
	)
	tests := []struct {
		name    string
		desired fabric.Desired
		want    []string // problems; nil = valid
	}{
		{name: "empty"},
		{
			name: "valid: marked vrf kept, new vrf, port from foreign vrf",
			desired: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "vrf10", Table: 10, Ports: []string{"swp1"}},
				{Name: "vrf20", Table: 20, Ports: []string{"swp2", "eth0"}},
			}},
		},
		{
			name: "duplicate names and tables",
			desired: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "vrf20", Table: 20},
				{Name: "vrf20", Table: 21},
				{Name: "vrf30", Table: 20},
			}},
			want: []string{
				"vrf vrf20 is listed more than once",
				"table 20 is used by vrf vrf20 and vrf vrf30",
			},
		},
		{
			name: "port in two vrfs, twice in one",
			desired: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "vrf20", Table: 20, Ports: []string{"swp1", "swp1"}},
				{Name: "vrf30", Table: 30, Ports: []string{"swp1"}},
			}},
			want: []string{
				"port swp1 is listed twice in vrf vrf20",
				"port swp1 is in vrf vrf20 and vrf vrf30",
			},
		},
		{
			name: "bad ports",
			desired: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "vrf20", Table: 20, Ports: []string{"swp9", "mgmt", "lo", "vrf30", ""}},
				{Name: "vrf30", Table: 30},
			}},
			want: []string{
				"port swp9 of vrf vrf20 does not exist",
				"port mgmt of vrf vrf20 is a vrf",
				"port lo of vrf vrf20 is a loopback",
				"port vrf30 of vrf vrf20 is the name of a desired link",
				"vrf vrf20: empty port name",
			},
		},
		{
			name: "clash with foreign links",
			desired: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "mgmt", Table: 1000},
				{Name: "br0", Table: 40},
				{Name: "vrf50", Table: 1000},
			}},
			want: []string{
				`vrf mgmt: the name is taken by an unmarked vrf (alias ""), which is never changed`,
				`vrf br0: the name is taken by an unmarked bridge (alias ""), which is never changed`,
				"table 1000 is used by vrf mgmt and vrf vrf50",
				"vrf vrf50: table 1000 is used by unmarked vrf mgmt",
			},
		},
		{
			name: "l3vni problems: duplicate vni, bad vni, no vtep, multicast mac",
			desired: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "vrf20", Table: 20, L3VNI: &fabric.L3VNI{VNI: 20}},
				{Name: "vrf21", Table: 21, L3VNI: &fabric.L3VNI{VNI: 20}},
				{Name: "vrf22", Table: 22, L3VNI: &fabric.L3VNI{VNI: 1 << 24}},
				{Name: "vrf23", Table: 23, L3VNI: &fabric.L3VNI{VNI: 23, RouterMAC: net.HardwareAddr{1, 0, 0, 0, 0, 1}}},
			}},
			want: []string{
				"vrf vrf20: an l3vni needs a vtep address",
				"vni 20 is used by vrf vrf20 and vrf vrf21",
				"vrf vrf22: vni 16777216 is out of range 1-16777215",
				"vrf vrf23: an l3vni needs a vtep address",
				"vrf vrf23: router mac 01:00:00:00:00:01 is not a unicast ethernet address",
			},
		},
		{
			name: "vlans out of range, range exhausted, vlan clash",
			desired: fabric.Desired{
				VTEP:      netip.MustParseAddr("10.0.0.1"),
				VLANRange: fabric.VLANRange{Min: 100, Max: 100},
				Bridge:    &fabric.Bridge{VLANs: []uint16{0, 4095, 100}},
				VRFs: []fabric.VRF{
					{Name: "vrf20", Table: 20, L3VNI: &fabric.L3VNI{VNI: 20}},
				},
				Ports: []fabric.Port{{Name: "swp1", AccessVLAN: 5000}},
			},
			want: []string{
				"bridge: vlan 0 is out of range 1-4094",
				"bridge: vlan 4095 is out of range 1-4094",
				"vrf vrf20: no free vlan left in range 100-100 for vni 20",
				"port swp1: vlan 5000 is out of range 1-4094",
			},
		},
		{
			name:    "bad vlan range",
			desired: fabric.Desired{VLANRange: fabric.VLANRange{Min: 10, Max: 5}},
			want:    []string{"vlan range 10-5 is not within 1-4094 with min <= max"},
		},
		{
			name: "port problems: unknown vrf, routed and access, unknown vni, addresses on access port, mtu",
			desired: fabric.Desired{
				VTEP: netip.MustParseAddr("10.0.0.1"),
				VRFs: []fabric.VRF{{Name: "vrf20", Table: 20, L3VNI: &fabric.L3VNI{VNI: 20}}},
				Ports: []fabric.Port{
					{Name: "swp1", VRF: "vrf99"},
					{Name: "swp2", VRF: "vrf20", AccessVNI: 20},
					{Name: "swp3", AccessVNI: 30, Addrs: []netip.Prefix{netip.MustParsePrefix("10.1.0.1/24")}, MTU: 10},
					{Name: "nope"},
				},
			},
			want: []string{
				"port swp1: vrf vrf99 is not a desired vrf",
				"port swp2 is both a routed port in vrf vrf20 and an access port",
				"port swp3: access vni 30 is not the l3vni of a desired vrf",
				"port swp3 is an access port and cannot have addresses",
				"port swp3: mtu 10 is out of range 68-65535",
				"port nope does not exist",
			},
		},
		{
			name: "addresses: link-local and invalid",
			desired: fabric.Desired{
				Loopback: fabric.Loopback{Addrs: []netip.Prefix{netip.MustParsePrefix("fe80::1/64"), {}}},
			},
			want: []string{
				"loopback: link-local address fe80::1/64 is managed by the kernel",
				"loopback: invalid address invalid Prefix",
			},
		},
		{
			name: "valid: full switch",
			desired: fabric.Desired{
				Loopback: fabric.Loopback{Addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}},
				VTEP:     netip.MustParseAddr("10.0.0.1"),
				Bridge:   &fabric.Bridge{MTU: 9000, VLANs: []uint16{1, 2, 3}},
				VRFs: []fabric.VRF{
					{Name: "vrf20", Table: 20, L3VNI: &fabric.L3VNI{VNI: 20, RouterMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}},
					{Name: "vrf10", Table: 10},
				},
				Ports: []fabric.Port{
					{Name: "swp1", VRF: "vrf20", AdminUp: true, MTU: 9000, Description: "m1"},
					{Name: "swp2", AccessVNI: 20, AdminUp: true},
					{Name: "swp3", AccessVLAN: 3},
				},
			},
		},
		{
			name: "bad names and reserved tables",
			desired: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "", Table: 20},
				{Name: "vrf-with-a-long-name", Table: 21},
				{Name: "a/b", Table: 22},
				{Name: "vrf0", Table: 0},
				{Name: "vrf254", Table: 254},
			}},
			want: []string{
				"vrf #0: empty name",
				`vrf #1: name "vrf-with-a-long-name" is longer than 15 bytes`,
				`vrf #2: name "a/b" contains '/', ':' or whitespace`,
				"vrf vrf0: table 0 is reserved (unspec)",
				"vrf vrf254: table 254 is reserved (main)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := fabric.Validate(tt.desired, kernel)
			var got []string
			if err != nil {
				var verr *fabric.ValidationError
				if !errors.As(err, &verr) {
					t.Fatalf("Validate() = %v, want a *ValidationError", err)
				}
				got = verr.Problems
			}
			if diff := cmp.Diff(tt.want, got, ft.CmpOpts); diff != "" {
				t.Errorf("Validate() problems (-want +got):\n%s", diff)
			}
		})
	}
}
