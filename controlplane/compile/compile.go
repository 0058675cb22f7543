// Package compile turns inventory and allocations into each device's desired
// config. It is pure: no I/O, no clock, no store, no protobuf. Versions are
// not its business either; it leaves DeviceConfig.Version zero.
package compile

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"

	"github.com/metalfabric/fabric/controlplane/model"
)

// Input is everything the compiler looks at.
type Input struct {
	Devices  []model.Device
	Networks []model.Network
	Machines []model.Machine
}

// Compile returns one config per device, sorted by hostname.
//
// Every device gets its loopback. A leaf gets one VRF per network that has
// at least one allocated machine cabled to one of its ports; the VRF holds
// those ports and has an L3VNI (the leaf's loopback is its VTEP, its chassis
// MAC the router MAC), and each such port is handed to the agent up, with the
// machine's name as description. Spines and firewalls get no VRFs yet.
// Allocations to unknown networks and connections to unknown devices are
// ignored.
func Compile(in Input) []model.DeviceConfig {
	networks := make(map[string]model.Network, len(in.Networks))
	for _, n := range in.Networks {
		networks[n.Name] = n
	}
	// device -> network -> set of ports
	ports := make(map[string]map[string]map[string]struct{})
	// device -> port -> machine
	owner := make(map[string]map[string]string)
	for _, m := range in.Machines {
		if m.Allocation == nil {
			continue
		}
		if _, ok := networks[m.Allocation.Network]; !ok {
			continue
		}
		for _, c := range m.Connections {
			byNet := ports[c.Device]
			if byNet == nil {
				byNet = make(map[string]map[string]struct{})
				ports[c.Device] = byNet
			}
			set := byNet[m.Allocation.Network]
			if set == nil {
				set = make(map[string]struct{})
				byNet[m.Allocation.Network] = set
			}
			set[c.Port] = struct{}{}
			if owner[c.Device] == nil {
				owner[c.Device] = make(map[string]string)
			}
			owner[c.Device][c.Port] = m.Name
		}
	}

	out := make([]model.DeviceConfig, 0, len(in.Devices))
	for _, d := range in.Devices {
		cfg := model.DeviceConfig{Hostname: d.Hostname, Role: d.Role, ASN: d.ASN}
		if d.Loopback.IsValid() {
			cfg.Loopback = netip.PrefixFrom(d.Loopback, d.Loopback.BitLen())
		}
		if d.Role == model.RoleLeaf {
			cfg.VTEP = d.Loopback
			cfg.RouterMAC = d.ChassisMAC
			for netName, set := range ports[d.Hostname] {
				n := networks[netName]
				cfg.VRFs = append(cfg.VRFs, model.VRF{
					Name:    VRFName(n.VNI),
					VNI:     n.VNI,
					Table:   n.VNI,
					Network: n.Name,
					Ports:   slices.Sorted(maps.Keys(set)),
					L3VNI:   cfg.VTEP.IsValid(),
				})
			}
			for _, port := range slices.Sorted(maps.Keys(owner[d.Hostname])) {
				cfg.Ports = append(cfg.Ports, model.PortConfig{Name: port, Description: owner[d.Hostname][port], AdminUp: true})
			}
			slices.SortFunc(cfg.VRFs, func(a, b model.VRF) int {
				return cmp.Or(cmp.Compare(a.VNI, b.VNI), cmp.Compare(a.Network, b.Network))
			})
		}
		out = append(out, cfg)
	}
	slices.SortFunc(out, func(a, b model.DeviceConfig) int { return cmp.Compare(a.Hostname, b.Hostname) })
	return out
}

// VRFName is the kernel name of a tenant VRF.
func VRFName(vni uint32) string { return fmt.Sprintf("vrf%d", vni) }

// Equal reports whether two configs describe the same desired state,
// ignoring Version.
func Equal(a, b model.DeviceConfig) bool {
	a.Version, b.Version = 0, 0
	return reflect.DeepEqual(normalize(a), normalize(b))
}

// normalize makes empty and nil slices compare equal (JSON round trips turn
// one into the other).
func normalize(c model.DeviceConfig) model.DeviceConfig {
	if len(c.VRFs) == 0 {
		c.VRFs = nil
	}
	if len(c.Ports) == 0 {
		c.Ports = nil
	}
	vrfs := make([]model.VRF, len(c.VRFs))
	for i, v := range c.VRFs {
		if len(v.Ports) == 0 {
			v.Ports = nil
		}
		vrfs[i] = v
	}
	if c.VRFs != nil {
		c.VRFs = vrfs
	}
	return c
}
