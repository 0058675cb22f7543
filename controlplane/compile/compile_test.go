package compile_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/metalfabric/fabric/controlplane/compile"
	"github.com/metalfabric/fabric/controlplane/model"
)

var (
	leaf1 = model.Device{Hostname: "leaf1", Role: model.RoleLeaf, Ports: []model.Port{{Name: "swp1"}, {Name: "swp2"}, {Name: "swp10"}}}
	leaf2 = model.Device{Hostname: "leaf2", Role: model.RoleLeaf, Ports: []model.Port{{Name: "swp1"}, {Name: "swp2"}}}
	spine = model.Device{Hostname: "spine1", Role: model.RoleSpine, Ports: []model.Port{{Name: "swp1"}}}
	fw    = model.Device{Hostname: "fw1", Role: model.RoleFirewall, Ports: []model.Port{{Name: "eth1"}}}

	netA = model.Network{Name: "tenant-a", Prefix: netip.MustParsePrefix("10.0.0.0/24"), VNI: 10001}
	netB = model.Network{Name: "tenant-b", Prefix: netip.MustParsePrefix("10.1.0.0/24"), VNI: 10000}
)

func alloc(network string) *model.Allocation {
	return &model.Allocation{Network: network, IP: netip.MustParseAddr("10.0.0.1"), Revision: 1}
}

func conns(pairs ...string) []model.Connection {
	var out []model.Connection
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, model.Connection{Device: pairs[i], Port: pairs[i+1]})
	}
	return out
}

func TestCompile(t *testing.T) {
	tests := []struct {
		name string
		in   compile.Input
		want []model.DeviceConfig
	}{
		{
			name: "empty",
			in:   compile.Input{},
			want: []model.DeviceConfig{},
		},
		{
			name: "devices without allocations get empty configs, sorted",
			in:   compile.Input{Devices: []model.Device{spine, leaf2, fw, leaf1}, Networks: []model.Network{netA}},
			want: []model.DeviceConfig{
				{Hostname: "fw1", Role: model.RoleFirewall},
				{Hostname: "leaf1", Role: model.RoleLeaf},
				{Hostname: "leaf2", Role: model.RoleLeaf},
				{Hostname: "spine1", Role: model.RoleSpine},
			},
		},
		{
			name: "cabled but free machine adds nothing",
			in: compile.Input{
				Devices:  []model.Device{leaf1},
				Networks: []model.Network{netA},
				Machines: []model.Machine{{Name: "m1", Connections: conns("leaf1", "swp1")}},
			},
			want: []model.DeviceConfig{{Hostname: "leaf1", Role: model.RoleLeaf}},
		},
		{
			name: "one allocated machine on one leaf",
			in: compile.Input{
				Devices:  []model.Device{leaf1, leaf2},
				Networks: []model.Network{netA},
				Machines: []model.Machine{{Name: "m1", Connections: conns("leaf1", "swp1"), Allocation: alloc("tenant-a")}},
			},
			want: []model.DeviceConfig{
				{Hostname: "leaf1", Role: model.RoleLeaf, VRFs: []model.VRF{
					{Name: "vrf10001", VNI: 10001, Table: 10001, Network: "tenant-a", Ports: []string{"swp1"}},
				}, Ports: []model.PortConfig{{Name: "swp1", Description: "m1", AdminUp: true}}},
				{Hostname: "leaf2", Role: model.RoleLeaf},
			},
		},
		{
			name: "dual-homed machine appears on both leaves",
			in: compile.Input{
				Devices:  []model.Device{leaf1, leaf2},
				Networks: []model.Network{netA},
				Machines: []model.Machine{{Name: "m1", Connections: conns("leaf1", "swp2", "leaf2", "swp2"), Allocation: alloc("tenant-a")}},
			},
			want: []model.DeviceConfig{
				{Hostname: "leaf1", Role: model.RoleLeaf, VRFs: []model.VRF{
					{Name: "vrf10001", VNI: 10001, Table: 10001, Network: "tenant-a", Ports: []string{"swp2"}},
				}, Ports: []model.PortConfig{{Name: "swp2", Description: "m1", AdminUp: true}}},
				{Hostname: "leaf2", Role: model.RoleLeaf, VRFs: []model.VRF{
					{Name: "vrf10001", VNI: 10001, Table: 10001, Network: "tenant-a", Ports: []string{"swp2"}},
				}, Ports: []model.PortConfig{{Name: "swp2", Description: "m1", AdminUp: true}}},
			},
		},
		{
			name: "two networks on one leaf: VRFs sorted by VNI, ports sorted",
			in: compile.Input{
				Devices:  []model.Device{leaf1},
				Networks: []model.Network{netA, netB},
				Machines: []model.Machine{
					{Name: "m3", Connections: conns("leaf1", "swp2"), Allocation: alloc("tenant-a")},
					{Name: "m1", Connections: conns("leaf1", "swp10"), Allocation: alloc("tenant-a")},
					{Name: "m2", Connections: conns("leaf1", "swp1"), Allocation: alloc("tenant-b")},
				},
			},
			want: []model.DeviceConfig{
				{Hostname: "leaf1", Role: model.RoleLeaf, VRFs: []model.VRF{
					{Name: "vrf10000", VNI: 10000, Table: 10000, Network: "tenant-b", Ports: []string{"swp1"}},
					{Name: "vrf10001", VNI: 10001, Table: 10001, Network: "tenant-a", Ports: []string{"swp10", "swp2"}},
				}, Ports: []model.PortConfig{{Name: "swp1", Description: "m2", AdminUp: true}, {Name: "swp10", Description: "m1", AdminUp: true}, {Name: "swp2", Description: "m3", AdminUp: true}}},
			},
		},
		{
			name: "spines and firewalls get no VRFs",
			in: compile.Input{
				Devices:  []model.Device{spine, fw},
				Networks: []model.Network{netA},
				Machines: []model.Machine{{Name: "m1", Connections: conns("spine1", "swp1", "fw1", "eth1"), Allocation: alloc("tenant-a")}},
			},
			want: []model.DeviceConfig{
				{Hostname: "fw1", Role: model.RoleFirewall},
				{Hostname: "spine1", Role: model.RoleSpine},
			},
		},
		{
			name: "unknown network and unknown device are ignored",
			in: compile.Input{
				Devices:  []model.Device{leaf1},
				Networks: []model.Network{netA},
				Machines: []model.Machine{
					{Name: "m1", Connections: conns("leaf1", "swp1"), Allocation: alloc("gone")},
					{Name: "m2", Connections: conns("leaf9", "swp1"), Allocation: alloc("tenant-a")},
				},
			},
			want: []model.DeviceConfig{{Hostname: "leaf1", Role: model.RoleLeaf}},
		},
		{
			name: "same port listed twice is one port",
			in: compile.Input{
				Devices:  []model.Device{leaf1},
				Networks: []model.Network{netA},
				Machines: []model.Machine{{Name: "m1", Connections: conns("leaf1", "swp1", "leaf1", "swp1"), Allocation: alloc("tenant-a")}},
			},
			want: []model.DeviceConfig{
				{Hostname: "leaf1", Role: model.RoleLeaf, VRFs: []model.VRF{
					{Name: "vrf10001", VNI: 10001, Table: 10001, Network: "tenant-a", Ports: []string{"swp1"}},
				}, Ports: []model.PortConfig{{Name: "swp1", Description: "m1", AdminUp: true}}},
			},
		},
		{
			name: "a leaf with a loopback is a VTEP: L3VNIs, router MAC; a spine gets its loopback only",
			in: compile.Input{
				Devices: []model.Device{
					{Hostname: "leaf1", Role: model.RoleLeaf, ChassisMAC: "aa:bb:cc:00:00:01", Loopback: netip.MustParseAddr("10.255.0.1")},
					{Hostname: "spine1", Role: model.RoleSpine, ChassisMAC: "aa:bb:cc:00:00:09", Loopback: netip.MustParseAddr("10.255.0.9")},
				},
				Networks: []model.Network{netA},
				Machines: []model.Machine{{Name: "m1", Connections: conns("leaf1", "swp1"), Allocation: alloc("tenant-a")}},
			},
			want: []model.DeviceConfig{
				{
					Hostname: "leaf1", Role: model.RoleLeaf,
					Loopback: netip.MustParsePrefix("10.255.0.1/32"), VTEP: netip.MustParseAddr("10.255.0.1"), RouterMAC: "aa:bb:cc:00:00:01",
					VRFs: []model.VRF{
						{Name: "vrf10001", VNI: 10001, Table: 10001, Network: "tenant-a", Ports: []string{"swp1"}, L3VNI: true},
					},
					Ports: []model.PortConfig{{Name: "swp1", Description: "m1", AdminUp: true}},
				},
				{Hostname: "spine1", Role: model.RoleSpine, Loopback: netip.MustParsePrefix("10.255.0.9/32")},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := compile.Compile(tc.in)
			if diff := cmp.Diff(tc.want, got, netipEqual); diff != "" {
				t.Errorf("Compile (-want +got):\n%s", diff)
			}
			// Deterministic: same input, same output.
			if diff := cmp.Diff(got, compile.Compile(tc.in), netipEqual); diff != "" {
				t.Errorf("Compile not deterministic (-first +second):\n%s", diff)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	base := model.DeviceConfig{Hostname: "leaf1", Version: 3, Role: model.RoleLeaf, VRFs: []model.VRF{
		{Name: "vrf10000", VNI: 10000, Table: 10000, Network: "a", Ports: []string{"swp1"}},
	}}
	mod := func(f func(*model.DeviceConfig)) model.DeviceConfig {
		c := base
		c.VRFs = []model.VRF{base.VRFs[0]}
		c.VRFs[0].Ports = []string{"swp1"}
		f(&c)
		return c
	}
	tests := []struct {
		name string
		b    model.DeviceConfig
		want bool
	}{
		{"identical", mod(func(*model.DeviceConfig) {}), true},
		{"version ignored", mod(func(c *model.DeviceConfig) { c.Version = 9 }), true},
		{"role", mod(func(c *model.DeviceConfig) { c.Role = model.RoleSpine }), false},
		{"port added", mod(func(c *model.DeviceConfig) { c.VRFs[0].Ports = append(c.VRFs[0].Ports, "swp2") }), false},
		{"vrf removed", mod(func(c *model.DeviceConfig) { c.VRFs = nil }), false},
		{"network renamed", mod(func(c *model.DeviceConfig) { c.VRFs[0].Network = "b" }), false},
	}
	for _, tc := range tests {
		if got := compile.Equal(base, tc.b); got != tc.want {
			t.Errorf("%s: Equal = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// netipEqual compares netip values by value.
var netipEqual = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})
