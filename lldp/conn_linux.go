//go:build linux

package lldp

import (
	"context"
	"fmt"
	"net"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// ListenPort opens a raw AF_PACKET socket on the named interface for
// ethertype 0x88cc, joins the nearest-bridge group address and asks the
// kernel not to hand our own transmitted frames back. It does not change
// the link: on a down link the socket opens and reads fail with ENETDOWN.
// The socket lives in the network namespace of the calling thread.
func ListenPort(_ context.Context, port string) (Conn, error) {
	ifi, err := net.InterfaceByName(port)
	if err != nil {
		return nil, fmt.Errorf("looking up port %s: %w", port, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("port %s: no Ethernet address", port)
	}
	c, err := packet.Listen(ifi, packet.Raw, EtherType, nil)
	if err != nil {
		return nil, fmt.Errorf("opening packet socket on %s: %w", port, err)
	}
	if err := c.JoinGroup(NearestBridge); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("joining %s on %s: %w", NearestBridge, port, err)
	}
	// Best effort (Linux >= 4.20); the agent also drops frames whose source
	// is the port's own MAC.
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		})
	}
	return &packetConn{c: c, hw: ifi.HardwareAddr, dst: &packet.Addr{HardwareAddr: NearestBridge}}, nil
}

type packetConn struct {
	c   *packet.Conn
	hw  net.HardwareAddr
	dst *packet.Addr
}

func (p *packetConn) ReadFrame(b []byte) (int, error) {
	n, _, err := p.c.ReadFrom(b)
	return n, err
}

func (p *packetConn) WriteFrame(b []byte) error {
	_, err := p.c.WriteTo(b, p.dst)
	return err
}

func (p *packetConn) HardwareAddr() net.HardwareAddr { return p.hw }

func (p *packetConn) Close() error { return p.c.Close() }
