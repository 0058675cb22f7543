//go:build !linux

package agent

import (
	"context"
	"errors"
)

type kernelLeaker struct{}

// NewKernelLeaker returns a Leaker that fails: route leaking needs Linux.
func NewKernelLeaker() Leaker { return kernelLeaker{} }

func (kernelLeaker) Sync(context.Context, []LeakRoute) error {
	return errors.New("route leaking is only supported on Linux")
}
