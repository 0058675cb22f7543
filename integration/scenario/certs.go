package scenario

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/metalfabric/fabric/integration/lab"
	"github.com/metalfabric/fabric/pki"
)

// PKISubdir is where, inside the lab dir, the lab's throwaway CA and
// certificates live; the topology binds it to /etc/fabric/pki.
const PKISubdir = "pki"

// Operator is the lab's operator certificate name.
const Operator = "admin"

// CertBundle is the certificate bundle of topo's lab: a device certificate
// per node (the agents' hostnames are their node names), the controller's
// certificate, and an operator certificate. The controller certificate is
// one for all controller replicas (the nodes ControllerNodes finds): its
// SANs are every replica's node name and management address, plus
// localhost and the loopback address.
func CertBundle(topo *lab.Topology) pki.Bundle {
	b := pki.Bundle{CAName: "metalfabric " + topo.Name + " lab CA", Operators: []string{Operator}}
	b.ControllerHosts = []string{ControllerNode, "localhost", "127.0.0.1"}
	controllers := ControllerNodes(topo)
	for _, n := range topo.Nodes {
		if !slices.Contains(controllers, n.Name) {
			b.Devices = append(b.Devices, n.Name)
			continue
		}
		if n.Name != ControllerNode {
			b.ControllerHosts = append(b.ControllerHosts, n.Name)
		}
		if n.MgmtIPv4.IsValid() {
			b.ControllerHosts = append(b.ControllerHosts, n.MgmtIPv4.String())
		}
	}
	return b
}

// GenerateCerts writes a fresh bundle for topo into its lab dir (what
// Start does before bringing the lab up) and returns the directory.
func GenerateCerts(topo *lab.Topology) (string, error) {
	dir := filepath.Join(lab.DefaultLabDir(topo), PKISubdir)
	if err := pki.Generate(dir, CertBundle(topo)); err != nil {
		return "", fmt.Errorf("generating the lab's certificates: %w", err)
	}
	return dir, nil
}
