package agent

import (
	"net/netip"

	"github.com/metalfabric/fabric/fabric"
)

// This file is the part of drift handling that follows the shape of
// fabric.Desired: which links and addresses the desired config names.

// desiredLinkNames returns the links the desired config names: the ports
// handed over (Desired.Ports and the VRFs' shorthand ports), the VRFs, the bridge, the VXLAN devices of the L3VNIs, and lo
// when the config puts addresses there. (SVIs are found as owned links: their
// VLAN is picked from the kernel.)
func desiredLinkNames(d fabric.Desired) []string {
	var names []string
	for _, p := range d.Ports {
		names = append(names, p.Name)
	}
	for _, v := range d.VRFs {
		names = append(names, v.Name)
		names = append(names, v.Ports...) // shorthand routed ports
		if v.L3VNI != nil {
			names = append(names, fabric.VXLANName(v.L3VNI.VNI))
		}
	}
	if d.Bridge != nil {
		name := d.Bridge.Name
		if name == "" {
			name = fabric.DefaultBridgeName
		}
		names = append(names, name)
	}
	if len(d.Loopback.Addrs) > 0 {
		names = append(names, "lo")
	}
	return names
}

// desiredAddr tells whether the desired config puts prefix on link (lo,
// a port, or a VRF device without L3VNI; addresses on SVIs are on owned links
// and count as managed anyway).
func desiredAddr(d fabric.Desired, link string, prefix netip.Prefix) bool {
	has := func(ps []netip.Prefix) bool {
		for _, p := range ps {
			if p == prefix {
				return true
			}
		}
		return false
	}
	if link == "lo" {
		return has(d.Loopback.Addrs)
	}
	for _, p := range d.Ports {
		if p.Name == link && has(p.Addrs) {
			return true
		}
	}
	for _, v := range d.VRFs {
		if v.Name == link && has(v.Addrs) {
			return true
		}
	}
	return false
}
