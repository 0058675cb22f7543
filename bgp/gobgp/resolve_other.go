//go:build !linux

package gobgp

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

func resolveLinkLocal(context.Context, string, time.Duration) (netip.Addr, error) {
	return netip.Addr{}, errors.New("unnumbered peering is only supported on Linux")
}

func announce(string) error { return errors.New("router advertisements are only supported on Linux") }

func kernelLinkLocal(string) (netip.Addr, bool) { return netip.Addr{}, false }
