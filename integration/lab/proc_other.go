//go:build !linux

package lab

import (
	"errors"
	"syscall"
)

// errUnsupported: labs need Linux network namespaces.
var errUnsupported = errors.New("lab: network namespaces need Linux")

func listNetNS() ([]string, error)                   { return nil, errUnsupported }
func netNSExists(string) bool                        { return false }
func pidsInNetNS([]string) (map[string][]int, error) { return nil, errUnsupported }
func groupMembers(int) []int                         { return nil }
func pidAlive(int) bool                              { return false }
func pidInNetNS(int, string) bool                    { return false }
func signalPID(int, bool) error                      { return errUnsupported }
func signalGroup(int, bool) error                    { return errUnsupported }
func detachedAttr() *syscall.SysProcAttr             { return nil }
