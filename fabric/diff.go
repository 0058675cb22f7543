package fabric

import (
	"cmp"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Diff returns the kernel changes that turn actual into desired, in a safe
// order:
//
//  1. replace: release the slaves of, and delete, marked links whose
//     immutable attributes must change (a VRF's table; a VXLAN device's VNI,
//     local address or port; an SVI's VLAN or parent);
//  2. create missing links (marked), bridge first, then per VRF: the VRF,
//     its VXLAN device and its SVI;
//  3. set attributes: MTU, alias (description), MAC (router MAC);
//  4. set links up, desired ports up or down;
//  5. enslave: VXLAN devices and access ports into the bridge, SVIs and
//     routed ports into their VRF (a port moving between masters is moved
//     directly, without a release in between);
//  6. add bridge VLANs (the bridge itself, VXLAN PVIDs, access ports: a
//     port's VLANs need it enslaved first);
//  7. add addresses, then 8. delete the addresses the agent owns that are
//     no longer desired (an IPv4 address in the subnet of one being added
//     is deleted just before the add: the kernel would delete the new one,
//     a secondary, with it);
//  9. delete stale bridge VLANs;
//  10. release links from marked masters (and desired routed ports in the
//     default VRF from any master);
//  11. delete marked links no longer desired: SVIs, VXLAN devices, VRFs,
//     the bridge.
//
// So links are created before they are attached, everything is added before
// anything is deleted, and links are detached before their master is
// deleted. Within a phase changes follow the sorted names.
//
// Diff is pure. It expects a desired state that passed [Validate]; on one
// that did not, it still never emits a change to a foreign link other than a
// desired port: a desired link whose name is taken by a foreign link, an
// L3VNI that got no VLAN and a port that does not exist are left out.
func Diff(desired Desired, actual Actual) []Change {
	ix := actual.index()
	links := ix.links
	vlanOf := assignVLANs(desired, actual, ix)
	var replace, create, attrs, enslave, vlanAdd, up, addrAdd, addrDel, vlanDel, release, del []Change

	// The marked links desired, in creation order.
	type want struct {
		spec   Change
		master string
	}
	var wants []want
	bridge := ""
	if desired.needsBridge() {
		bridge = desired.bridgeName()
		mtu := 0
		if desired.Bridge != nil {
			mtu = desired.Bridge.MTU
		}
		wants = append(wants, want{spec: Change{Op: OpAddLink, Kind: KindBridge, Link: bridge, MTU: mtu}})
	}
	vrfs := slices.Clone(desired.VRFs)
	slices.SortFunc(vrfs, func(x, y VRF) int { return strings.Compare(x.Name, y.Name) })
	addrsOn := map[string][]netip.Prefix{} // link -> desired addresses
	addrsOn["lo"] = desired.Loopback.Addrs
	for _, v := range vrfs {
		wants = append(wants, want{spec: Change{Op: OpAddLink, Kind: KindVRF, Link: v.Name, Table: v.Table}})
		if v.L3VNI == nil {
			addrsOn[v.Name] = v.Addrs
			continue
		}
		vl, ok := vlanOf[v.L3VNI.VNI]
		if !ok {
			continue
		}
		svi := SVIName(vl)
		wants = append(wants,
			want{spec: Change{Op: OpAddLink, Kind: KindVXLAN, Link: VXLANName(v.L3VNI.VNI), VNI: v.L3VNI.VNI, Local: desired.VTEP}, master: bridge},
			want{spec: Change{Op: OpAddLink, Kind: KindVLAN, Link: svi, Parent: bridge, VLAN: vl, MAC: macString(v.L3VNI.RouterMAC)}, master: v.Name},
		)
		addrsOn[svi] = v.Addrs
	}

	wanted := map[string]bool{} // marked links desired
	gone := map[string]bool{}   // links re-created: their actual state is void
	skip := map[string]bool{}   // desired names taken by foreign links
	fresh := map[string]bool{}  // links that will be created
	for _, w := range wants {
		name := w.spec.Link
		wanted[name] = true
		l, exists := links[name]
		switch {
		case !exists:
		case !l.Owned() || l.Kind != w.spec.Kind:
			skip[name] = true
			continue
		case mustReplace(w.spec, l):
			gone[name] = true
			for _, s := range slavesOf(actual, name) {
				replace = append(replace, Change{Op: OpSetNoMaster, Link: s, Master: name})
			}
			replace = append(replace, Change{Op: OpDeleteLink, Kind: l.Kind, Link: name})
		default:
			if w.spec.Kind == KindBridge && w.spec.MTU != 0 && l.MTU != w.spec.MTU {
				attrs = append(attrs, Change{Op: OpSetMTU, Link: name, MTU: w.spec.MTU})
			}
			if w.spec.Kind == KindVLAN && w.spec.MAC != "" && !strings.EqualFold(l.MAC, w.spec.MAC) {
				attrs = append(attrs, Change{Op: OpSetMAC, Link: name, MAC: w.spec.MAC})
			}
		}
		present := exists && !gone[name]
		if !present {
			fresh[name] = true
			spec := w.spec
			if spec.Kind == KindBridge && spec.MTU != 0 {
				// A bridge created with an MTU still follows its ports'
				// MTUs; one set afterwards (by the user) sticks.
				spec.MTU = 0
				attrs = append(attrs, Change{Op: OpSetMTU, Link: name, MTU: w.spec.MTU})
			}
			create = append(create, spec)
		}
		if w.master != "" && !skip[w.master] && (!present || l.Master != w.master || gone[w.master] || fresh[w.master]) {
			enslave = append(enslave, Change{Op: OpSetMaster, Link: name, Master: w.master})
		}
		if !present || !l.AdminUp {
			up = append(up, Change{Op: OpSetUp, Link: name})
		}
	}
	// A link is "new" when its actual state does not count.
	isNew := func(name string) bool { return fresh[name] }

	// Bridge VLANs: the bridge itself and the VXLAN devices.
	if bridge != "" && !skip[bridge] {
		self := map[uint16]bool{}
		if desired.Bridge != nil {
			for _, v := range desired.Bridge.VLANs {
				self[v] = true
			}
		}
		for _, vl := range vlanOf {
			self[vl] = true
		}
		for _, p := range desired.Ports {
			if vid := accessVLAN(p, vlanOf); vid != 0 {
				self[vid] = true
			}
		}
		var want []BridgeVLAN
		for _, vid := range slices.Sorted(maps.Keys(self)) {
			want = append(want, BridgeVLAN{Link: bridge, VID: vid})
		}
		a, d := syncVLANs(bridge, true, want, haveVLANs(ix, bridge, isNew(bridge)))
		vlanAdd, vlanDel = append(vlanAdd, a...), append(vlanDel, d...)
		for _, v := range vrfs {
			if v.L3VNI == nil {
				continue
			}
			vl, ok := vlanOf[v.L3VNI.VNI]
			name := VXLANName(v.L3VNI.VNI)
			if !ok || skip[name] {
				continue
			}
			want := []BridgeVLAN{{Link: name, VID: vl, PVID: true, Untagged: true}}
			a, d := syncVLANs(name, false, want, haveVLANs(ix, name, isNew(name) || isNew(bridge)))
			vlanAdd, vlanDel = append(vlanAdd, a...), append(vlanDel, d...)
		}
	}

	// Ports handed over by the controller.
	portWanted := map[string]bool{}
	for _, p := range desired.allPorts() {
		l, ok := links[p.Name]
		if !ok || l.Owned() || portWanted[p.Name] {
			continue
		}
		portWanted[p.Name] = true
		if p.MTU != 0 && l.MTU != p.MTU {
			attrs = append(attrs, Change{Op: OpSetMTU, Link: p.Name, MTU: p.MTU})
		}
		if p.Description != "" && l.Alias != p.Description {
			attrs = append(attrs, Change{Op: OpSetAlias, Link: p.Name, Alias: p.Description})
		}
		master := p.VRF
		vid := accessVLAN(p.Port, vlanOf)
		if vid != 0 {
			master = bridge
		}
		switch {
		case master == "" && l.Master != "":
			release = append(release, Change{Op: OpSetNoMaster, Link: p.Name, Master: l.Master})
		case master != "" && !skip[master] && (l.Master != master || gone[master] || fresh[master]):
			enslave = append(enslave, Change{Op: OpSetMaster, Link: p.Name, Master: master})
		}
		if vid != 0 && !skip[bridge] {
			stale := l.Master != bridge || isNew(bridge)
			want := []BridgeVLAN{{Link: p.Name, VID: vid, PVID: true, Untagged: true}}
			a, d := syncVLANs(p.Name, false, want, haveVLANs(ix, p.Name, stale))
			vlanAdd, vlanDel = append(vlanAdd, a...), append(vlanDel, d...)
		}
		if p.keepAdmin {
			// A VRF.Ports shorthand: admin state left alone.
		} else if p.AdminUp && !l.AdminUp {
			up = append(up, Change{Op: OpSetUp, Link: p.Name})
		} else if !p.AdminUp && l.AdminUp {
			up = append(up, Change{Op: OpSetDown, Link: p.Name})
		}
		if vid == 0 {
			addrsOn[p.Name] = p.Addrs
		}
	}

	// Marked links no longer desired, deleted at the end.
	deleted := map[string]bool{}
	for _, l := range actual.sortedLinks() {
		if l.Owned() && !wanted[l.Name] {
			deleted[l.Name] = true
			del = append(del, Change{Op: OpDeleteLink, Kind: l.Kind, Link: l.Name})
		}
	}
	slices.SortStableFunc(del, func(x, y Change) int { return cmp.Compare(deleteRank(x.Kind), deleteRank(y.Kind)) })

	// Addresses.
	for _, name := range slices.Sorted(maps.Keys(addrsOn)) {
		l, ok := links[name]
		if skip[name] || (!ok && !fresh[name]) {
			continue
		}
		have := map[netip.Prefix]bool{}
		if !isNew(name) {
			for _, p := range ix.addrs[name] {
				have[p] = true
			}
		}
		seen := map[netip.Prefix]bool{}
		ps := slices.Clone(addrsOn[name])
		slices.SortFunc(ps, comparePrefix)
		for _, p := range ps {
			if seen[p] || have[p] {
				continue
			}
			seen[p] = true
			addrAdd = append(addrAdd, Change{Op: OpAddAddr, Link: name, Prefix: p, Label: addrLabel(name, p, ok && l.Owned() || fresh[name])})
		}
	}
	owned := map[Addr]bool{}
	for _, a := range actual.OwnedAddrs {
		owned[Addr{Link: a.Link, Prefix: a.Prefix}] = true
	}
	var stale []Addr
	for _, a := range actual.Addrs {
		l, ok := links[a.Link]
		if !ok || isLinkLocal(a.Prefix) || deleted[a.Link] || gone[a.Link] || slices.Contains(addrsOn[a.Link], a.Prefix) {
			continue
		}
		if l.Owned() || (a.Label != "" && a.Label == a.Link+AddrLabelSuffix) || owned[Addr{Link: a.Link, Prefix: a.Prefix}] {
			stale = append(stale, a)
		}
	}
	slices.SortFunc(stale, func(x, y Addr) int {
		return cmp.Or(strings.Compare(x.Link, y.Link), comparePrefix(x.Prefix, y.Prefix))
	})
	var addrDelFirst []Change
	for _, a := range stale {
		c := Change{Op: OpDelAddr, Link: a.Link, Prefix: a.Prefix}
		if replacesSubnet(a, addrAdd) {
			// Deleting a primary IPv4 address deletes the secondaries in
			// its subnet: delete it before adding the new one.
			addrDelFirst = append(addrDelFirst, c)
			continue
		}
		addrDel = append(addrDel, c)
	}

	// Release links from marked masters: foreign slaves no longer desired
	// there. Marked slaves are moved by enslave or deleted.
	for _, l := range actual.sortedLinks() {
		if l.Master == "" || l.Owned() || portWanted[l.Name] || gone[l.Master] {
			continue
		}
		if m, ok := links[l.Master]; ok && m.Owned() {
			release = append(release, Change{Op: OpSetNoMaster, Link: l.Name, Master: l.Master})
		}
	}
	slices.SortStableFunc(release, byLink)
	slices.SortStableFunc(enslave, byLink)
	slices.SortStableFunc(up, byLink)
	slices.SortStableFunc(attrs, byLink)

	var out []Change
	for _, phase := range [][]Change{replace, create, attrs, up, enslave, vlanAdd, addrDelFirst, addrAdd, addrDel, vlanDel, release, del} {
		out = append(out, phase...)
	}
	return out
}

// AssignVLANs returns the VLAN of every desired L3VNI that can get one: the
// VLAN its marked VXLAN device already has on the bridge when that is inside
// the range, else the lowest VLAN of the range that is free (not an explicit
// bridge or access VLAN, not on the bridge, not the name of an existing link
// vlan<N>, not given to another L3VNI). New VNIs are served in ascending
// order. A VNI missing from the result found the range exhausted.
func AssignVLANs(desired Desired, actual Actual) map[uint32]uint16 {
	return assignVLANs(desired, actual, actual.index())
}

func assignVLANs(desired Desired, actual Actual, ix actualIndex) map[uint32]uint16 {
	r := desired.vlanRange()
	out := map[uint32]uint16{}
	used := map[uint16]bool{}
	if desired.Bridge != nil {
		for _, v := range desired.Bridge.VLANs {
			used[v] = true
		}
	}
	for _, p := range desired.Ports {
		if p.AccessVLAN != 0 {
			used[p.AccessVLAN] = true
		}
	}
	var vnis []uint32
	for _, v := range desired.VRFs {
		if v.L3VNI != nil {
			vnis = append(vnis, v.L3VNI.VNI)
		}
	}
	slices.Sort(vnis)
	vnis = slices.Compact(vnis)
	var pending []uint32
	for _, vni := range vnis {
		if vl, ok := ix.l3vniVLAN(vni); ok && vl >= r.Min && vl <= r.Max && !used[vl] {
			out[vni] = vl
			used[vl] = true
			continue
		}
		pending = append(pending, vni)
	}
	if len(pending) == 0 {
		return out
	}
	bridge := desired.bridgeName()
	for _, v := range actual.VLANs {
		if v.Link == bridge {
			used[v.VID] = true
		}
	}
	for _, l := range actual.Links {
		if l.Kind == KindVLAN || strings.HasPrefix(l.Name, "vlan") {
			if l.VLANID != 0 {
				used[l.VLANID] = true
			}
			if n, ok := parseSVIName(l.Name); ok {
				used[n] = true
			}
		}
	}
	next := r.Min
	for _, vni := range pending {
		for next <= r.Max && used[next] {
			next++
		}
		if next > r.Max {
			break
		}
		out[vni] = next
		used[next] = true
	}
	return out
}

// replacesSubnet tells whether the IPv4 address a shares its subnet with an
// address added on the same link.
func replacesSubnet(a Addr, adds []Change) bool {
	if !a.Prefix.Addr().Is4() {
		return false
	}
	for _, c := range adds {
		if c.Link == a.Link && c.Prefix.Addr().Is4() && c.Prefix.Bits() == a.Prefix.Bits() && c.Prefix.Masked() == a.Prefix.Masked() {
			return true
		}
	}
	return false
}

func parseSVIName(name string) (uint16, bool) {
	s, ok := strings.CutPrefix(name, "vlan")
	if !ok || s == "" || len(s) > 4 {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n == 0 || n > 4094 || SVIName(uint16(n)) != name {
		return 0, false
	}
	return uint16(n), true
}

// portSpec is a desired port; keepAdmin marks one from the VRF.Ports
// shorthand.
type portSpec struct {
	Port
	keepAdmin bool
}

// allPorts returns Desired.Ports and the VRF.Ports shorthands, sorted by
// name (stable: a name listed twice keeps its first entry first).
func (d Desired) allPorts() []portSpec {
	out := d.portsInOrder()
	slices.SortStableFunc(out, func(x, y portSpec) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// portsInOrder returns Desired.Ports, then the VRF.Ports shorthands, as
// listed.
func (d Desired) portsInOrder() []portSpec {
	var out []portSpec
	for _, p := range d.Ports {
		out = append(out, portSpec{Port: p})
	}
	for _, v := range d.VRFs {
		for _, p := range v.Ports {
			out = append(out, portSpec{Port: Port{Name: p, VRF: v.Name}, keepAdmin: true})
		}
	}
	return out
}

func (d Desired) vlanRange() VLANRange {
	if d.VLANRange == (VLANRange{}) {
		return DefaultVLANRange
	}
	return d.VLANRange
}

func (d Desired) bridgeName() string {
	if d.Bridge != nil && d.Bridge.Name != "" {
		return d.Bridge.Name
	}
	return DefaultBridgeName
}

// needsBridge tells whether the desired state has a bridge.
func (d Desired) needsBridge() bool {
	if d.Bridge != nil {
		return true
	}
	for _, v := range d.VRFs {
		if v.L3VNI != nil {
			return true
		}
	}
	for _, p := range d.Ports {
		if p.AccessVLAN != 0 || p.AccessVNI != 0 {
			return true
		}
	}
	return false
}

// accessVLAN returns the VLAN of an access port, 0 for a routed port or an
// AccessVNI without a VLAN.
func accessVLAN(p Port, vlanOf map[uint32]uint16) uint16 {
	if p.AccessVLAN != 0 {
		return p.AccessVLAN
	}
	if p.AccessVNI != 0 {
		return vlanOf[p.AccessVNI]
	}
	return 0
}

// mustReplace tells whether the marked link l differs from spec in an
// attribute the kernel cannot change in place.
func mustReplace(spec Change, l Link) bool {
	switch spec.Kind {
	case KindVRF:
		return l.VRFTable != spec.Table
	case KindVXLAN:
		return l.VNI != spec.VNI || l.VXLANLocal != addrString(spec.Local) || l.VXLANPort != VXLANPort || l.VXLANLearning
	case KindVLAN:
		return l.VLANID != spec.VLAN || l.Parent != spec.Parent
	}
	return false
}

func haveVLANs(ix actualIndex, link string, stale bool) []BridgeVLAN {
	if stale {
		return nil
	}
	return ix.vlans[link]
}

// syncVLANs returns the changes that turn the bridge VLAN entries have of one
// link into want (both sorted by VID): entries missing or with other flags
// are added, entries not wanted deleted; consecutive VLANs with the same
// flags (and no PVID) are merged into ranges.
func syncVLANs(link string, self bool, want, have []BridgeVLAN) (add, del []Change) {
	h := map[uint16]BridgeVLAN{}
	for _, v := range have {
		h[v.VID] = v
	}
	w := map[uint16]bool{}
	var toAdd, toDel []BridgeVLAN
	for _, v := range want {
		w[v.VID] = true
		if hv, ok := h[v.VID]; !ok || hv.PVID != v.PVID || hv.Untagged != v.Untagged {
			toAdd = append(toAdd, v)
		}
	}
	for _, v := range have {
		if !w[v.VID] {
			toDel = append(toDel, v)
		}
	}
	return vlanRanges(OpAddBridgeVLAN, link, self, toAdd), vlanRanges(OpDelBridgeVLAN, link, self, toDel)
}

func vlanRanges(op Op, link string, self bool, vs []BridgeVLAN) []Change {
	var out []Change
	for _, v := range vs {
		if n := len(out); n > 0 && !v.PVID {
			last := &out[n-1]
			end := max(last.VLANEnd, last.VLAN)
			if !last.PVID && last.Untagged == v.Untagged && end+1 == v.VID {
				last.VLANEnd = v.VID
				continue
			}
		}
		c := Change{Op: op, Link: link, VLAN: v.VID, Self: self}
		if op == OpAddBridgeVLAN {
			c.PVID, c.Untagged = v.PVID, v.Untagged
		}
		out = append(out, c)
	}
	return out
}

// addrLabel returns the IFA_LABEL marking an IPv4 address the agent adds to
// a foreign link; "" for IPv6, for marked links and when the label would not
// fit IFNAMSIZ.
func addrLabel(link string, p netip.Prefix, ownedLink bool) string {
	if ownedLink || !p.Addr().Is4() || len(link)+len(AddrLabelSuffix) > 15 {
		return ""
	}
	return link + AddrLabelSuffix
}

func deleteRank(kind string) int {
	switch kind {
	case KindVLAN:
		return 0
	case KindVXLAN:
		return 1
	case KindVRF:
		return 2
	default:
		return 3
	}
}

func byLink(x, y Change) int { return strings.Compare(x.Link, y.Link) }

// slavesOf returns the names of the links enslaved to master, sorted.
func slavesOf(a Actual, master string) []string {
	var names []string
	for _, l := range a.Links {
		if l.Master == master {
			names = append(names, l.Name)
		}
	}
	slices.Sort(names)
	return names
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func macString(m net.HardwareAddr) string {
	if len(m) == 0 {
		return ""
	}
	return m.String()
}

func parseMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		return nil
	}
	return m
}
