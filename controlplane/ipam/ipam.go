// Package ipam holds the controller's pure allocation arithmetic: the VNI
// pool and host addresses inside a prefix. It owns no state; callers pass in
// what is in use. It must not do I/O.
package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// ErrExhausted is returned when nothing is left to allocate.
var ErrExhausted = errors.New("exhausted")

// MaxVNI is the largest 24-bit VXLAN network identifier.
const MaxVNI = 1<<24 - 1

// VNIRange is an inclusive range of VNIs. A tenant VRF's kernel table id
// equals its VNI, so the range must avoid the reserved tables 253-255
// (default, main, local).
type VNIRange struct {
	First, Last uint32
}

// DefaultVNIRange is the pool used unless configured otherwise.
var DefaultVNIRange = VNIRange{First: 10000, Last: 19999}

func (r VNIRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }

// Validate checks the range bounds.
func (r VNIRange) Validate() error {
	switch {
	case r.First == 0:
		return fmt.Errorf("vni range %s: VNI 0 is not usable", r)
	case r.Last > MaxVNI:
		return fmt.Errorf("vni range %s: VNIs are 24 bits, at most %d", r, MaxVNI)
	case r.First > r.Last:
		return fmt.Errorf("vni range %s: first is above last", r)
	case r.First <= 255 && r.Last >= 253:
		return fmt.Errorf("vni range %s: overlaps the reserved kernel tables 253-255 (VRF table = VNI)", r)
	}
	return nil
}

// ParseVNIRange parses "first-last", e.g. "10000-19999".
func ParseVNIRange(s string) (VNIRange, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return VNIRange{}, fmt.Errorf("vni range %q: want first-last, e.g. 10000-19999", s)
	}
	first, err := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	if err != nil {
		return VNIRange{}, fmt.Errorf("vni range %q: first: %w", s, err)
	}
	last, err := strconv.ParseUint(strings.TrimSpace(b), 10, 32)
	if err != nil {
		return VNIRange{}, fmt.Errorf("vni range %q: last: %w", s, err)
	}
	r := VNIRange{First: uint32(first), Last: uint32(last)}
	if err := r.Validate(); err != nil {
		return VNIRange{}, err
	}
	return r, nil
}

// NextVNI returns the lowest VNI of r not in used.
func NextVNI(r VNIRange, used map[uint32]bool) (uint32, error) {
	for v := uint64(r.First); v <= uint64(r.Last); v++ {
		if !used[uint32(v)] {
			return uint32(v), nil
		}
	}
	return 0, fmt.Errorf("vni range %s: all %d VNIs in use: %w", r, uint64(r.Last)-uint64(r.First)+1, ErrExhausted)
}

// FirstHost returns the lowest assignable host address of p: the network
// address is skipped. ok is false when p has no host addresses.
func FirstHost(p netip.Prefix) (netip.Addr, bool) {
	p = p.Masked()
	a := p.Addr().Next()
	if !a.IsValid() || !p.Contains(a) || isBroadcast(p, a) {
		return netip.Addr{}, false
	}
	return a, true
}

// NextHost returns the lowest host address of p that is not in used: the
// network address is skipped, and for IPv4 prefixes shorter than /31 the
// broadcast address too.
func NextHost(p netip.Prefix, used map[netip.Addr]bool) (netip.Addr, error) {
	p = p.Masked()
	for a := p.Addr().Next(); a.IsValid() && p.Contains(a); a = a.Next() {
		if isBroadcast(p, a) {
			break
		}
		if !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("prefix %s: no free host address: %w", p, ErrExhausted)
}

// isBroadcast reports whether a is the IPv4 broadcast address of p.
func isBroadcast(p netip.Prefix, a netip.Addr) bool {
	if !p.Addr().Is4() || p.Bits() >= 31 {
		return false
	}
	next := a.Next()
	return !next.IsValid() || !p.Contains(next)
}

// ParsePrefix parses a network prefix in canonical form. A prefix with host
// bits set is rejected with a message naming the prefix that was probably
// meant.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("malformed prefix %q: want CIDR notation like 10.0.0.0/24 or 2001:db8::/64", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("prefix %s: IPv4-mapped IPv6 prefixes are not supported, use the IPv4 form", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("prefix %s has host bits set (did you mean %s?)", s, m)
	}
	if _, ok := FirstHost(p); !ok {
		return netip.Prefix{}, fmt.Errorf("prefix %s has no host addresses", p)
	}
	return p, nil
}

// ASNRange is an inclusive range of BGP AS numbers, one per switch.
type ASNRange struct {
	First, Last uint32
}

// DefaultASNRange is a slice of the private 32-bit ASN range (RFC 6996,
// 4200000000-4294967294) used unless configured otherwise.
var DefaultASNRange = ASNRange{First: 4210000001, Last: 4210099999}

func (r ASNRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }

// Validate checks the range bounds: no AS 0, no AS_TRANS (23456), no
// 4294967295 (reserved), first <= last.
func (r ASNRange) Validate() error {
	switch {
	case r.First == 0:
		return fmt.Errorf("asn range %s: AS 0 is reserved", r)
	case r.First > r.Last:
		return fmt.Errorf("asn range %s: first is above last", r)
	case r.Last == 4294967295:
		return fmt.Errorf("asn range %s: AS 4294967295 is reserved", r)
	case r.First <= 23456 && r.Last >= 23456:
		return fmt.Errorf("asn range %s: contains AS_TRANS 23456", r)
	}
	return nil
}

// ParseASNRange parses "first-last", e.g. "4210000001-4210099999".
func ParseASNRange(s string) (ASNRange, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return ASNRange{}, fmt.Errorf("asn range %q: want first-last, e.g. %s", s, DefaultASNRange)
	}
	first, err := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	if err != nil {
		return ASNRange{}, fmt.Errorf("asn range %q: first: %w", s, err)
	}
	last, err := strconv.ParseUint(strings.TrimSpace(b), 10, 32)
	if err != nil {
		return ASNRange{}, fmt.Errorf("asn range %q: last: %w", s, err)
	}
	r := ASNRange{First: uint32(first), Last: uint32(last)}
	if err := r.Validate(); err != nil {
		return ASNRange{}, err
	}
	return r, nil
}

// NextASN returns the lowest ASN of r not in used.
func NextASN(r ASNRange, used map[uint32]bool) (uint32, error) {
	for v := uint64(r.First); v <= uint64(r.Last); v++ {
		if !used[uint32(v)] {
			return uint32(v), nil
		}
	}
	return 0, fmt.Errorf("asn range %s: all %d ASNs in use: %w", r, uint64(r.Last)-uint64(r.First)+1, ErrExhausted)
}

// Capacity returns how many host addresses NextHost can hand out from p
// (network address and, for IPv4 shorter than /31, broadcast excluded),
// saturating at the largest uint64.
func Capacity(p netip.Prefix) uint64 {
	if !p.IsValid() {
		return 0
	}
	hostBits := p.Addr().BitLen() - p.Bits()
	if hostBits >= 64 {
		return ^uint64(0)
	}
	n := uint64(1) << hostBits
	n-- // the network address
	if p.Addr().Is4() && p.Bits() < 31 {
		n-- // broadcast
	}
	return n
}

// LastAddr returns the highest address of p.
func LastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// NextHostFunc returns the lowest host address of p (as NextHost counts
// them) at or above from that lies in none of skip and for which used
// reports false. An invalid from means the start of p.
func NextHostFunc(p netip.Prefix, from netip.Addr, skip []netip.Prefix, used func(netip.Addr) (bool, error)) (netip.Addr, error) {
	p = p.Masked()
	a := p.Addr().Next()
	if from.IsValid() && from.Compare(a) > 0 {
		a = from
	}
next:
	for ; a.IsValid() && p.Contains(a); a = a.Next() {
		if isBroadcast(p, a) {
			break
		}
		for _, s := range skip {
			if s.Contains(a) {
				a = LastAddr(s) // the loop steps past it
				continue next
			}
		}
		u, err := used(a)
		if err != nil {
			return netip.Addr{}, err
		}
		if !u {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("prefix %s: no free host address: %w", p, ErrExhausted)
}

// NextChild returns the lowest prefix of length bits inside parent that
// overlaps none of taken (other children, and allocated addresses as host
// prefixes). The child must be strictly longer than the parent and have host
// addresses.
func NextChild(parent netip.Prefix, bits int, taken []netip.Prefix) (netip.Prefix, error) {
	parent = parent.Masked()
	if bits <= parent.Bits() || bits > parent.Addr().BitLen() {
		return netip.Prefix{}, fmt.Errorf("child length /%d: want a length between /%d and /%d", bits, parent.Bits()+1, parent.Addr().BitLen())
	}
	if _, ok := FirstHost(netip.PrefixFrom(parent.Addr(), bits)); !ok {
		return netip.Prefix{}, fmt.Errorf("child length /%d: a /%d has no host addresses", bits, bits)
	}
	obstacles := make([]netip.Prefix, 0, len(taken))
	for _, t := range taken {
		if t.Overlaps(parent) {
			obstacles = append(obstacles, t.Masked())
		}
	}
	slices.SortFunc(obstacles, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	cur := parent.Addr()
	for _, o := range obstacles {
		if LastAddr(o).Less(cur) {
			continue
		}
		c := netip.PrefixFrom(cur, bits)
		if LastAddr(c).Less(o.Addr()) {
			return c, nil
		}
		// Step past the obstacle, to the next child boundary.
		cur = LastAddr(o).Next()
		if !cur.IsValid() || !parent.Contains(cur) {
			break
		}
		if m := netip.PrefixFrom(cur, bits).Masked(); m.Addr() != cur {
			cur = LastAddr(m).Next()
		}
		if !cur.IsValid() || !parent.Contains(cur) {
			break
		}
	}
	if cur.IsValid() && parent.Contains(cur) {
		return netip.PrefixFrom(cur, bits), nil
	}
	return netip.Prefix{}, fmt.Errorf("prefix %s: no free /%d: %w", parent, bits, ErrExhausted)
}
