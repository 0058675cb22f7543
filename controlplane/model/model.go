// Package model holds the controller's own record types: what the inventory
// stores (JSON-encoded) and what the compiler produces. It owns the types and
// their invariants only; it must not do I/O, and it must not import protobuf
// or gRPC (conversion to the API types happens in the server package).
package model

import (
	"net/netip"
	"time"
)

// Role is what a device is in the fabric.
type Role string

// Device roles.
const (
	RoleLeaf     Role = "leaf"
	RoleSpine    Role = "spine"
	RoleFirewall Role = "firewall"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool {
	switch r {
	case RoleLeaf, RoleSpine, RoleFirewall:
		return true
	}
	return false
}

// Network is a tenant network: one prefix, one VNI (and so one VRF per
// device it is present on).
type Network struct {
	Name   string       `json:"name"`
	Prefix netip.Prefix `json:"prefix"`
	VNI    uint32       `json:"vni"`
}

// Connection is one machine NIC cabled to one switch port.
type Connection struct {
	Device string `json:"device"`
	Port   string `json:"port"`
}

// Allocation puts a machine into a network.
type Allocation struct {
	Network string     `json:"network"`
	IP      netip.Addr `json:"ip"`
	// Revision at which the allocation was made.
	Revision uint64 `json:"revision"`
}

// Machine is a bare-metal server and where it is cabled.
type Machine struct {
	Name string `json:"name"`
	// Connections sorted by device, then port.
	Connections []Connection `json:"connections,omitempty"`
	// Allocation is nil while the machine is free.
	Allocation *Allocation `json:"allocation,omitempty"`
	// Revision of the machine's last change that affects device configs:
	// allocate, free, or recabling while allocated. A device has converged
	// for the machine once it applied a version >= Revision.
	Revision uint64 `json:"revision,omitempty"`
}

// Port is a device port as the agent reported it.
type Port struct {
	Name   string `json:"name"`
	MAC    string `json:"mac,omitempty"`
	MTU    uint32 `json:"mtu,omitempty"`
	OperUp bool   `json:"operUp,omitempty"`
}

// StepError is one failed reconcile step reported by an agent.
type StepError struct {
	Step    string `json:"step"`
	Message string `json:"message"`
}

// Device is a switch or firewall running fabric-agent.
type Device struct {
	Hostname   string `json:"hostname"`
	Role       Role   `json:"role"`
	ChassisMAC string `json:"chassisMAC,omitempty"`
	// Ports sorted by name.
	Ports []Port `json:"ports,omitempty"`
	// AppliedVersion is the config version the agent last reported, and
	// Errors the steps that failed applying it.
	AppliedVersion uint64      `json:"appliedVersion,omitempty"`
	Errors         []StepError `json:"errors,omitempty"`
	// LastSeen is when the device last registered or reported status.
	LastSeen time.Time `json:"lastSeen"`
	// Loopback is the device's loopback address from the controller's
	// pool, assigned at first registration and kept for the device's life.
	Loopback netip.Addr `json:"loopback,omitzero"`
	// Drift is the agent's last drift report (informational).
	Drift Drift `json:"drift,omitzero"`
}

// Drift counts kernel changes behind an agent's back: repairs of managed
// objects and changes to unmanaged ones (reported, never reverted).
type Drift struct {
	Repairs          uint64 `json:"repairs,omitempty"`
	UnmanagedChanges uint64 `json:"unmanagedChanges,omitempty"`
	LastUnmanaged    string `json:"lastUnmanaged,omitempty"`
}

// HasPort reports whether the device reported a port of that name.
func (d Device) HasPort(name string) bool {
	for _, p := range d.Ports {
		if p.Name == name {
			return true
		}
	}
	return false
}

// VRF is one tenant VRF on a device.
type VRF struct {
	// Name is the kernel device name, vrf<VNI>.
	Name string `json:"name"`
	VNI  uint32 `json:"vni"`
	// Table is the kernel routing table id.
	Table   uint32 `json:"table"`
	Network string `json:"network"`
	// Ports are the machine-facing ports in the VRF, sorted.
	Ports []string `json:"ports"`
	// L3VNI tells whether the VRF has an L3VNI (VXLAN device with VNI, a
	// VLAN on the bridge, an SVI in the VRF).
	L3VNI bool `json:"l3vni,omitempty"`
}

// PortConfig is a port the controller hands to the agent.
type PortConfig struct {
	Name string `json:"name"`
	// Description goes to the port's alias (the machine's name).
	Description string `json:"description,omitempty"`
	AdminUp     bool   `json:"adminUp,omitempty"`
}

// DeviceConfig is a device's compiled desired config.
type DeviceConfig struct {
	Hostname string `json:"hostname"`
	// Version is the controller revision at which this config last
	// changed. The compiler leaves it zero; the inventory sets it.
	Version uint64 `json:"version"`
	Role    Role   `json:"role"`
	// VRFs sorted by VNI.
	VRFs []VRF `json:"vrfs,omitempty"`
	// Loopback is the device's loopback address as a host prefix.
	Loopback netip.Prefix `json:"loopback,omitzero"`
	// VTEP is the local VXLAN tunnel endpoint; invalid on devices without
	// VXLAN.
	VTEP netip.Addr `json:"vtep,omitzero"`
	// RouterMAC is the MAC of the L3VNI SVIs.
	RouterMAC string `json:"routerMAC,omitempty"`
	// Ports handed to the agent, sorted by name.
	Ports []PortConfig `json:"ports,omitempty"`
}

// DeviceConvergence tells whether one device has applied a machine's last
// change.
type DeviceConvergence struct {
	Hostname        string
	RequiredVersion uint64
	AppliedVersion  uint64
	Converged       bool
	Errors          []StepError
}

// Convergence tells whether every device a machine is cabled to has applied
// the machine's last change.
type Convergence struct {
	Machine   string
	Revision  uint64
	Devices   []DeviceConvergence
	Converged bool
}
