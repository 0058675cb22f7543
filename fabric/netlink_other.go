//go:build !linux

package fabric

import (
	"errors"
	"fmt"
	"runtime"
)

// OpenKernel fails on this platform: the reconciler needs Linux netlink.
func OpenKernel() (Kernel, error) {
	return nil, fmt.Errorf("opening netlink on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
