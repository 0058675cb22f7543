package vm

import (
	"os"
	"strings"
)

// InGuest reports whether the calling process runs inside a VM started by
// Run (its kernel command line carries the fabric-vm token).
func InGuest() bool {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return false
	}
	for _, f := range strings.Fields(string(b)) {
		if f == cmdlineGuest {
			return true
		}
	}
	return false
}
