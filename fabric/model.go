package fabric

import (
	"slices"
	"strings"
)

// Marker is written to IFLA_IFALIAS of every VRF the reconciler creates. A VRF
// without it is foreign and is never changed or deleted.
const Marker = "fabric-agent"

// Link kinds as the kernel reports them (IFLA_INFO_KIND). Links without a kind
// (physical NICs, lo) have kind KindDevice.
const (
	KindDevice = "device"
	KindVeth   = "veth"
	KindVRF    = "vrf"
	KindBridge = "bridge"
)

// Desired is the desired state of the part of a device's kernel this package
// owns. The zero value means "nothing of ours": every marked VRF is removed.
type Desired struct {
	VRFs []VRF
}

// VRF is one VRF device with its routing table and the ports enslaved to it.
type VRF struct {
	// Name is the kernel device name, e.g. "vrf10010".
	Name string
	// Table is the kernel routing table id.
	Table uint32
	// Ports are the links enslaved to the VRF.
	Ports []string
}

// Link is one kernel link as read from the kernel.
type Link struct {
	Name  string
	Index int
	// Kind is the link kind, see KindDevice and friends.
	Kind string
	// Master is the name of the link's master device, "" when it has none.
	Master string
	// Alias is IFLA_IFALIAS; Marker on VRFs this package created.
	Alias string
	// VRFTable is the routing table of a VRF; 0 for other kinds.
	VRFTable uint32
	// AdminUp tells whether IFF_UP is set.
	AdminUp bool
	// OperState is the kernel's operational state: "up", "down",
	// "lowerlayerdown", "unknown", ...
	OperState string
	// Loopback tells whether IFF_LOOPBACK is set.
	Loopback bool
	MAC      string
	MTU      int
}

// Owned tells whether the link is a VRF created by this package.
func (l Link) Owned() bool { return l.Kind == KindVRF && l.Alias == Marker }

// OperUp tells whether the link is operationally up.
func (l Link) OperUp() bool { return l.OperState == "up" }

// IsPort tells whether the link counts as a switch port: a physical-ish link
// (a NIC, or a veth in the lab) that is not a loopback.
func (l Link) IsPort() bool {
	return (l.Kind == KindDevice || l.Kind == KindVeth) && !l.Loopback && l.Name != "lo"
}

// Actual is the kernel state as read by [Kernel.Links].
type Actual struct {
	Links []Link
}

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

// Owned returns the VRFs this package created, with the links enslaved to
// them, in the shape of a [Desired]; VRFs and ports sorted by name. After a
// fully successful Apply it equals the desired state (sorted).
func (a Actual) Owned() Desired {
	byName := map[string]int{}
	var d Desired
	for _, l := range a.Links {
		if l.Owned() {
			byName[l.Name] = len(d.VRFs)
			d.VRFs = append(d.VRFs, VRF{Name: l.Name, Table: l.VRFTable})
		}
	}
	for _, l := range a.Links {
		if i, ok := byName[l.Master]; ok {
			d.VRFs[i].Ports = append(d.VRFs[i].Ports, l.Name)
		}
	}
	return d.sorted()
}

// sorted returns a deep copy with VRFs and ports sorted by name.
func (d Desired) sorted() Desired {
	out := Desired{VRFs: make([]VRF, 0, len(d.VRFs))}
	for _, v := range d.VRFs {
		v.Ports = slices.Sorted(slices.Values(v.Ports))
		out.VRFs = append(out.VRFs, v)
	}
	slices.SortFunc(out.VRFs, func(x, y VRF) int { return strings.Compare(x.Name, y.Name) })
	if len(out.VRFs) == 0 {
		out.VRFs = nil
	}
	return out
}

func (a Actual) byName() map[string]Link {
	m := make(map[string]Link, len(a.Links))
	for _, l := range a.Links {
		m[l.Name] = l
	}
	return m
}
