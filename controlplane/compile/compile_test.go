package compile_test

import (
	"net/netip"
	"strings"
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

// peer is a machine session with the default max-prefix guard.
func peer(port, machine string, allowed ...string) model.MachinePeer {
	p := model.MachinePeer{Port: port, Machine: machine, MaxPrefixes: compile.DefaultMachineMaxPrefixes}
	for _, a := range allowed {
		p.Allowed = append(p.Allowed, netip.MustParsePrefix(a))
	}
	return p
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func nbr(port, name string) model.Neighbor {
	return model.Neighbor{Port: port, ChassisID: "chassis-" + name, SystemName: name}
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
					{Name: "vrf10001", VNI: 10001, Table: 10001, Network: "tenant-a", Ports: []string{"swp1"},
						MachinePeers: []model.MachinePeer{peer("swp1", "m1", "10.0.0.1/32")}},
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
					{Name: "vrf10001", VNI: 10001, Table: 10001, Network: "tenant-a", Ports: []string{"swp2"},
						MachinePeers: []model.MachinePeer{peer("swp2", "m1", "10.0.0.1/32")}},
				}, Ports: []model.PortConfig{{Name: "swp2", Description: "m1", AdminUp: true}}},
				{Hostname: "leaf2", Role: model.RoleLeaf, VRFs: []model.VRF{
					{Name: "vrf10001", VNI: 10001, Table: 10001, Network: "tenant-a", Ports: []string{"swp2"},
						MachinePeers: []model.MachinePeer{peer("swp2", "m1", "10.0.0.1/32")}},
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
					{Name: "vrf10000", VNI: 10000, Table: 10000, Network: "tenant-b", Ports: []string{"swp1"},
						MachinePeers: []model.MachinePeer{peer("swp1", "m2", "10.0.0.1/32")}},
					{Name: "vrf10001", VNI: 10001, Table: 10001, Network: "tenant-a", Ports: []string{"swp10", "swp2"},
						MachinePeers: []model.MachinePeer{peer("swp10", "m1", "10.0.0.1/32"), peer("swp2", "m3", "10.0.0.1/32")}},
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
					{Name: "vrf10001", VNI: 10001, Table: 10001, Network: "tenant-a", Ports: []string{"swp1"},
						MachinePeers: []model.MachinePeer{peer("swp1", "m1", "10.0.0.1/32")}},
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
						{Name: "vrf10001", VNI: 10001, Table: 10001, Network: "tenant-a", Ports: []string{"swp1"}, L3VNI: true,
							MachinePeers: []model.MachinePeer{peer("swp1", "m1", "10.0.0.1/32")}},
					},
					Ports: []model.PortConfig{{Name: "swp1", Description: "m1", AdminUp: true}},
				},
				{Hostname: "spine1", Role: model.RoleSpine, Loopback: netip.MustParsePrefix("10.255.0.9/32")},
			},
		},
		{
			name: "machine peers: one per VRF port, allowed the machine's /32 then its announce prefixes",
			in: compile.Input{
				Devices:  []model.Device{leaf1, leaf2},
				Networks: []model.Network{netA, netB},
				Machines: []model.Machine{
					{Name: "exit1", Connections: conns("leaf1", "swp2", "leaf2", "swp1"), Allocation: &model.Allocation{
						Network: "tenant-a", IP: netip.MustParseAddr("10.0.0.7"), Revision: 2,
						Announce: prefixes("0.0.0.0/0", "192.168.0.0/16"),
					}},
					{Name: "svc1", Connections: conns("leaf1", "swp1"), Allocation: &model.Allocation{
						Network: "tenant-b", IP: netip.MustParseAddr("10.1.0.3"), Revision: 3,
						Announce: prefixes("2001:db8::/48"),
					}},
					{Name: "web1", Connections: conns("leaf1", "swp10"), Allocation: &model.Allocation{
						Network: "tenant-a", IP: netip.MustParseAddr("10.0.0.8"), Revision: 4,
					}},
				},
			},
			want: []model.DeviceConfig{
				{Hostname: "leaf1", Role: model.RoleLeaf, VRFs: []model.VRF{
					{Name: "vrf10000", VNI: 10000, Table: 10000, Network: "tenant-b", Ports: []string{"swp1"},
						MachinePeers: []model.MachinePeer{peer("swp1", "svc1", "10.1.0.3/32", "2001:db8::/48")}},
					{Name: "vrf10001", VNI: 10001, Table: 10001, Network: "tenant-a", Ports: []string{"swp10", "swp2"},
						MachinePeers: []model.MachinePeer{
							peer("swp10", "web1", "10.0.0.8/32"),
							peer("swp2", "exit1", "10.0.0.7/32", "0.0.0.0/0", "192.168.0.0/16"),
						}},
				}, Ports: []model.PortConfig{
					{Name: "swp1", Description: "svc1", AdminUp: true},
					{Name: "swp10", Description: "web1", AdminUp: true},
					{Name: "swp2", Description: "exit1", AdminUp: true},
				}},
				{Hostname: "leaf2", Role: model.RoleLeaf, VRFs: []model.VRF{
					{Name: "vrf10001", VNI: 10001, Table: 10001, Network: "tenant-a", Ports: []string{"swp1"},
						MachinePeers: []model.MachinePeer{peer("swp1", "exit1", "10.0.0.7/32", "0.0.0.0/0", "192.168.0.0/16")}},
				}, Ports: []model.PortConfig{{Name: "swp1", Description: "exit1", AdminUp: true}}},
			},
		},
		{
			name: "underlay sessions from the neighbour tables, with the peer's ASN; tables of unknown devices ignored",
			in: compile.Input{
				Devices: []model.Device{
					{Hostname: "leaf1", Role: model.RoleLeaf, ASN: 4210000001},
					{Hostname: "leaf2", Role: model.RoleLeaf, ASN: 4210000002},
					{Hostname: "spine1", Role: model.RoleSpine, ASN: 4210000009},
				},
				Neighbors: map[string][]model.Neighbor{
					"leaf1":  {nbr("swp1", "m1"), nbr("swp51", "spine1")},
					"leaf2":  {nbr("swp52", "SPINE1")},
					"spine1": {nbr("swp1", "leaf1"), nbr("swp2", "leaf2"), nbr("swp3", "leaf3")},
					"leaf9":  {nbr("swp1", "spine1")},
				},
			},
			want: []model.DeviceConfig{
				{Hostname: "leaf1", Role: model.RoleLeaf, ASN: 4210000001,
					Underlay: []model.UnderlayPeer{{Port: "swp51", Peer: "spine1", PeerASN: 4210000009}}},
				{Hostname: "leaf2", Role: model.RoleLeaf, ASN: 4210000002,
					Underlay: []model.UnderlayPeer{{Port: "swp52", Peer: "spine1", PeerASN: 4210000009}}},
				{Hostname: "spine1", Role: model.RoleSpine, ASN: 4210000009, Underlay: []model.UnderlayPeer{
					{Port: "swp1", Peer: "leaf1", PeerASN: 4210000001, Passive: true},
					{Port: "swp2", Peer: "leaf2", PeerASN: 4210000002, Passive: true},
				}},
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

func TestUnderlay(t *testing.T) {
	self := model.Device{Hostname: "leaf0", Role: model.RoleLeaf, ASN: 65000} // dials every session below
	devices := map[string]model.Device{}
	for _, d := range []model.Device{
		{Hostname: "leaf1", Role: model.RoleLeaf, ASN: 65001},
		{Hostname: "Spine1", Role: model.RoleSpine, ASN: 65101},
		{Hostname: "spine2", Role: model.RoleSpine, ASN: 65102},
	} {
		devices[strings.ToLower(d.Hostname)] = d
	}
	tests := []struct {
		name string
		nbrs []model.Neighbor
		want []model.UnderlayPeer
	}{
		{name: "no neighbours", nbrs: nil, want: nil},
		{
			name: "fabric link",
			nbrs: []model.Neighbor{nbr("swp51", "spine2")},
			want: []model.UnderlayPeer{{Port: "swp51", Peer: "spine2", PeerASN: 65102}},
		},
		{
			name: "machine neighbour ignored",
			nbrs: []model.Neighbor{nbr("swp1", "m1"), nbr("swp51", "spine2")},
			want: []model.UnderlayPeer{{Port: "swp51", Peer: "spine2", PeerASN: 65102}},
		},
		{
			name: "unknown device ignored",
			nbrs: []model.Neighbor{nbr("swp52", "spine3")},
			want: nil,
		},
		{
			name: "a port seeing two devices gets none",
			nbrs: []model.Neighbor{nbr("swp51", "spine1"), nbr("swp51", "spine2"), nbr("swp52", "spine2")},
			want: []model.UnderlayPeer{{Port: "swp52", Peer: "spine2", PeerASN: 65102}},
		},
		{
			name: "a device and a machine on one port: the device's session",
			nbrs: []model.Neighbor{nbr("swp51", "m1"), nbr("swp51", "spine2")},
			want: []model.UnderlayPeer{{Port: "swp51", Peer: "spine2", PeerASN: 65102}},
		},
		{
			name: "one device seen twice on a port (two port ids) is one session",
			nbrs: []model.Neighbor{
				{Port: "swp51", ChassisID: "c-spine2", PortID: "swp1", SystemName: "spine2"},
				{Port: "swp51", ChassisID: "c-spine2", PortID: "swp2", SystemName: "spine2"},
			},
			want: []model.UnderlayPeer{{Port: "swp51", Peer: "spine2", PeerASN: 65102}},
		},
		{
			name: "hostnames match case-insensitively; the peer is the registered hostname",
			nbrs: []model.Neighbor{nbr("swp51", "SPINE1"), nbr("swp52", "Spine2"), nbr("swp53", "spine1")},
			want: []model.UnderlayPeer{
				{Port: "swp51", Peer: "Spine1", PeerASN: 65101},
				{Port: "swp52", Peer: "spine2", PeerASN: 65102},
				{Port: "swp53", Peer: "Spine1", PeerASN: 65101},
			},
		},
		{
			name: "identity is the chassis id without a system name",
			nbrs: []model.Neighbor{{Port: "swp51", ChassisID: "spine2"}},
			want: []model.UnderlayPeer{{Port: "swp51", Peer: "spine2", PeerASN: 65102}},
		},
		{
			name: "sorted by port",
			nbrs: []model.Neighbor{nbr("swp52", "spine2"), nbr("swp10", "leaf1"), nbr("swp1", "spine1"), nbr("swp2", "m2")},
			want: []model.UnderlayPeer{
				{Port: "swp1", Peer: "Spine1", PeerASN: 65101},
				{Port: "swp10", Peer: "leaf1", PeerASN: 65001},
				{Port: "swp52", Peer: "spine2", PeerASN: 65102},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := compile.Underlay(self, tc.nbrs, devices)
			if diff := cmp.Diff(tc.want, got, netipEqual); diff != "" {
				t.Errorf("Underlay (-want +got):\n%s", diff)
			}
		})
	}
	if got := compile.Underlay(self, []model.Neighbor{nbr("swp51", "spine2")}, nil); got != nil {
		t.Errorf("Underlay without registered devices = %v, want none", got)
	}
}

// TestUnderlayOneEndDials: of the two configs of a session, exactly one
// listens (two GoBGP ends that both dial can refuse each other for
// minutes), and which one is the documented choice.
func TestUnderlayOneEndDials(t *testing.T) {
	devs := []model.Device{
		{Hostname: "leaf01", Role: model.RoleLeaf, ASN: 1},
		{Hostname: "leaf02", Role: model.RoleLeaf, ASN: 2},
		{Hostname: "spine01", Role: model.RoleSpine, ASN: 3},
		{Hostname: "Spine02", Role: model.RoleSpine, ASN: 4},
		{Hostname: "fw01", Role: model.RoleFirewall, ASN: 5},
	}
	devices := map[string]model.Device{}
	for _, d := range devs {
		devices[strings.ToLower(d.Hostname)] = d
	}
	listener := map[[2]string]string{
		{"leaf01", "spine01"}:  "spine01",
		{"leaf01", "fw01"}:     "leaf01",
		{"spine01", "fw01"}:    "spine01",
		{"leaf01", "leaf02"}:   "leaf02",
		{"spine01", "Spine02"}: "Spine02",
	}
	for pair, want := range listener {
		a, b := devices[strings.ToLower(pair[0])], devices[strings.ToLower(pair[1])]
		ua := compile.Underlay(a, []model.Neighbor{nbr("swp1", b.Hostname)}, devices)
		ub := compile.Underlay(b, []model.Neighbor{nbr("swp1", a.Hostname)}, devices)
		if len(ua) != 1 || len(ub) != 1 {
			t.Fatalf("%v: sessions %v and %v, want one each", pair, ua, ub)
		}
		if ua[0].Passive == ub[0].Passive {
			t.Errorf("%v: passive %t on both ends, want exactly one", pair, ua[0].Passive)
		}
		if got := map[bool]string{true: a.Hostname, false: b.Hostname}[ua[0].Passive]; got != want {
			t.Errorf("%v: %s listens, want %s", pair, got, want)
		}
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
		{"empty underlay is none", mod(func(c *model.DeviceConfig) { c.Underlay = []model.UnderlayPeer{} }), true},
		{"underlay session added", mod(func(c *model.DeviceConfig) {
			c.Underlay = []model.UnderlayPeer{{Port: "swp51", Peer: "spine1", PeerASN: 65101}}
		}), false},
		{"empty machine peers are none", mod(func(c *model.DeviceConfig) { c.VRFs[0].MachinePeers = []model.MachinePeer{} }), true},
		{"machine peer added", mod(func(c *model.DeviceConfig) {
			c.VRFs[0].MachinePeers = []model.MachinePeer{peer("swp1", "m1", "10.0.0.1/32")}
		}), false},
	}
	for _, tc := range tests {
		if got := compile.Equal(base, tc.b); got != tc.want {
			t.Errorf("%s: Equal = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// netipEqual compares netip values by value.
var netipEqual = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

func TestFirewallTenants(t *testing.T) {
	nets := []model.Network{
		{Name: "b", Prefix: netip.MustParsePrefix("10.2.0.0/24"), VNI: 11},
		{Name: "a", Prefix: netip.MustParsePrefix("10.1.0.0/24"), VNI: 10},
	}
	pols := []model.FirewallPolicy{
		{Network: "b", NAT: true},
		{Network: "gone", NAT: true},
		{Network: "a", Egress: []model.FirewallRule{{Action: "accept"}}},
	}
	got := compile.Compile(compile.Input{
		Devices:   []model.Device{{Hostname: "fw1", Role: model.RoleFirewall}, {Hostname: "leaf1", Role: model.RoleLeaf}},
		Networks:  nets,
		Firewalls: pols,
	})
	want := []model.FirewallTenant{
		{FirewallPolicy: pols[2], Prefix: nets[1].Prefix, VNI: 10, VRF: "vrf10"},
		{FirewallPolicy: pols[0], Prefix: nets[0].Prefix, VNI: 11, VRF: "vrf11"},
	}
	if diff := cmp.Diff(want, got[0].Firewall, cmpopts.EquateComparable(netip.Prefix{}, netip.Addr{})); diff != "" {
		t.Errorf("fw1 firewall tenants (-want +got):\n%s", diff)
	}
	if got[1].Firewall != nil {
		t.Errorf("leaf1 got firewall tenants %v, want none", got[1].Firewall)
	}
}

func TestFirewallVRFs(t *testing.T) {
	nets := []model.Network{
		{Name: "inet", Prefix: netip.MustParsePrefix("203.0.113.0/24"), VNI: 12, External: true},
		{Name: "b", Prefix: netip.MustParsePrefix("10.2.0.0/24"), VNI: 11},
		{Name: "a", Prefix: netip.MustParsePrefix("10.1.0.0/24"), VNI: 10},
	}
	pols := []model.FirewallPolicy{{Network: "a", NAT: true}}
	lo := netip.MustParseAddr("10.255.0.9")
	got := compile.Compile(compile.Input{
		Devices: []model.Device{
			{Hostname: "fw1", Role: model.RoleFirewall, Loopback: lo, ChassisMAC: "02:00:00:00:00:09"},
			{Hostname: "leaf1", Role: model.RoleLeaf},
		},
		Networks:  nets,
		Firewalls: pols,
	})
	fw := got[0]
	if fw.VTEP != lo || fw.RouterMAC != "02:00:00:00:00:09" {
		t.Errorf("fw1 VTEP %v router MAC %q, want %v and its chassis MAC", fw.VTEP, fw.RouterMAC, lo)
	}
	// Network b has no policy: the firewall does not serve it.
	want := []model.VRF{
		{Name: "vrf10", VNI: 10, Table: 10, Network: "a", L3VNI: true},
		{Name: "vrf12", VNI: 12, Table: 12, Network: "inet", L3VNI: true, External: true},
	}
	if diff := cmp.Diff(want, fw.VRFs); diff != "" {
		t.Errorf("fw1 VRFs (-want +got):\n%s", diff)
	}
	if len(got[1].VRFs) != 0 {
		t.Errorf("leaf1 (no machines) got VRFs %v", got[1].VRFs)
	}
}

// TestNumber: the two ends of a link name it alike and get the two
// addresses of its /31 (the dialer the lower, whichever end is compiled);
// a session without a /31, or without the neighbour's port, is left out
// of a numbered underlay; a full Compile numbers with Input.LinkNets.
func TestNumber(t *testing.T) {
	devs := []model.Device{
		{Hostname: "leaf01", Role: model.RoleLeaf, ASN: 1},
		{Hostname: "Spine01", Role: model.RoleSpine, ASN: 3},
	}
	devices := map[string]model.Device{}
	for _, d := range devs {
		devices[strings.ToLower(d.Hostname)] = d
	}
	withPort := func(port, name, remote string) model.Neighbor {
		n := nbr(port, name)
		n.PortID = remote
		return n
	}
	leafNbrs := []model.Neighbor{withPort("swp51", "SPINE01", "swp1"), withPort("swp52", "spine01", "swp2"), nbr("swp53", "spine01")}
	spineNbrs := []model.Neighbor{withPort("swp1", "leaf01", "swp51"), withPort("swp2", "leaf01", "swp52")}
	ls := compile.Sessions(devs[0], leafNbrs, devices)
	ss := compile.Sessions(devs[1], spineNbrs, devices)
	if len(ls) != 3 || len(ss) != 2 {
		t.Fatalf("sessions: leaf %+v, spine %+v", ls, ss)
	}
	for i := range ss {
		if ls[i].Link != ss[i].Link {
			t.Errorf("session %d: leaf names the link %s, spine %s", i, ls[i].Link, ss[i].Link)
		}
	}
	if ls[2].Link.Complete() {
		t.Errorf("link without the neighbour's port id is complete: %s", ls[2].Link)
	}
	if a, b := compile.NewLink(compile.LinkEnd{Device: "B", Port: "p1"}, compile.LinkEnd{Device: "a", Port: "p2"}),
		compile.NewLink(compile.LinkEnd{Device: "a", Port: "p2"}, compile.LinkEnd{Device: "b", Port: "p1"}); a != b || a.String() != "a:p2~b:p1" {
		t.Errorf("NewLink not order and case independent: %s, %s", a, b)
	}
	nets := map[compile.Link]netip.Prefix{
		ls[0].Link: netip.MustParsePrefix("10.254.0.6/31"),
		ls[1].Link: netip.MustParsePrefix("10.254.0.0/30"), // not a /31: left out
		ls[2].Link: netip.MustParsePrefix("10.254.0.8/31"),
	}
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	wantLeaf := []model.UnderlayPeer{
		{Port: "swp51", Peer: "Spine01", PeerASN: 3, Address: pfx("10.254.0.6/31"), PeerAddress: addr("10.254.0.7")},
		{Port: "swp53", Peer: "Spine01", PeerASN: 3, Address: pfx("10.254.0.8/31"), PeerAddress: addr("10.254.0.9")},
	}
	wantSpine := []model.UnderlayPeer{{Port: "swp1", Peer: "leaf01", PeerASN: 1, Passive: true, Address: pfx("10.254.0.7/31"), PeerAddress: addr("10.254.0.6")}}
	if diff := cmp.Diff(wantLeaf, compile.Number(ls, nets), netipEqual); diff != "" {
		t.Errorf("leaf (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantSpine, compile.Number(ss, nets), netipEqual); diff != "" {
		t.Errorf("spine (-want +got):\n%s", diff)
	}
	out := compile.Compile(compile.Input{Devices: devs, Neighbors: map[string][]model.Neighbor{"leaf01": leafNbrs, "Spine01": spineNbrs},
		Numbered: true, LinkNets: nets})
	if diff := cmp.Diff(wantLeaf, out[1].Underlay, netipEqual); diff != "" {
		t.Errorf("Compile leaf01 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantSpine, out[0].Underlay, netipEqual); diff != "" {
		t.Errorf("Compile Spine01 (-want +got):\n%s", diff)
	}
}
