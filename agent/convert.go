package agent

import (
	"fmt"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/fabric"
)

// This file is the protobuf edge: nothing else in the agent, and nothing in
// the reconcilers, sees apiv1 config types.

// desiredFromProto converts a snapshot into the fabric reconciler's desired
// state. A VRF without a name gets the conventional "vrf<VNI>".
func desiredFromProto(cfg *apiv1.DeviceConfig) fabric.Desired {
	var d fabric.Desired
	for _, v := range cfg.GetVrfs() {
		name := v.GetName()
		if name == "" && v.GetVni() != 0 {
			name = fmt.Sprintf("vrf%d", v.GetVni())
		}
		d.VRFs = append(d.VRFs, fabric.VRF{
			Name:  name,
			Table: v.GetTable(),
			Ports: append([]string(nil), v.GetPorts()...),
		})
	}
	return d
}

func roleToProto(r Role) apiv1.Role {
	switch r {
	case RoleLeaf:
		return apiv1.Role_ROLE_LEAF
	case RoleSpine:
		return apiv1.Role_ROLE_SPINE
	case RoleFirewall:
		return apiv1.Role_ROLE_FIREWALL
	default:
		return apiv1.Role_ROLE_UNSPECIFIED
	}
}

func portsToProto(links []fabric.Link) []*apiv1.Port {
	ports := make([]*apiv1.Port, 0, len(links))
	for _, l := range links {
		ports = append(ports, &apiv1.Port{
			Name:   l.Name,
			Mac:    l.MAC,
			Mtu:    uint32(max(l.MTU, 0)),
			OperUp: l.OperUp(),
		})
	}
	return ports
}

// stepErrorsToProto names each step after the subsystem that ran it.
func stepErrorsToProto(subsystem string, errs []fabric.StepError) []*apiv1.StepError {
	out := make([]*apiv1.StepError, 0, len(errs))
	for _, e := range errs {
		out = append(out, &apiv1.StepError{Step: subsystem + ": " + e.Step, Message: e.Err.Error()})
	}
	return out
}
