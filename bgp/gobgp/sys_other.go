//go:build !linux

package gobgp

import (
	"errors"
	"net/netip"
)

// EnableL3mdevAccept is Linux only.
func EnableL3mdevAccept() error { return errors.New("tcp_l3mdev_accept is Linux only") }

func shutdownSessions(map[netip.Addr]bool, int) (int, error) {
	return 0, errors.New("graceful stop is Linux only")
}
