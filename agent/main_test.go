package agent

import (
	"os"
	"testing"

	"github.com/metalfabric/fabric/integration/vm/vmtest"
)

// TestMain runs the package's tests in the full-kernel VM when this kernel
// cannot create VRFs, so the privileged VRF tests run in `make test`.
func TestMain(m *testing.M) { os.Exit(vmtest.Main(m)) }
