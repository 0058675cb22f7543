package lldp

import (
	"context"
	"errors"
	"net"
)

// Conn is the LLDP frame I/O of one port. It carries whole Ethernet frames
// (header included, no FCS). ReadFrame blocks until a frame arrives; Close
// makes a blocked ReadFrame return an error. *Agent uses one Conn per port
// from a single reader and a single writer goroutine.
type Conn interface {
	// ReadFrame reads one frame into b and returns its length.
	ReadFrame(b []byte) (int, error)
	// WriteFrame sends one frame.
	WriteFrame(b []byte) error
	// HardwareAddr is the port's MAC, used as the frames' source.
	HardwareAddr() net.HardwareAddr
	Close() error
}

// Dialer opens the Conn of the named port. The default is ListenPort.
type Dialer func(ctx context.Context, port string) (Conn, error)

// ErrUnsupported is returned by ListenPort where raw sockets are not
// implemented (everything but Linux).
var ErrUnsupported = errors.New("lldp: raw sockets not supported on this platform")
