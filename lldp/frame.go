package lldp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"

	mdlldp "github.com/mdlayher/lldp"
)

// EtherType is the Ethernet type of LLDP frames.
const EtherType = 0x88cc

// Group addresses LLDP frames are sent to (IEEE 802.1AB-2016 table 7-1). We
// send to NearestBridge and accept all three on receive.
var (
	NearestBridge         = net.HardwareAddr{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}
	NearestNonTPMRBridge  = net.HardwareAddr{0x01, 0x80, 0xc2, 0x00, 0x00, 0x03}
	NearestCustomerBridge = net.HardwareAddr{0x01, 0x80, 0xc2, 0x00, 0x00, 0x00}
)

// ErrMalformed is wrapped by every error UnmarshalBinary returns for a frame
// that does not follow IEEE 802.1AB; callers can branch on it with errors.Is.
var ErrMalformed = errors.New("malformed LLDPDU")

// Limits of the string TLVs and IDs (IEEE 802.1AB-2016 clause 8.5).
const (
	maxIDLen     = 255 // chassis and port ID, without the subtype byte
	maxStringLen = 255 // port description, system name, system description
	maxTTL       = math.MaxUint16 * time.Second
)

// ChassisIDSubtype says how a ChassisID is to be read (IEEE 802.1AB table 8-2).
type ChassisIDSubtype uint8

// Chassis ID subtypes.
const (
	ChassisIDSubtypeChassisComponent ChassisIDSubtype = 1
	ChassisIDSubtypeInterfaceAlias   ChassisIDSubtype = 2
	ChassisIDSubtypePortComponent    ChassisIDSubtype = 3
	ChassisIDSubtypeMACAddress       ChassisIDSubtype = 4
	ChassisIDSubtypeNetworkAddress   ChassisIDSubtype = 5
	ChassisIDSubtypeInterfaceName    ChassisIDSubtype = 6
	ChassisIDSubtypeLocallyAssigned  ChassisIDSubtype = 7
)

// ChassisID identifies the sending system. ID holds the raw bytes of the TLV
// (a string so the type is comparable and usable as a map key); String
// renders it for humans.
type ChassisID struct {
	Subtype ChassisIDSubtype
	ID      string
}

// MACChassisID returns the chassis ID of a switch identified by its MAC.
func MACChassisID(mac net.HardwareAddr) ChassisID {
	return ChassisID{Subtype: ChassisIDSubtypeMACAddress, ID: string(mac)}
}

// String renders the ID by its subtype: a MAC as aa:bb:cc:dd:ee:ff, a
// network address as an IP, names as text, anything else as hex.
func (c ChassisID) String() string {
	switch c.Subtype {
	case ChassisIDSubtypeMACAddress:
		return formatMAC(c.ID)
	case ChassisIDSubtypeNetworkAddress:
		return formatNetworkAddr(c.ID)
	case ChassisIDSubtypeChassisComponent, ChassisIDSubtypeInterfaceAlias,
		ChassisIDSubtypePortComponent, ChassisIDSubtypeInterfaceName,
		ChassisIDSubtypeLocallyAssigned:
		return formatText(c.ID)
	}
	return formatHex(c.ID)
}

// PortIDSubtype says how a PortID is to be read (IEEE 802.1AB table 8-3).
type PortIDSubtype uint8

// Port ID subtypes.
const (
	PortIDSubtypeInterfaceAlias  PortIDSubtype = 1
	PortIDSubtypePortComponent   PortIDSubtype = 2
	PortIDSubtypeMACAddress      PortIDSubtype = 3
	PortIDSubtypeNetworkAddress  PortIDSubtype = 4
	PortIDSubtypeInterfaceName   PortIDSubtype = 5
	PortIDSubtypeAgentCircuitID  PortIDSubtype = 6
	PortIDSubtypeLocallyAssigned PortIDSubtype = 7
)

// PortID identifies the sending port within its system; ID holds raw bytes.
type PortID struct {
	Subtype PortIDSubtype
	ID      string
}

// InterfaceNamePortID returns the port ID of a port named by its interface.
func InterfaceNamePortID(name string) PortID {
	return PortID{Subtype: PortIDSubtypeInterfaceName, ID: name}
}

// String renders the ID by its subtype, like ChassisID.String.
func (p PortID) String() string {
	switch p.Subtype {
	case PortIDSubtypeMACAddress:
		return formatMAC(p.ID)
	case PortIDSubtypeNetworkAddress:
		return formatNetworkAddr(p.ID)
	case PortIDSubtypeInterfaceAlias, PortIDSubtypePortComponent,
		PortIDSubtypeInterfaceName, PortIDSubtypeLocallyAssigned:
		return formatText(p.ID)
	}
	return formatHex(p.ID)
}

// CapabilityFlags are the system capability bits (IEEE 802.1AB table 8-4).
type CapabilityFlags uint16

// System capabilities.
const (
	CapOther      CapabilityFlags = 1 << 0
	CapRepeater   CapabilityFlags = 1 << 1
	CapBridge     CapabilityFlags = 1 << 2
	CapWLANAP     CapabilityFlags = 1 << 3
	CapRouter     CapabilityFlags = 1 << 4
	CapTelephone  CapabilityFlags = 1 << 5
	CapDOCSIS     CapabilityFlags = 1 << 6
	CapStation    CapabilityFlags = 1 << 7
	CapCVLAN      CapabilityFlags = 1 << 8
	CapSVLAN      CapabilityFlags = 1 << 9
	CapTwoPortMAC CapabilityFlags = 1 << 10
)

var capNames = []string{"other", "repeater", "bridge", "wlan-ap", "router",
	"telephone", "docsis", "station", "c-vlan", "s-vlan", "tpmr"}

// String lists the set flags, e.g. "bridge,router".
func (f CapabilityFlags) String() string {
	var names []string
	for i, n := range capNames {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	for i := len(capNames); i < 16; i++ {
		if f&(1<<i) != 0 {
			names = append(names, fmt.Sprintf("bit%d", i))
		}
	}
	return strings.Join(names, ",")
}

// Capabilities is the System Capabilities TLV: what the system can do and
// what is turned on.
type Capabilities struct {
	Supported CapabilityFlags
	Enabled   CapabilityFlags
}

// Frame is one LLDPDU: the payload of an LLDP Ethernet frame, without the
// Ethernet header. Optional TLVs this package does not model (port
// description is modelled, organisationally specific TLVs are not) are
// skipped on decode. Empty optional fields are not encoded.
type Frame struct {
	ChassisID ChassisID
	PortID    PortID
	// TTL is whole seconds on the wire; 0 is a shutdown frame.
	TTL               time.Duration
	PortDescription   string
	SystemName        string
	SystemDescription string
	// Capabilities is encoded when either set of flags is non-zero.
	Capabilities Capabilities
	// MgmtAddrs are the IPv4/IPv6 management addresses, in frame order.
	MgmtAddrs []netip.Addr
}

// IANA address family numbers used in the Management Address TLV.
const (
	afIPv4 = 1
	afIPv6 = 2
)

// MarshalBinary encodes the LLDPDU. It fails for values the wire format
// cannot carry (empty or over-long IDs and strings, TTL out of range).
func (f *Frame) MarshalBinary() ([]byte, error) {
	if err := checkID("chassis ID", f.ChassisID.ID); err != nil {
		return nil, err
	}
	if err := checkID("port ID", f.PortID.ID); err != nil {
		return nil, err
	}
	if f.TTL < 0 || f.TTL > maxTTL {
		return nil, fmt.Errorf("encoding TTL %v: out of range 0..%v", f.TTL, maxTTL)
	}
	var opt []*mdlldp.TLV
	addString := func(name string, typ mdlldp.TLVType, s string) error {
		if s == "" {
			return nil
		}
		if len(s) > maxStringLen {
			return fmt.Errorf("encoding %s: %d bytes, at most %d", name, len(s), maxStringLen)
		}
		opt = append(opt, &mdlldp.TLV{Type: typ, Length: uint16(len(s)), Value: []byte(s)})
		return nil
	}
	if err := addString("port description", mdlldp.TLVTypePortDescription, f.PortDescription); err != nil {
		return nil, err
	}
	if err := addString("system name", mdlldp.TLVTypeSystemName, f.SystemName); err != nil {
		return nil, err
	}
	if err := addString("system description", mdlldp.TLVTypeSystemDescription, f.SystemDescription); err != nil {
		return nil, err
	}
	if c := f.Capabilities; c.Supported != 0 || c.Enabled != 0 {
		v := make([]byte, 4)
		binary.BigEndian.PutUint16(v[0:2], uint16(c.Supported))
		binary.BigEndian.PutUint16(v[2:4], uint16(c.Enabled))
		opt = append(opt, &mdlldp.TLV{Type: mdlldp.TLVTypeSystemCapabilities, Length: 4, Value: v})
	}
	for _, a := range f.MgmtAddrs {
		v, err := marshalMgmtAddr(a)
		if err != nil {
			return nil, err
		}
		opt = append(opt, &mdlldp.TLV{Type: mdlldp.TLVTypeManagementAddress, Length: uint16(len(v)), Value: v})
	}
	// mdlldp.Frame writes the mandatory TLVs, then ours, and ends with
	// the End TLV (two zero bytes it reserves itself).
	mf := &mdlldp.Frame{
		ChassisID: &mdlldp.ChassisID{Subtype: mdlldp.ChassisIDSubtype(f.ChassisID.Subtype), ID: []byte(f.ChassisID.ID)},
		PortID:    &mdlldp.PortID{Subtype: mdlldp.PortIDSubtype(f.PortID.Subtype), ID: []byte(f.PortID.ID)},
		TTL:       f.TTL.Truncate(time.Second),
		Optional:  opt,
	}
	b, err := mf.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("encoding LLDPDU: %w", err)
	}
	return b, nil
}

func checkID(name, id string) error {
	if len(id) == 0 || len(id) > maxIDLen {
		return fmt.Errorf("encoding %s: length %d, want 1..%d", name, len(id), maxIDLen)
	}
	return nil
}

func marshalMgmtAddr(a netip.Addr) ([]byte, error) {
	var af byte
	switch {
	case a.Is4():
		af = afIPv4
	case a.Is6() && a.Zone() == "":
		af = afIPv6
	default:
		return nil, fmt.Errorf("encoding management address %v: not an IPv4 or unzoned IPv6 address", a)
	}
	ab := a.AsSlice()
	// string length, family, address, if subtype, if number, OID length.
	v := make([]byte, 0, 1+1+len(ab)+1+4+1)
	v = append(v, byte(1+len(ab)), af)
	v = append(v, ab...)
	v = append(v, 1, 0, 0, 0, 0, 0) // interface numbering unknown, number 0, no OID
	return v, nil
}

// UnmarshalBinary decodes an LLDPDU. It stops at the End TLV (Ethernet
// padding after it is ignored) or at the end of b. Every failure wraps
// ErrMalformed. The receiver is reset first.
func (f *Frame) UnmarshalBinary(b []byte) error {
	*f = Frame{}
	var seenTTL, seenName, seenDesc, seenPortDesc, seenCaps bool
	for i := 0; len(b) > 0; i++ {
		var t mdlldp.TLV
		if err := t.UnmarshalBinary(b); err != nil {
			return fmt.Errorf("%w: TLV %d: %v", ErrMalformed, i, err)
		}
		b = b[2+int(t.Length):]
		v := t.Value

		// The first three TLVs are mandatory, in this order.
		switch i {
		case 0:
			if t.Type != mdlldp.TLVTypeChassisID {
				return fmt.Errorf("%w: first TLV is type %d, want chassis ID", ErrMalformed, t.Type)
			}
			if len(v) < 2 || len(v) > 1+maxIDLen {
				return fmt.Errorf("%w: chassis ID TLV length %d", ErrMalformed, len(v))
			}
			f.ChassisID = ChassisID{Subtype: ChassisIDSubtype(v[0]), ID: string(v[1:])}
			continue
		case 1:
			if t.Type != mdlldp.TLVTypePortID {
				return fmt.Errorf("%w: second TLV is type %d, want port ID", ErrMalformed, t.Type)
			}
			if len(v) < 2 || len(v) > 1+maxIDLen {
				return fmt.Errorf("%w: port ID TLV length %d", ErrMalformed, len(v))
			}
			f.PortID = PortID{Subtype: PortIDSubtype(v[0]), ID: string(v[1:])}
			continue
		case 2:
			if t.Type != mdlldp.TLVTypeTTL {
				return fmt.Errorf("%w: third TLV is type %d, want TTL", ErrMalformed, t.Type)
			}
			if len(v) != 2 {
				return fmt.Errorf("%w: TTL TLV length %d, want 2", ErrMalformed, len(v))
			}
			f.TTL = time.Duration(binary.BigEndian.Uint16(v)) * time.Second
			seenTTL = true
			continue
		}

		switch t.Type {
		case mdlldp.TLVTypeEnd:
			f.normalize()
			return nil
		case mdlldp.TLVTypeChassisID, mdlldp.TLVTypePortID, mdlldp.TLVTypeTTL:
			return fmt.Errorf("%w: duplicate mandatory TLV type %d", ErrMalformed, t.Type)
		case mdlldp.TLVTypePortDescription:
			takeFirst(&seenPortDesc, &f.PortDescription, v)
		case mdlldp.TLVTypeSystemName:
			takeFirst(&seenName, &f.SystemName, v)
		case mdlldp.TLVTypeSystemDescription:
			takeFirst(&seenDesc, &f.SystemDescription, v)
		case mdlldp.TLVTypeSystemCapabilities:
			if len(v) != 4 {
				return fmt.Errorf("%w: system capabilities TLV length %d, want 4", ErrMalformed, len(v))
			}
			if !seenCaps {
				seenCaps = true
				f.Capabilities = Capabilities{
					Supported: CapabilityFlags(binary.BigEndian.Uint16(v[0:2])),
					Enabled:   CapabilityFlags(binary.BigEndian.Uint16(v[2:4])),
				}
			}
		case mdlldp.TLVTypeManagementAddress:
			a, ok, err := unmarshalMgmtAddr(v)
			if err != nil {
				return err
			}
			if ok {
				f.MgmtAddrs = append(f.MgmtAddrs, a)
			}
		default:
			// Reserved and organisationally specific TLVs: skipped.
		}
	}
	// No End TLV (optional since 802.1AB-2016): accept the frame when the
	// three mandatory TLVs were all there.
	if !seenTTL {
		return fmt.Errorf("%w: missing mandatory TLVs", ErrMalformed)
	}
	f.normalize()
	return nil
}

func (f *Frame) normalize() {
	if len(f.MgmtAddrs) == 0 {
		f.MgmtAddrs = nil
	}
}

func takeFirst(seen *bool, dst *string, v []byte) {
	if *seen {
		return
	}
	*seen = true
	if len(v) > maxStringLen {
		v = v[:maxStringLen] // over-long per 802.1AB: keep what fits
	}
	*dst = string(v)
}

// unmarshalMgmtAddr decodes a Management Address TLV; ok is false for
// families other than IPv4/IPv6 (e.g. a MAC), which are skipped.
func unmarshalMgmtAddr(v []byte) (netip.Addr, bool, error) {
	// string length (1), address (1..31 incl. family byte), interface
	// subtype (1), interface number (4), OID length (1), OID (0..128).
	if len(v) < 9 {
		return netip.Addr{}, false, fmt.Errorf("%w: management address TLV length %d", ErrMalformed, len(v))
	}
	sl := int(v[0])
	if sl < 2 || sl > 32 || 1+sl+6 > len(v) {
		return netip.Addr{}, false, fmt.Errorf("%w: management address string length %d", ErrMalformed, sl)
	}
	oidLen := int(v[1+sl+5])
	if 1+sl+6+oidLen != len(v) {
		return netip.Addr{}, false, fmt.Errorf("%w: management address OID length %d", ErrMalformed, oidLen)
	}
	family, addr := v[1], v[2:1+sl]
	switch {
	case family == afIPv4 && len(addr) == 4:
		return netip.AddrFrom4([4]byte(addr)), true, nil
	case family == afIPv6 && len(addr) == 16:
		return netip.AddrFrom16([16]byte(addr)), true, nil
	case family == afIPv4 || family == afIPv6:
		return netip.Addr{}, false, fmt.Errorf("%w: management address family %d with %d bytes", ErrMalformed, family, len(addr))
	}
	return netip.Addr{}, false, nil
}

func formatMAC(id string) string {
	if len(id) == 6 {
		return net.HardwareAddr(id).String()
	}
	return formatHex(id)
}

func formatNetworkAddr(id string) string {
	if len(id) == 5 && id[0] == afIPv4 {
		return netip.AddrFrom4([4]byte([]byte(id[1:]))).String()
	}
	if len(id) == 17 && id[0] == afIPv6 {
		return netip.AddrFrom16([16]byte([]byte(id[1:]))).String()
	}
	return formatHex(id)
}

func formatText(id string) string {
	for _, r := range id {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f {
			return formatHex(id)
		}
	}
	return id
}

func formatHex(id string) string {
	var sb strings.Builder
	for i := 0; i < len(id); i++ {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02x", id[i])
	}
	return sb.String()
}
