package fabric

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ValidationError says why a desired state was rejected. Nothing was changed.
type ValidationError struct {
	// Problems lists every problem found, one sentence each.
	Problems []string
}

func (e *ValidationError) Error() string {
	return "invalid desired config: " + strings.Join(e.Problems, "; ")
}

// Reserved kernel routing tables a VRF must not use (unspec, default, main,
// local).
var reservedTables = map[uint32]string{0: "unspec", 253: "default", 254: "main", 255: "local"}

// maxVNI is the largest 24-bit VXLAN network identifier.
const maxVNI = 1<<24 - 1

// Validate checks desired on its own and against the kernel state actual. It
// returns a *ValidationError listing every problem, or nil:
//
//   - VRF names must be valid device names, unique; tables unique and not
//     reserved (0, 253, 254, 255), and not used by an unmarked VRF;
//   - L3VNIs: VNI 1..16777215 and unique, a valid VTEP address, a unicast
//     6-byte router MAC, and a VLAN left in the range;
//   - the VLAN range is 1..4094 with Min <= Max; bridge and access VLANs are
//     1..4094 and not the VLAN of an L3VNI;
//   - a port must exist, be listed once, not be a loopback, a VRF, a link
//     the agent created or the name of a desired link; its VRF must be
//     desired; it is routed or access, not both; an AccessVNI must be a
//     desired L3VNI; an access port has no addresses; MTU 0 or 68..65535;
//   - a desired link (VRF, bridge, vxlan<VNI>, vlan<N>) must not have the
//     name of a foreign link;
//   - addresses must be valid prefixes; IPv6 link-local ones are not
//     allowed (the kernel manages them).
func Validate(desired Desired, actual Actual) error {
	var problems []string
	addf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	links := actual.byName()
	vlanOf := AssignVLANs(desired, actual)
	taken := func(what, name string) {
		if l, ok := links[name]; ok && !l.Owned() {
			if l.Kind == KindVRF || l.Kind == KindBridge || l.Kind == KindVXLAN || l.Kind == KindVLAN {
				addf("%s %s: the name is taken by an unmarked %s (alias %q), which is never changed", what, name, l.Kind, l.Alias)
			} else {
				addf("%s %s: the name is taken by an existing %s device", what, name, l.Kind)
			}
		} else if ok && l.Kind != kindOf(what) {
			addf("%s %s: the name is taken by a marked %s", what, name, l.Kind)
		}
	}

	desiredLinks := map[string]bool{}
	for _, v := range desired.VRFs {
		desiredLinks[v.Name] = true
		if v.L3VNI != nil {
			desiredLinks[VXLANName(v.L3VNI.VNI)] = true
			if vl, ok := vlanOf[v.L3VNI.VNI]; ok {
				desiredLinks[SVIName(vl)] = true
			}
		}
	}
	if desired.needsBridge() {
		desiredLinks[desired.bridgeName()] = true
	}

	// VLANs.
	r := desired.VLANRange
	if r != (VLANRange{}) && (r.Min < 1 || r.Max > 4094 || r.Min > r.Max) {
		addf("vlan range %d-%d is not within 1-4094 with min <= max", r.Min, r.Max)
	}
	l3vniVLAN := map[uint16]uint32{}
	for vni, vl := range vlanOf {
		l3vniVLAN[vl] = vni
	}
	checkVLAN := func(what string, vid uint16) {
		if vid < 1 || vid > 4094 {
			addf("%s: vlan %d is out of range 1-4094", what, vid)
		} else if vni, ok := l3vniVLAN[vid]; ok {
			addf("%s: vlan %d is the vlan of l3vni %d", what, vid, vni)
		}
	}

	// Bridge.
	if desired.Bridge != nil {
		if err := checkLinkName(desired.bridgeName()); err != nil {
			addf("bridge: %v", err)
		} else {
			taken("bridge", desired.bridgeName())
		}
		if desired.Bridge.MTU < 0 || desired.Bridge.MTU > 65535 {
			addf("bridge: mtu %d is out of range", desired.Bridge.MTU)
		}
		for _, v := range desired.Bridge.VLANs {
			checkVLAN("bridge", v)
		}
	} else if desired.needsBridge() {
		taken("bridge", desired.bridgeName())
	}

	// Loopback.
	for _, p := range desired.Loopback.Addrs {
		checkPrefix(addf, "loopback", p)
	}

	// VRFs.
	seen := map[string]bool{}
	tables := map[uint32]string{}
	vnis := map[uint32]string{}
	foreignTables := map[uint32]string{}
	for _, l := range actual.Links {
		if l.Kind == KindVRF && !l.Owned() {
			foreignTables[l.VRFTable] = l.Name
		}
	}
	for i, v := range desired.VRFs {
		if err := checkLinkName(v.Name); err != nil {
			addf("vrf #%d: %v", i, err)
			continue
		}
		if seen[v.Name] {
			addf("vrf %s is listed more than once", v.Name)
			continue
		}
		seen[v.Name] = true
		if what, ok := reservedTables[v.Table]; ok {
			addf("vrf %s: table %d is reserved (%s)", v.Name, v.Table, what)
		} else if other, dup := tables[v.Table]; dup {
			addf("table %d is used by vrf %s and vrf %s", v.Table, other, v.Name)
		} else {
			tables[v.Table] = v.Name
		}
		taken("vrf", v.Name)
		if other, ok := foreignTables[v.Table]; ok && other != v.Name {
			addf("vrf %s: table %d is used by unmarked vrf %s", v.Name, v.Table, other)
		}
		for _, p := range v.Addrs {
			checkPrefix(addf, "vrf "+v.Name, p)
		}
		if v.L3VNI == nil {
			continue
		}
		vni := v.L3VNI.VNI
		switch {
		case vni < 1 || vni > maxVNI:
			addf("vrf %s: vni %d is out of range 1-%d", v.Name, vni, maxVNI)
			continue
		case vnis[vni] != "":
			addf("vni %d is used by vrf %s and vrf %s", vni, vnis[vni], v.Name)
			continue
		}
		vnis[vni] = v.Name
		if !desired.VTEP.IsValid() || desired.VTEP.IsUnspecified() {
			addf("vrf %s: an l3vni needs a vtep address", v.Name)
		}
		if m := v.L3VNI.RouterMAC; m != nil && (len(m) != 6 || m[0]&1 == 1) {
			addf("vrf %s: router mac %s is not a unicast ethernet address", v.Name, m)
		}
		taken("vxlan", VXLANName(vni))
		if vl, ok := vlanOf[vni]; !ok {
			r := desired.vlanRange()
			addf("vrf %s: no free vlan left in range %d-%d for vni %d", v.Name, r.Min, r.Max, vni)
		} else {
			taken("vlan", SVIName(vl))
		}
	}

	// Ports.
	portIn := map[string]portSpec{}
	for _, p := range desired.portsInOrder() {
		of := ""
		if p.keepAdmin {
			of = " of vrf " + p.VRF
		}
		if p.Name == "" {
			if of != "" {
				addf("vrf %s: empty port name", p.VRF)
			} else {
				addf("empty port name")
			}
			continue
		}
		if other, dup := portIn[p.Name]; dup {
			switch {
			case other.keepAdmin && p.keepAdmin && other.VRF == p.VRF:
				addf("port %s is listed twice in vrf %s", p.Name, p.VRF)
			case other.keepAdmin && p.keepAdmin:
				addf("port %s is in vrf %s and vrf %s", p.Name, other.VRF, p.VRF)
			default:
				addf("port %s is listed more than once", p.Name)
			}
			continue
		}
		portIn[p.Name] = p
		l, ok := links[p.Name]
		switch {
		case desiredLinks[p.Name]:
			addf("port %s%s is the name of a desired link", p.Name, of)
			continue
		case !ok:
			addf("port %s%s does not exist", p.Name, of)
		case l.Loopback || p.Name == "lo":
			addf("port %s%s is a loopback", p.Name, of)
		case l.Kind == KindVRF:
			addf("port %s%s is a vrf", p.Name, of)
		case l.Owned():
			addf("port %s%s is a %s the agent created", p.Name, of, l.Kind)
		}
		access := p.AccessVLAN != 0 || p.AccessVNI != 0
		switch {
		case p.VRF != "" && access:
			addf("port %s is both a routed port in vrf %s and an access port", p.Name, p.VRF)
		case p.AccessVLAN != 0 && p.AccessVNI != 0:
			addf("port %s has both an access vlan and an access vni", p.Name)
		case p.VRF != "" && !seen[p.VRF] && !slices.ContainsFunc(desired.VRFs, func(v VRF) bool { return v.Name == p.VRF }):
			addf("port %s: vrf %s is not a desired vrf", p.Name, p.VRF)
		case p.AccessVLAN != 0:
			checkVLAN("port "+p.Name, p.AccessVLAN)
		case p.AccessVNI != 0 && vnis[p.AccessVNI] == "":
			addf("port %s: access vni %d is not the l3vni of a desired vrf", p.Name, p.AccessVNI)
		}
		if access && len(p.Addrs) > 0 {
			addf("port %s is an access port and cannot have addresses", p.Name)
		}
		if p.MTU != 0 && (p.MTU < 68 || p.MTU > 65535) {
			addf("port %s: mtu %d is out of range 68-65535", p.Name, p.MTU)
		}
		for _, a := range p.Addrs {
			checkPrefix(addf, "port "+p.Name, a)
		}
	}
	if len(problems) > 0 {
		return &ValidationError{Problems: problems}
	}
	return nil
}

func checkPrefix(addf func(string, ...any), what string, p netip.Prefix) {
	switch {
	case !p.IsValid():
		addf("%s: invalid address %s", what, p)
	case isLinkLocal(p):
		addf("%s: link-local address %s is managed by the kernel", what, p)
	case p.Addr().Is4In6() || p.Addr().Zone() != "":
		addf("%s: address %s must be plain IPv4 or IPv6", what, p)
	}
}

func kindOf(what string) string {
	switch what {
	case "vrf":
		return KindVRF
	case "bridge":
		return KindBridge
	case "vxlan":
		return KindVXLAN
	case "vlan":
		return KindVLAN
	}
	return what
}

// checkLinkName checks a kernel device name (IFNAMSIZ, no '/', ':' or
// whitespace, not "." or "..").
func checkLinkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty name")
	case len(name) > 15:
		return fmt.Errorf("name %q is longer than 15 bytes", name)
	case name == "." || name == "..":
		return fmt.Errorf("name %q is not a valid device name", name)
	case strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("name %q contains '/', ':' or whitespace", name)
	}
	return nil
}
