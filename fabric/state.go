package fabric

import (
	"cmp"
	"net/netip"
	"reflect"
	"slices"
	"strings"
)

// Link returns the link with the given name.
func (a Actual) Link(name string) (Link, bool) {
	for _, l := range a.Links {
		if l.Name == name {
			return l, true
		}
	}
	return Link{}, false
}

// Ports returns the links that count as switch ports, sorted by name.
func (a Actual) Ports() []Link {
	var ports []Link
	for _, l := range a.Links {
		if l.IsPort() {
			ports = append(ports, l)
		}
	}
	slices.SortFunc(ports, func(x, y Link) int { return strings.Compare(x.Name, y.Name) })
	return ports
}

// AddrsOf returns the addresses on link, sorted.
func (a Actual) AddrsOf(link string) []netip.Prefix {
	var out []netip.Prefix
	for _, ad := range a.Addrs {
		if ad.Link == link {
			out = append(out, ad.Prefix)
		}
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

// VLANsOf returns the bridge VLAN entries of link, sorted by VID.
func (a Actual) VLANsOf(link string) []BridgeVLAN {
	var out []BridgeVLAN
	for _, v := range a.VLANs {
		if v.Link == link {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(x, y BridgeVLAN) int { return cmp.Compare(x.VID, y.VID) })
	return out
}

// L3VNIVLAN returns the VLAN of the L3VNI vni as the kernel has it: the
// PVID of the marked VXLAN device vxlan<VNI> on its bridge.
func (a Actual) L3VNIVLAN(vni uint32) (uint16, bool) {
	name := VXLANName(vni)
	l, ok := a.Link(name)
	if !ok || !l.Owned() || l.Kind != KindVXLAN {
		return 0, false
	}
	for _, v := range a.VLANs {
		if v.Link == name && v.PVID {
			return v.VID, true
		}
	}
	return 0, false
}

// Owned summarises the part of the kernel this package manages in the shape
// of a [Desired]: marked VRFs (with their L3VNI, read back from vxlan<VNI>
// and the SVI, and the addresses on the SVI or VRF), the marked bridge, and
// the ports enslaved to them: a foreign link in a marked VRF is listed by
// name in VRF.Ports (the shorthand), an access port in the marked bridge in
// Desired.Ports (name, admin state, MTU, access VLAN, labelled addresses).
// Loopback, VTEP and VLANRange are left zero; lists are sorted by name. A
// Desired that uses the same shapes equals it after a successful Apply.
func (a Actual) Owned() Desired {
	var d Desired
	links := a.byName()
	sviOf := map[string]Link{} // vrf -> svi
	for _, l := range a.Links {
		if l.Owned() && l.Kind == KindVLAN && l.Master != "" {
			sviOf[l.Master] = l
		}
	}
	vrfPorts := map[string][]string{}
	for _, l := range a.sortedLinks() {
		switch {
		case l.Owned() && l.Kind == KindBridge:
			d.Bridge = &Bridge{Name: l.Name, MTU: l.MTU}
		case l.Owned() && l.Kind == KindVRF:
			v := VRF{Name: l.Name, Table: l.VRFTable}
			addrOn := l.Name
			if svi, ok := sviOf[l.Name]; ok {
				addrOn = svi.Name
				for _, x := range a.Links {
					if x.Owned() && x.Kind == KindVXLAN {
						if vl, ok := a.L3VNIVLAN(x.VNI); ok && vl == svi.VLANID {
							v.L3VNI = &L3VNI{VNI: x.VNI, RouterMAC: parseMAC(svi.MAC)}
						}
					}
				}
			}
			for _, p := range a.AddrsOf(addrOn) {
				if !isLinkLocal(p) {
					v.Addrs = append(v.Addrs, p)
				}
			}
			d.VRFs = append(d.VRFs, v)
		case !l.Owned() && l.Master != "":
			m, ok := links[l.Master]
			if !ok || !m.Owned() {
				continue
			}
			if m.Kind == KindVRF {
				vrfPorts[m.Name] = append(vrfPorts[m.Name], l.Name)
				continue
			}
			p := Port{Name: l.Name, AdminUp: l.AdminUp, MTU: l.MTU}
			for _, v := range a.VLANsOf(l.Name) {
				if v.PVID {
					p.AccessVLAN = v.VID
				}
			}
			for _, ad := range a.Addrs {
				if ad.Link == l.Name && ad.Label == l.Name+AddrLabelSuffix {
					p.Addrs = append(p.Addrs, ad.Prefix)
				}
			}
			d.Ports = append(d.Ports, p)
		}
	}
	for i := range d.VRFs {
		d.VRFs[i].Ports = vrfPorts[d.VRFs[i].Name]
	}
	return d
}

func (a Actual) byName() map[string]Link {
	m := make(map[string]Link, len(a.Links))
	for _, l := range a.Links {
		m[l.Name] = l
	}
	return m
}

func (a Actual) sortedLinks() []Link {
	links := slices.Clone(a.Links)
	slices.SortFunc(links, func(x, y Link) int { return strings.Compare(x.Name, y.Name) })
	return links
}

func comparePrefix(x, y netip.Prefix) int {
	if c := x.Addr().Compare(y.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(x.Bits(), y.Bits())
}

// isLinkLocal tells whether p is an IPv6 link-local address, which the
// kernel adds by itself and the reconciler never touches.
func isLinkLocal(p netip.Prefix) bool {
	return p.Addr().Is6() && p.Addr().IsLinkLocalUnicast()
}

// actualIndex is Actual looked up by link name, built once per Diff so that
// the diff stays linear in the size of the kernel state.
type actualIndex struct {
	links map[string]Link
	vlans map[string][]BridgeVLAN // sorted by VID
	addrs map[string][]netip.Prefix
}

func (a Actual) index() actualIndex {
	ix := actualIndex{
		links: a.byName(),
		vlans: make(map[string][]BridgeVLAN),
		addrs: make(map[string][]netip.Prefix),
	}
	for _, v := range a.VLANs {
		ix.vlans[v.Link] = append(ix.vlans[v.Link], v)
	}
	for _, vs := range ix.vlans {
		slices.SortFunc(vs, func(x, y BridgeVLAN) int { return cmp.Compare(x.VID, y.VID) })
	}
	for _, ad := range a.Addrs {
		ix.addrs[ad.Link] = append(ix.addrs[ad.Link], ad.Prefix)
	}
	return ix
}

// l3vniVLAN is Actual.L3VNIVLAN over the index.
func (ix actualIndex) l3vniVLAN(vni uint32) (uint16, bool) {
	name := VXLANName(vni)
	l, ok := ix.links[name]
	if !ok || !l.Owned() || l.Kind != KindVXLAN {
		return 0, false
	}
	for _, v := range ix.vlans[name] {
		if v.PVID {
			return v.VID, true
		}
	}
	return 0, false
}

// Equal tells whether d and o are deeply equal (nil and empty slices
// differ). It also lets go-cmp compare Desired values, which hold netip
// types with unexported fields.
func (d Desired) Equal(o Desired) bool { return reflect.DeepEqual(d, o) }

// Equal tells whether a and o are equal (see [Desired.Equal]).
func (a Addr) Equal(o Addr) bool { return a == o }
