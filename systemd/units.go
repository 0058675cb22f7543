package systemd

import (
	"embed"
	"fmt"
)

// Unit file names, as installed under /usr/lib/systemd/system. The files
// live in units/ of this package; scripts/deb.sh copies them from there.
const (
	AgentUnit      = "fabric-agent.service"
	ControllerUnit = "fabric-controller.service"
)

//go:embed units/*.service
var units embed.FS

// UnitNames returns the names of the embedded unit files.
func UnitNames() []string { return []string{AgentUnit, ControllerUnit} }

// Unit returns the content of the embedded unit file name (AgentUnit or
// ControllerUnit), e.g. for an installer or a `--print-unit` flag.
func Unit(name string) ([]byte, error) {
	b, err := units.ReadFile("units/" + name)
	if err != nil {
		return nil, fmt.Errorf("reading embedded unit %s: %w", name, err)
	}
	return b, nil
}
