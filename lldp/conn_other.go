//go:build !linux

package lldp

import "context"

// ListenPort returns ErrUnsupported: raw LLDP sockets are Linux-only.
func ListenPort(_ context.Context, port string) (Conn, error) {
	return nil, ErrUnsupported
}
