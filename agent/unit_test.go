package agent

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/metalfabric/fabric/bgp"
	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/fabric"
)

func TestParseRole(t *testing.T) {
	for _, s := range []string{"leaf", "spine", "firewall"} {
		if r, err := ParseRole(s); err != nil || string(r) != s {
			t.Errorf("ParseRole(%q) = %q, %v", s, r, err)
		}
	}
	for _, s := range []string{"", "Leaf", "router"} {
		if _, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) = nil error, want one", s)
		}
	}
}

func TestDesiredFromProto(t *testing.T) {
	vlans := fabric.VLANRange{Min: 100, Max: 200}
	cfg := &apiv1.DeviceConfig{
		Hostname: "leaf1", Version: 7, Role: apiv1.Role_ROLE_LEAF,
		Loopback: "10.255.0.1/32", Vtep: "10.255.0.1", RouterMac: "aa:bb:cc:00:00:01",
		Vrfs: []*apiv1.Vrf{
			{Name: "vrf10010", Vni: 10010, Table: 10010, Network: "tenant-a", Ports: []string{"swp1", "swp2"}, L3Vni: true},
			{Vni: 10020, Table: 10020, Network: "tenant-b"},
		},
		Ports: []*apiv1.PortConfig{{Name: "swp1", Description: "m1", AdminUp: true}},
	}
	want := fabric.Desired{
		Loopback:  fabric.Loopback{Addrs: []netip.Prefix{netip.MustParsePrefix("10.255.0.1/32")}},
		VTEP:      netip.MustParseAddr("10.255.0.1"),
		VLANRange: vlans,
		Ports:     []fabric.Port{{Name: "swp1", AdminUp: true, Description: "m1", VRF: "vrf10010"}},
		VRFs: []fabric.VRF{
			{Name: "vrf10010", Table: 10010, Ports: []string{"swp2"},
				L3VNI: &fabric.L3VNI{VNI: 10010, RouterMAC: net.HardwareAddr{0xaa, 0xbb, 0xcc, 0, 0, 1}}},
			{Name: "vrf10020", Table: 10020},
		},
	}
	got, err := desiredFromProto(cfg, vlans)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
		t.Errorf("desiredFromProto (-want +got):\n%s", diff)
	}
	if got, err := desiredFromProto(&apiv1.DeviceConfig{}, vlans); err != nil || len(got.VRFs) != 0 || len(got.Ports) != 0 {
		t.Errorf("desiredFromProto(empty) = %+v, %v; want nothing", got, err)
	}
	for _, bad := range []*apiv1.DeviceConfig{
		{Loopback: "10.255.0.1"},
		{Vtep: "10.255.0.1/32"},
		{RouterMac: "aa:bb"},
	} {
		if _, err := desiredFromProto(bad, vlans); err == nil {
			t.Errorf("desiredFromProto(%v): want an error", bad)
		}
	}
}

// TestNumberedUnderlayFromProto: a numbered underlay session puts its /31
// on the port (merged into a handed port of that name) and becomes a bgp
// session with the peer address; unnumbered ones add no port; an
// inconsistent pair of addresses rejects the snapshot.
func TestNumberedUnderlayFromProto(t *testing.T) {
	cfg := &apiv1.DeviceConfig{
		Hostname: "leaf1", Asn: 65001, Loopback: "10.255.0.1/32",
		Ports: []*apiv1.PortConfig{{Name: "swp52", Description: "odd", AdminUp: true}},
		Underlay: []*apiv1.UnderlayPeer{
			{Port: "swp51", Peer: "spine1", PeerAsn: 65101, Address: "10.254.0.0/31", PeerAddress: "10.254.0.1"},
			{Port: "swp52", Peer: "spine2", PeerAsn: 65102, Passive: true, Address: "10.254.0.3/31", PeerAddress: "10.254.0.2"},
			{Port: "swp53", Peer: "spine3", PeerAsn: 65103},
		},
	}
	eq := cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})
	fd, err := desiredFromProto(cfg, fabric.VLANRange{})
	if err != nil {
		t.Fatal(err)
	}
	wantPorts := []fabric.Port{
		{Name: "swp52", Description: "odd", AdminUp: true, Addrs: []netip.Prefix{netip.MustParsePrefix("10.254.0.3/31")}},
		{Name: "swp51", AdminUp: true, Addrs: []netip.Prefix{netip.MustParsePrefix("10.254.0.0/31")}},
	}
	if diff := cmp.Diff(wantPorts, fd.Ports, eq); diff != "" {
		t.Errorf("fabric ports (-want +got):\n%s", diff)
	}
	bd, err := routingFromProto(cfg, fabric.Actual{})
	if err != nil {
		t.Fatal(err)
	}
	wantPeers := []bgp.UnderlayPeer{
		{Interface: "swp51", Address: netip.MustParseAddr("10.254.0.1"), ASN: 65101, Description: "spine1"},
		{Interface: "swp52", Address: netip.MustParseAddr("10.254.0.2"), ASN: 65102, Description: "spine2", Passive: true},
		{Interface: "swp53", ASN: 65103, Description: "spine3"},
	}
	if diff := cmp.Diff(wantPeers, bd.Underlay, eq); diff != "" {
		t.Errorf("bgp underlay (-want +got):\n%s", diff)
	}
	if err := bd.Validate(); err != nil {
		t.Errorf("bgp desired: %v", err)
	}
	for _, bad := range []*apiv1.UnderlayPeer{
		{Port: "swp51", Address: "10.254.0.0/31"},
		{Port: "swp51", PeerAddress: "10.254.0.1"},
		{Port: "swp51", Address: "10.254.0.0", PeerAddress: "10.254.0.1"},
		{Port: "swp51", Address: "10.254.0.0/31", PeerAddress: "10.254.0.2"},
		{Port: "swp51", Address: "10.254.0.0/31", PeerAddress: "10.254.0.0"},
		{Port: "swp51", Address: "10.254.0.0/32", PeerAddress: "10.254.0.0"},
		{Port: "swp51", Address: "fd00::/127", PeerAddress: "fd00::1"},
		{Port: "swp51", Address: "10.254.0.0/31", PeerAddress: "x"},
	} {
		c := &apiv1.DeviceConfig{Asn: 65001, Loopback: "10.255.0.1/32", Underlay: []*apiv1.UnderlayPeer{bad}}
		if _, err := desiredFromProto(c, fabric.VLANRange{}); err == nil || !strings.Contains(err.Error(), "underlay session on swp51") {
			t.Errorf("desiredFromProto(%v): error %v, want one naming the session", bad, err)
		}
		if _, err := routingFromProto(c, fabric.Actual{}); err == nil {
			t.Errorf("routingFromProto(%v): no error", bad)
		}
	}
}

func TestPortsAndErrorsToProto(t *testing.T) {
	got := portsToProto([]fabric.Link{
		{Name: "swp1", MAC: "02:00:00:00:00:01", MTU: 9000, OperState: "up"},
		{Name: "swp2", MAC: "02:00:00:00:00:02", MTU: 1500, OperState: "lowerlayerdown"},
	})
	want := []*apiv1.Port{
		{Name: "swp1", Mac: "02:00:00:00:00:01", Mtu: 9000, OperUp: true},
		{Name: "swp2", Mac: "02:00:00:00:00:02", Mtu: 1500},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("portsToProto (-want +got):\n%s", diff)
	}
	gotErrs := stepErrorsToProto("fabric", []fabric.StepError{{Step: "set swp1 master vrf10", Err: errString("enslaving swp1 to vrf10: no such device")}})
	wantErrs := []*apiv1.StepError{{Step: "fabric: set swp1 master vrf10", Message: "enslaving swp1 to vrf10: no such device"}}
	if diff := cmp.Diff(wantErrs, gotErrs, protocmp.Transform()); diff != "" {
		t.Errorf("stepErrorsToProto (-want +got):\n%s", diff)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestBackoff(t *testing.T) {
	ms := time.Millisecond
	b := newBackoff(200*ms, 10*time.Second)
	b.rand = func(n int64) int64 { return n - 1 } // no jitter: the full delay
	var got []time.Duration
	for range 8 {
		got = append(got, b.next())
	}
	want := []time.Duration{200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 6400 * ms, 10 * time.Second, 10 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("delays (-want +got):\n%s", diff)
	}
	b.reset()
	b.rand = func(int64) int64 { return 0 } // most jitter: half the delay
	if got := b.next(); got != 100*ms {
		t.Errorf("after reset, with full jitter: %v, want 100ms", got)
	}
	// Real jitter stays within [d/2, d].
	b = newBackoff(200*ms, 10*time.Second)
	for i := range 50 {
		d := b.next()
		hi := 10 * time.Second
		if i < 6 {
			hi = 200 * ms << i
		}
		if d < hi/2 || d > hi {
			t.Fatalf("delay %d = %v, want within [%v, %v]", i, d, hi/2, hi)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	k := fakeKernel()
	tests := []struct {
		name string
		cfg  Config
		opts []Option
	}{
		{"no controller", Config{Hostname: "h", Role: RoleLeaf}, nil},
		{"bad role", Config{Controller: "c:1", Hostname: "h", Role: "router"}, nil},
		{"bad backoff", Config{Controller: "c:1", Hostname: "h", Role: RoleLeaf}, []Option{WithBackoff(time.Second, time.Millisecond)}},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg, append(tt.opts, WithKernel(k))...); err == nil {
			t.Errorf("%s: New() = nil error", tt.name)
		}
	}
	a, err := New(Config{Controller: "c:1", Role: RoleSpine}, WithKernel(k))
	if err != nil || a.cfg.Hostname == "" {
		t.Errorf("New without hostname: %v, hostname %q; want the os hostname", err, a.cfg.Hostname)
	}
}
