// Package e2e holds the end-to-end tests: the mini-lab brought up from its
// containerlab file, driven through the controller's API, checked in the
// switches' kernels. They need root and a kernel with VRFs; vmtest runs them
// in the full-kernel VM when the host kernel has none.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/metalfabric/fabric/integration/vm"
	"github.com/metalfabric/fabric/integration/vm/vmtest"
)

func TestMain(m *testing.M) {
	// The lab runs the binaries from bin/ (see the topology's binds); build
	// them from this tree first, on the host where compiling is fast.
	if !vm.InGuest() && os.Geteuid() == 0 {
		cmd := exec.Command("go", "build", "-o", "../../bin/", "../../cmd/...")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: building the binaries: %v\n", err)
			os.Exit(1)
		}
	}
	os.Exit(vmtest.Main(m))
}
