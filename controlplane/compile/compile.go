// Package compile turns inventory and allocations into each device's desired
// config. It is pure: no I/O, no clock, no store, no protobuf. Versions are
// not its business either; it leaves DeviceConfig.Version zero.
package compile

import (
	"cmp"
	"fmt"
	"maps"
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
// A leaf gets one VRF per network that has at least one allocated machine
// cabled to one of its ports; the VRF holds those ports. Spines and firewalls
// get no VRFs yet. Allocations to unknown networks and connections to
// unknown devices are ignored.
func Compile(in Input) []model.DeviceConfig {
	networks := make(map[string]model.Network, len(in.Networks))
	for _, n := range in.Networks {
		networks[n.Name] = n
	}
	// device -> network -> set of ports
	ports := make(map[string]map[string]map[string]struct{})
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
		}
	}

	out := make([]model.DeviceConfig, 0, len(in.Devices))
	for _, d := range in.Devices {
		cfg := model.DeviceConfig{Hostname: d.Hostname, Role: d.Role}
		if d.Role == model.RoleLeaf {
			for netName, set := range ports[d.Hostname] {
				n := networks[netName]
				cfg.VRFs = append(cfg.VRFs, model.VRF{
					Name:    VRFName(n.VNI),
					VNI:     n.VNI,
					Table:   n.VNI,
					Network: n.Name,
					Ports:   slices.Sorted(maps.Keys(set)),
				})
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
	if a.Hostname != b.Hostname || a.Role != b.Role || len(a.VRFs) != len(b.VRFs) {
		return false
	}
	for i := range a.VRFs {
		x, y := a.VRFs[i], b.VRFs[i]
		if x.Name != y.Name || x.VNI != y.VNI || x.Table != y.Table || x.Network != y.Network ||
			!slices.Equal(x.Ports, y.Ports) {
			return false
		}
	}
	return true
}
