package bgp

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRDRT(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"RD", RD(netip.MustParseAddr("10.255.0.1"), 10), "10.255.0.1:10"},
		{"RD large VNI", RD(netip.MustParseAddr("192.0.2.7"), 16777215), "192.0.2.7:65535"},
		{"RT 2-byte ASN", RT(65000, 10), "65000:10"},
		{"RT 4-byte ASN keeps low 16 bits", RT(4200000001, 10), "59905:10"},
		{"RT 4-byte ASN 65536+65000", RT(65536+65000, 100), "65000:100"},
		{"RT ASN 65536 is 0", RT(65536, 5), "0:5"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestMatchRT(t *testing.T) {
	tests := []struct {
		rt   string
		vni  uint32
		want bool
	}{
		{"65000:10", 10, true},
		{"65000:100", 10, false},
		{"65000:10", 100, false},
		{"65000:110", 10, false},
		{"59905:10", 10, true}, // another leaf's (4-byte ASN) RT
		{"1.2.3.4:10", 10, true},
		{"10", 10, false},
		{"", 10, false},
		{"65000:", 0, false},
		{"65000:0", 0, true},
		{"65000:010", 10, false},
	}
	for _, tt := range tests {
		if got := MatchRT(tt.rt, tt.vni); got != tt.want {
			t.Errorf("MatchRT(%q, %d) = %v, want %v", tt.rt, tt.vni, got, tt.want)
		}
	}
}

func TestPeerKey(t *testing.T) {
	tests := []struct {
		p    Peer
		want PeerKey
		str  string
	}{
		{Peer{Interface: "swp31"}, PeerKey{Name: "swp31"}, "swp31"},
		{Peer{Interface: "swp1", VRF: "red"}, PeerKey{VRF: "red", Name: "swp1"}, "red/swp1"},
		{Peer{Address: netip.MustParseAddr("192.0.2.1")}, PeerKey{Name: "192.0.2.1"}, "192.0.2.1"},
	}
	for _, tt := range tests {
		k := tt.p.Key()
		if diff := cmp.Diff(tt.want, k, cmpOpts); diff != "" {
			t.Errorf("Key() (-want +got):\n%s", diff)
		}
		if k.String() != tt.str {
			t.Errorf("String() = %q, want %q", k.String(), tt.str)
		}
	}
}

func TestDesiredPeersAndVRFs(t *testing.T) {
	d := leaf()
	want := []Peer{
		{Interface: "swp31", Families: []Family{IPv4Unicast, EVPN}, GracefulRestart: true, Description: "spine1", Upstream: true},
		{Interface: "swp32", Families: []Family{IPv4Unicast, EVPN}, GracefulRestart: true, Description: "spine2", Upstream: true},
		{Interface: "swp2", VRF: "blue", Families: []Family{IPv4Unicast}, Allowed: []netip.Prefix{pfx("198.51.100.0/24")}, GracefulRestart: true},
		{Interface: "swp1", VRF: "red", Families: []Family{IPv4Unicast}, Allowed: []netip.Prefix{pfx("192.0.2.0/24")}, MaxPrefixes: 10, GracefulRestart: true},
	}
	if diff := cmp.Diff(want, d.peers(), cmpOpts); diff != "" {
		t.Errorf("peers (-want +got):\n%s", diff)
	}
	// A machine without allowance accepts nothing (non-nil empty slice).
	d.VRFs[0].Machines[0].Allowed = nil
	for _, p := range d.peers() {
		if p.VRF == "blue" && (p.Allowed == nil || len(p.Allowed) != 0) {
			t.Errorf("machine without allowance: Allowed = %#v, want empty non-nil", p.Allowed)
		}
	}
	wantVRFs := []VRF{
		{Name: "blue", RD: "10.255.0.1:20", ImportRTs: []string{"59905:20"}, ExportRTs: []string{"59905:20"}, ID: 20},
		{Name: "red", RD: "10.255.0.1:10", ImportRTs: []string{"59905:10"}, ExportRTs: []string{"59905:10"}, ID: 10},
	}
	if diff := cmp.Diff(wantVRFs, d.speakerVRFs()); diff != "" {
		t.Errorf("speakerVRFs (-want +got):\n%s", diff)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Desired)
		want   string // substring of the error; "" = valid
	}{
		{"valid", func(*Desired) {}, ""},
		{"spine without VTEP or VRFs", func(d *Desired) { d.VTEP = netip.Addr{}; d.VRFs = nil }, ""},
		{"VRF without L3VNI needs no MAC", func(d *Desired) { d.VRFs[0].SVI = ""; d.VRFs[0].RouterMAC = nil }, ""},
		{"no ASN", func(d *Desired) { d.ASN = 0 }, "no ASN"},
		{"IPv6 router id", func(d *Desired) { d.RouterID = netip.MustParseAddr("2001:db8::1") }, "router id 2001:db8::1 is not an IPv4 address"},
		{"no router id", func(d *Desired) { d.RouterID = netip.Addr{} }, "router id invalid IP is not an IPv4 address"},
		{"IPv6 VTEP", func(d *Desired) { d.VTEP = netip.MustParseAddr("2001:db8::2") }, "VTEP 2001:db8::2 is not an IPv4 address"},
		{"underlay without interface", func(d *Desired) { d.Underlay[1].Interface = "" }, "underlay session: no interface"},
		{"two underlay sessions on a link", func(d *Desired) { d.Underlay[1].Interface = "swp31" }, "interface swp31 has two sessions"},
		{"numbered underlay", func(d *Desired) { d.Underlay[0].Address = netip.MustParseAddr("10.254.0.1") }, ""},
		{"numbered underlay, IPv6 peer", func(d *Desired) { d.Underlay[0].Address = netip.MustParseAddr("2001:db8::1") },
			"underlay session on swp31: peer address 2001:db8::1 is not a unicast IPv4 address"},
		{"numbered underlay, unspecified peer", func(d *Desired) { d.Underlay[0].Address = netip.IPv4Unspecified() }, "peer address 0.0.0.0 is not a unicast IPv4 address"},
		{"numbered underlay, same peer twice", func(d *Desired) {
			d.Underlay[0].Address = netip.MustParseAddr("10.254.0.1")
			d.Underlay[1].Address = netip.MustParseAddr("10.254.0.1")
		}, "underlay sessions on swp31 and swp32 have the same peer address 10.254.0.1"},
		{"machine on an underlay link", func(d *Desired) { d.VRFs[1].Machines[0].Interface = "swp31" }, "interface swp31 has two sessions (underlay session and machine session in red)"},
		{"machine without interface", func(d *Desired) { d.VRFs[1].Machines[0].Interface = "" }, "machine session in red: no interface"},
		{"VRF without name", func(d *Desired) { d.VRFs[0].Name = "" }, `VRF name "" empty or duplicate`},
		{"duplicate VRF", func(d *Desired) { d.VRFs[1].Name = "blue" }, `VRF name "blue" empty or duplicate`},
		{"shared VNI", func(d *Desired) { d.VRFs[1].VNI = 20 }, "VRFs blue and red share VNI 20"},
		{"table 0", func(d *Desired) { d.VRFs[0].Table = 0 }, "VRF blue: table 0"},
		{"main table", func(d *Desired) { d.VRFs[0].Table = MainTable }, "VRF blue: table 254"},
		{"shared table", func(d *Desired) { d.VRFs[1].Table = 20 }, "VRFs blue and red share table 20"},
		{"L3VNI without router MAC", func(d *Desired) { d.VRFs[0].RouterMAC = nil }, "VRF blue: an L3VNI needs a router MAC and a VTEP"},
		{"L3VNI without VTEP", func(d *Desired) { d.VTEP = netip.Addr{} }, "an L3VNI needs a router MAC and a VTEP"},
		{"non-canonical allowance", func(d *Desired) { d.VRFs[1].Machines[0].Allowed = []netip.Prefix{pfx("192.0.2.1/24")} }, "VRF red, machine swp1: allowed prefix 192.0.2.1/24 is not canonical"},
		{"invalid allowance", func(d *Desired) { d.VRFs[1].Machines[0].Allowed = []netip.Prefix{{}} }, "allowed prefix invalid Prefix is not canonical"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := leaf()
			tt.mutate(&d)
			err := d.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate accepted it, want error %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate: %v, want %q", err, tt.want)
			}
			if tt.want == "" {
				return
			}
			// Apply refuses it before touching anything, whether first or
			// after a good config.
			sp, f := newFakeSpeaker(), newFakeFIB()
			r := NewReconciler(sp, f)
			if err := r.Apply(t.Context(), d); err == nil || !strings.Contains(err.Error(), "invalid routing config") {
				t.Errorf("first Apply: %v, want invalid routing config", err)
			}
			if c := sp.takeCalls(); len(c) != 0 {
				t.Errorf("first Apply of an invalid config made speaker calls %q", c)
			}
			h := newHarness(t, leaf())
			before := h.sp.originated()
			if err := h.r.Apply(t.Context(), d); err == nil {
				t.Errorf("Apply after a good config accepted it")
			}
			if c := h.sp.takeCalls(); len(c) != 0 {
				t.Errorf("Apply of an invalid config made speaker calls %q", c)
			}
			if o := h.fib.takeOps(); len(o) != 0 {
				t.Errorf("Apply of an invalid config touched the FIB: %q", o)
			}
			if diff := cmp.Diff(before, h.sp.originated(), cmpOpts); diff != "" {
				t.Errorf("originations changed (-want +got):\n%s", diff)
			}
			// And the previous config is still what it holds: the same
			// good config again is a no-op.
			if err := h.r.Apply(t.Context(), leaf()); err != nil {
				t.Fatal(err)
			}
			if c := h.sp.takeCalls(); len(c) != 0 {
				t.Errorf("re-applying the good config made calls %q", c)
			}
		})
	}
}

func TestApplyEmptyConfigDoesNothing(t *testing.T) {
	sp, f := newFakeSpeaker(), newFakeFIB()
	r := NewReconciler(sp, f)
	if err := r.Apply(context.Background(), Desired{}); err != nil {
		t.Fatal(err)
	}
	if c := sp.takeCalls(); len(c) != 0 {
		t.Errorf("calls %q, want none", c)
	}
	if err := r.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c := sp.takeCalls(); len(c) != 0 {
		t.Errorf("Stop of a never started reconciler: calls %q, want none", c)
	}
}
