//go:build !linux

package vm

import (
	"context"
	"syscall"
)

func lockFile(ctx context.Context, name string) (func(), error) { return nil, errNotLinux }

func qemuSysProcAttr() *syscall.SysProcAttr { return nil }

func terminalSize() (rows, cols int) { return 0, 0 }

// HostSupportsVRF reports whether the running kernel can create a VRF
// device; never on a non-Linux host.
func HostSupportsVRF() bool { return false }
