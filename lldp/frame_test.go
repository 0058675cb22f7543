package lldp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var (
	testMAC  = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	testMAC2 = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}
)

// cmpAddr compares netip.Addr by value (its fields are unexported).
var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		f    Frame
	}{
		{
			name: "mandatory only",
			f: Frame{
				ChassisID: MACChassisID(testMAC),
				PortID:    InterfaceNamePortID("swp1"),
				TTL:       120 * time.Second,
			},
		},
		{
			name: "shutdown",
			f: Frame{
				ChassisID: MACChassisID(testMAC),
				PortID:    InterfaceNamePortID("swp1"),
			},
		},
		{
			name: "everything",
			f: Frame{
				ChassisID:         MACChassisID(testMAC),
				PortID:            InterfaceNamePortID("Ethernet0"),
				TTL:               8 * time.Second,
				PortDescription:   "to machine m1",
				SystemName:        "leaf01",
				SystemDescription: "metalfabric agent",
				Capabilities:      Capabilities{Supported: CapBridge | CapRouter, Enabled: CapRouter},
				MgmtAddrs: []netip.Addr{
					netip.MustParseAddr("10.0.0.1"),
					netip.MustParseAddr("2001:db8::1"),
				},
			},
		},
		{
			name: "max TTL and long strings",
			f: Frame{
				ChassisID:         ChassisID{Subtype: ChassisIDSubtypeLocallyAssigned, ID: strings.Repeat("c", 255)},
				PortID:            PortID{Subtype: PortIDSubtypeLocallyAssigned, ID: strings.Repeat("p", 255)},
				TTL:               maxTTL,
				SystemName:        strings.Repeat("n", 255),
				SystemDescription: strings.Repeat("d", 255),
			},
		},
		{
			name: "binary IDs",
			f: Frame{
				ChassisID: ChassisID{Subtype: ChassisIDSubtypeNetworkAddress, ID: "\x01\x0a\x00\x00\x01"},
				PortID:    PortID{Subtype: PortIDSubtypeMACAddress, ID: string(testMAC2)},
				TTL:       time.Second,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.f.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary: %v", err)
			}
			var got Frame
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatalf("UnmarshalBinary: %v", err)
			}
			if diff := cmp.Diff(tt.f, got, cmpAddr); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			// Ethernet padding after the End TLV is ignored.
			padded := append(bytes.Clone(b), make([]byte, 40)...)
			if err := got.UnmarshalBinary(padded); err != nil {
				t.Fatalf("UnmarshalBinary(padded): %v", err)
			}
			if diff := cmp.Diff(tt.f, got, cmpAddr); diff != "" {
				t.Errorf("round trip with padding (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFrameMarshalWire(t *testing.T) {
	f := Frame{
		ChassisID:    MACChassisID(testMAC),
		PortID:       InterfaceNamePortID("e1"),
		TTL:          120 * time.Second,
		SystemName:   "sw",
		Capabilities: Capabilities{Supported: CapBridge | CapRouter, Enabled: CapBridge | CapRouter},
		MgmtAddrs:    []netip.Addr{netip.MustParseAddr("192.0.2.1")},
	}
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := "0207" + "04" + "020000000001" + // chassis ID, MAC
		"0403" + "05" + "6531" + // port ID, interface name "e1"
		"0602" + "0078" + // TTL 120
		"0a02" + "7377" + // system name "sw"
		"0e04" + "0014" + "0014" + // capabilities bridge|router
		"100c" + "05" + "01" + "c0000201" + "01" + "00000000" + "00" + // mgmt address
		"0000" // end
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("wire bytes:\n got %s\nwant %s", got, want)
	}
}

func TestFrameMarshalErrors(t *testing.T) {
	ok := Frame{ChassisID: MACChassisID(testMAC), PortID: InterfaceNamePortID("p"), TTL: time.Second}
	tests := []struct {
		name   string
		modify func(*Frame)
	}{
		{"empty chassis", func(f *Frame) { f.ChassisID.ID = "" }},
		{"empty port", func(f *Frame) { f.PortID.ID = "" }},
		{"long chassis", func(f *Frame) { f.ChassisID.ID = strings.Repeat("x", 256) }},
		{"TTL too big", func(f *Frame) { f.TTL = maxTTL + time.Second }},
		{"negative TTL", func(f *Frame) { f.TTL = -time.Second }},
		{"long system name", func(f *Frame) { f.SystemName = strings.Repeat("x", 256) }},
		{"zoned mgmt address", func(f *Frame) { f.MgmtAddrs = []netip.Addr{netip.MustParseAddr("fe80::1%eth0")} }},
		{"invalid mgmt address", func(f *Frame) { f.MgmtAddrs = []netip.Addr{{}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ok
			tt.modify(&f)
			if _, err := f.MarshalBinary(); err == nil {
				t.Fatal("MarshalBinary succeeded, want an error")
			}
		})
	}
}

func TestFrameUnmarshal(t *testing.T) {
	const mandatory = "0207040200000000010403056531" + "06020078"
	tests := []struct {
		name string
		hex  string
		want Frame
	}{
		{
			name: "no end TLV",
			hex:  mandatory,
			want: Frame{ChassisID: MACChassisID(testMAC), PortID: InterfaceNamePortID("e1"), TTL: 120 * time.Second},
		},
		{
			name: "unknown and org-specific TLVs skipped, duplicates keep the first",
			hex: mandatory + "fe0600808c000102" + "12021234" + "0a0161" + "0a0162" +
				"0e0400040004" + "0e0400100010" +
				"100c050100000000010000000000" + // IPv4 0.0.0.0
				"100e070602000000000701000000000000" + // MAC family: skipped
				"0000",
			want: Frame{
				ChassisID:    MACChassisID(testMAC),
				PortID:       InterfaceNamePortID("e1"),
				TTL:          120 * time.Second,
				SystemName:   "a",
				Capabilities: Capabilities{Supported: CapBridge, Enabled: CapBridge},
				MgmtAddrs:    []netip.Addr{netip.MustParseAddr("0.0.0.0")},
			},
		},
		{
			name: "over-long system name is truncated",
			hex:  mandatory + "0b00" + strings.Repeat("61", 256) + "0000",
			want: Frame{
				ChassisID:  MACChassisID(testMAC),
				PortID:     InterfaceNamePortID("e1"),
				TTL:        120 * time.Second,
				SystemName: strings.Repeat("a", 255),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := hex.DecodeString(tt.hex)
			if err != nil {
				t.Fatal(err)
			}
			var got Frame
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatalf("UnmarshalBinary: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpAddr); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFrameUnmarshalMalformed(t *testing.T) {
	const chassis, port, ttl = "020704020000000001", "0403056531", "06020078"
	tests := []struct {
		name string
		hex  string
	}{
		{"empty", ""},
		{"one byte", "02"},
		{"truncated TLV", "0207040200"},
		{"port ID first", port + chassis + ttl},
		{"missing TTL", chassis + port},
		{"missing TTL with end", chassis + port + "0000"},
		{"TTL length 1", chassis + port + "060100"},
		{"TTL length 3", chassis + port + "0603000000"},
		{"chassis ID without ID", "020104" + port + ttl},
		{"port ID without ID", chassis + "040105" + ttl},
		{"duplicate chassis ID", chassis + port + ttl + chassis},
		{"capabilities length 3", chassis + port + ttl + "0e03000400"},
		{"mgmt address too short", chassis + port + ttl + "100401010000"},
		{"mgmt address bad string length", chassis + port + ttl + "100c" + "ff" + "01c00002010100000000" + "00"},
		{"mgmt address bad OID length", chassis + port + ttl + "100c" + "05" + "01c00002010100000000" + "05"},
		{"mgmt IPv4 with 3 bytes", chassis + port + ttl + "100b" + "04" + "01c000020100000000" + "00"},
		{"chassis ID too long", "03ff" + "07" + strings.Repeat("61", 510) + port + ttl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := hex.DecodeString(tt.hex)
			if err != nil {
				t.Fatal(err)
			}
			var f Frame
			err = f.UnmarshalBinary(b)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("UnmarshalBinary = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestIDString(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{MACChassisID(testMAC).String(), "02:00:00:00:00:01"},
		{ChassisID{Subtype: ChassisIDSubtypeNetworkAddress, ID: "\x01\x0a\x00\x00\x01"}.String(), "10.0.0.1"},
		{ChassisID{Subtype: ChassisIDSubtypeLocallyAssigned, ID: "sw1"}.String(), "sw1"},
		{ChassisID{Subtype: ChassisIDSubtypeLocallyAssigned, ID: "a\x00"}.String(), "61:00"},
		{ChassisID{Subtype: 99, ID: "ab"}.String(), "61:62"},
		{InterfaceNamePortID("swp1").String(), "swp1"},
		{PortID{Subtype: PortIDSubtypeMACAddress, ID: string(testMAC2)}.String(), "02:00:00:00:00:02"},
		{PortID{Subtype: PortIDSubtypeMACAddress, ID: "abc"}.String(), "61:62:63"},
		{(CapBridge | CapRouter).String(), "bridge,router"},
		{CapabilityFlags(1 << 15).String(), "bit15"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// FuzzFrameUnmarshal: decoding never panics, fails only with ErrMalformed,
// and whatever decodes re-encodes to something that decodes to the same
// Frame.
func FuzzFrameUnmarshal(f *testing.F) {
	seeds := []Frame{
		{ChassisID: MACChassisID(testMAC), PortID: InterfaceNamePortID("swp1"), TTL: 120 * time.Second},
		{
			ChassisID: MACChassisID(testMAC), PortID: InterfaceNamePortID("Ethernet0"), TTL: 8 * time.Second,
			PortDescription: "d", SystemName: "leaf01", SystemDescription: "agent",
			Capabilities: Capabilities{Supported: CapBridge | CapRouter, Enabled: CapRouter},
			MgmtAddrs:    []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("2001:db8::1")},
		},
	}
	for _, s := range seeds {
		b, err := s.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(lldpdSample(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		var f1 Frame
		if err := f1.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		enc, err := f1.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encoding a decoded frame: %v\nframe: %+v", err, f1)
		}
		var f2 Frame
		if err := f2.UnmarshalBinary(enc); err != nil {
			t.Fatalf("decoding a re-encoded frame: %v", err)
		}
		if !framesEqual(f1, f2) { // cheap check first; cmp only to explain
			t.Fatalf("round trip (-first +second):\n%s", cmp.Diff(f1, f2, cmpAddr, cmpopts.EquateEmpty()))
		}
	})
}

// lldpdSample is an LLDPDU as lldpd 1.0.16 sends it (captured from the
// interop test's peer), with its organisationally specific TLVs.
func lldpdSample(tb testing.TB) []byte {
	b, err := hex.DecodeString(lldpdSampleHex)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

const lldpdSampleHex = "020704be979d9a023c040703be979d9a023c060200040a07706565722d73770c5544656269616e20474e552f4c696e75782031322028626f6f6b776f726d29204c696e757820362e31382e34342d66632d7636353720233120534d5020505245454d50545f44594e414d4943204030207838365f36340e04009c008008036c7862fe0900120f030100000000fe0900120f0100800000360000"

func TestFrameUnmarshalLLDPD(t *testing.T) {
	var got Frame
	if err := got.UnmarshalBinary(lldpdSample(t)); err != nil {
		t.Fatal(err)
	}
	want := Frame{
		ChassisID:         MACChassisID(net.HardwareAddr{0xbe, 0x97, 0x9d, 0x9a, 0x02, 0x3c}),
		PortID:            PortID{Subtype: PortIDSubtypeMACAddress, ID: "\xbe\x97\x9d\x9a\x02\x3c"},
		TTL:               4 * time.Second,
		PortDescription:   "lxb",
		SystemName:        "peer-sw",
		SystemDescription: "Debian GNU/Linux 12 (bookworm) Linux 6.18.44-fc-v657 #1 SMP PREEMPT_DYNAMIC @0 x86_64",
		Capabilities:      Capabilities{Supported: CapBridge | CapWLANAP | CapRouter | CapStation, Enabled: CapStation},
	}
	if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
}

func framesEqual(a, b Frame) bool {
	return a.ChassisID == b.ChassisID && a.PortID == b.PortID && a.TTL == b.TTL &&
		a.PortDescription == b.PortDescription && a.SystemName == b.SystemName &&
		a.SystemDescription == b.SystemDescription && a.Capabilities == b.Capabilities &&
		slices.Equal(a.MgmtAddrs, b.MgmtAddrs)
}
