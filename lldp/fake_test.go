package lldp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// fakeNet is an in-memory set of point-to-point links; its dial method is
// a Dialer. Frames written on one end arrive at the other (dropped when
// the peer's queue is full, like a wire).
type fakeNet struct {
	mu    sync.Mutex
	ports map[string]*fakePort
}

type fakePort struct {
	name  string
	hw    net.HardwareAddr
	in    chan []byte
	peer  *fakePort
	dials atomic.Int64

	mu       sync.Mutex
	gone     bool
	vanished chan struct{} // closed while the port is gone
}

func newFakeNet() *fakeNet { return &fakeNet{ports: make(map[string]*fakePort)} }

var macSeq atomic.Uint32

func (n *fakeNet) port(name string) *fakePort {
	n.mu.Lock()
	defer n.mu.Unlock()
	if p, ok := n.ports[name]; ok {
		return p
	}
	s := macSeq.Add(1)
	p := &fakePort{
		name:     name,
		hw:       net.HardwareAddr{0x02, 0xfa, 0xce, byte(s >> 16), byte(s >> 8), byte(s)},
		in:       make(chan []byte, 256),
		vanished: make(chan struct{}),
	}
	n.ports[name] = p
	return p
}

// link connects two ports (created on first use).
func (n *fakeNet) link(a, b string) (*fakePort, *fakePort) {
	pa, pb := n.port(a), n.port(b)
	pa.peer, pb.peer = pb, pa
	return pa, pb
}

func (n *fakeNet) dial(_ context.Context, name string) (Conn, error) {
	n.mu.Lock()
	p, ok := n.ports[name]
	n.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("looking up port %s: no such interface", name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		return nil, fmt.Errorf("looking up port %s: no such interface", name)
	}
	p.dials.Add(1)
	return &fakeConn{p: p, closed: make(chan struct{}), vanished: p.vanished}, nil
}

// vanish makes the port disappear: open sockets fail, dials fail.
func (p *fakePort) vanish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.gone {
		p.gone = true
		close(p.vanished)
	}
}

// restore brings the port back.
func (p *fakePort) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		p.gone = false
		p.vanished = make(chan struct{})
	}
}

// inject delivers a raw frame to the port as if received from the wire.
func (p *fakePort) inject(b []byte) { p.in <- bytes.Clone(b) }

type fakeConn struct {
	p        *fakePort
	closed   chan struct{}
	once     sync.Once
	vanished chan struct{}
}

var errVanished = errors.New("network is down")

func (c *fakeConn) ReadFrame(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.vanished:
		return 0, errVanished
	case f := <-c.p.in:
		return copy(b, f), nil
	}
}

func (c *fakeConn) WriteFrame(b []byte) error {
	select {
	case <-c.closed:
		return net.ErrClosed
	case <-c.vanished:
		return errVanished
	default:
	}
	if peer := c.p.peer; peer != nil {
		select {
		case peer.in <- bytes.Clone(b):
		default:
		}
	}
	return nil
}

func (c *fakeConn) HardwareAddr() net.HardwareAddr { return c.p.hw }

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}
