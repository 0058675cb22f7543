package fib

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// KernelError is a failure answered by the kernel for one request. It
// unwraps to the errno, so errors.Is(err, unix.EEXIST) works.
type KernelError struct {
	Errno   syscall.Errno
	Message string // the kernel's extended ack message, if any
}

func (e *KernelError) Error() string {
	if e.Message != "" {
		return e.Errno.Error() + " (" + e.Message + ")"
	}
	return e.Errno.Error()
}

func (e *KernelError) Unwrap() error { return e.Errno }

const (
	// sockBuf is asked for both socket buffers (the kernel doubles it).
	sockBuf = 8 << 20
	// ackCost is a generous bound of the receive buffer space one error
	// answer takes (skb truesize with a capped request and an extended
	// ack message).
	ackCost = 2048
	// maxDumpRetries bounds the restarts of an interrupted dump.
	maxDumpRetries = 10
)

// conn is a NETLINK_ROUTE socket used for batched requests and dumps.
type conn struct {
	fd       int
	seq      uint32
	window   int // requests per sendmsg
	maxBytes int // bytes per sendmsg
	wbuf     []byte
	rbuf     []byte
}

// dialAt opens the socket in ns (netns.None(): the calling thread's).
func dialAt(ns netns.NsHandle, window int) (*conn, error) {
	var fd int
	open := func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("opening a netlink socket: %w", err)
		}
		return nil
	}
	if ns.IsOpen() {
		if err := inNetns(ns, open); err != nil {
			return nil, err
		}
	} else if err := open(); err != nil {
		return nil, err
	}
	c := &conn{fd: fd, rbuf: make([]byte, 1<<16)}
	if err := c.setup(window); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return c, nil
}

// inNetns runs f on a locked thread switched to ns.
func inNetns(ns netns.NsHandle, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("getting the current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return fmt.Errorf("entering netns %s: %w", ns, err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// The thread is in the wrong namespace: keep it locked so that it
		// dies with this goroutine instead of serving others.
		runtime.LockOSThread()
		return fmt.Errorf("returning to the original netns: %w", err)
	}
	return ferr
}

func (c *conn) setup(window int) error {
	for _, o := range []struct {
		force, plain int
		name         string
	}{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, "SO_SNDBUF"}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, "SO_RCVBUF"}} {
		if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, o.force, sockBuf); err != nil {
			// Without CAP_NET_ADMIN: what net.core.[rw]mem_max allows.
			if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, o.plain, sockBuf); err != nil {
				return fmt.Errorf("setting %s: %w", o.name, err)
			}
		}
	}
	for _, o := range []struct {
		opt  int
		name string
	}{{unix.NETLINK_CAP_ACK, "NETLINK_CAP_ACK"}, {unix.NETLINK_EXT_ACK, "NETLINK_EXT_ACK"}, {unix.NETLINK_GET_STRICT_CHK, "NETLINK_GET_STRICT_CHK"}} {
		if err := unix.SetsockoptInt(c.fd, unix.SOL_NETLINK, o.opt, 1); err != nil {
			return fmt.Errorf("setting %s: %w", o.name, err)
		}
	}
	// A safety net: the kernel answers a request synchronously, so a read
	// that blocks this long means the answer will not come.
	tv := unix.Timeval{Sec: 30}
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("setting SO_RCVTIMEO: %w", err)
	}
	if err := unix.Bind(c.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("binding the netlink socket: %w", err)
	}
	rcv, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return fmt.Errorf("reading SO_RCVBUF: %w", err)
	}
	snd, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		return fmt.Errorf("reading SO_SNDBUF: %w", err)
	}
	// Every request of a window may fail: all error answers must fit the
	// receive buffer, with the fence's ack.
	c.window = max(1, min(window, rcv/ackCost-1))
	c.maxBytes = max(4096, snd/2)
	return nil
}

func (c *conn) close() error { return unix.Close(c.fd) }

func (c *conn) send(b []byte) error {
	for {
		err := unix.Sendto(c.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err != unix.EINTR {
			return err
		}
	}
}

// recv reads one datagram; flags may hold MSG_DONTWAIT.
func (c *conn) recv(flags int) ([]byte, error) {
	for {
		n, _, rflags, _, err := unix.Recvmsg(c.fd, c.rbuf, nil, flags)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return nil, err
		case rflags&unix.MSG_TRUNC != 0:
			return nil, fmt.Errorf("netlink message truncated (buffer %d)", len(c.rbuf))
		}
		return c.rbuf[:n], nil
	}
}

// encodeFunc appends request i with sequence number seq to b.
type encodeFunc func(i int, b []byte, seq uint32, flags uint16) []byte

// exec sends n requests in windows (no NLM_F_ACK, a fenced NLMSG_NOOP at the
// end of each window) and returns the outcome of each: nil, a *KernelError,
// ErrAckLost, or the error that stopped the run (socket or ctx) for the
// requests that were not sent.
func (c *conn) exec(ctx context.Context, n int, enc encodeFunc) []error {
	errs := make([]error, n)
	for start := 0; start < n; {
		if err := ctx.Err(); err != nil {
			fill(errs[start:], fmt.Errorf("not sent: %w", err))
			return errs
		}
		b := c.wbuf[:0]
		base := c.seq
		end := start
		for end < n && end-start < c.window && len(b) < c.maxBytes {
			b = enc(end, b, base+uint32(end-start), nlmFRequest)
			end++
		}
		fence := base + uint32(end-start)
		b = appendNoop(b, fence)
		c.seq = fence + 1
		c.wbuf = b
		if err := c.send(b); err != nil {
			fill(errs[start:], fmt.Errorf("sending netlink requests: %w", err))
			return errs
		}
		win := errs[start:end]
		if err := c.collect(win, base, fence); err != nil {
			fill(errs[end:], fmt.Errorf("not sent: %w", err))
			return errs
		}
		start = end
	}
	return errs
}

func fill(errs []error, err error) {
	for i := range errs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
}

// collect reads the answers of one window until the fence is acknowledged
// and records the failures in win (win[i] answers sequence base+i).
func (c *conn) collect(win []error, base, fence uint32) error {
	lost := false
	flags := 0
	for {
		buf, err := c.recv(flags)
		switch {
		case err == unix.ENOBUFS:
			// Answers were dropped; everything is queued already (the
			// kernel handles a sendmsg synchronously), so drain without
			// blocking.
			lost, flags = true, unix.MSG_DONTWAIT
			continue
		case err == unix.EAGAIN && lost:
			for i := range win {
				if win[i] == nil {
					win[i] = ErrAckLost
				}
			}
			return nil
		case err != nil:
			fill(win, fmt.Errorf("reading netlink answers: %w", err))
			return err
		}
		for len(buf) > 0 {
			h, payload, rest, err := parseHeader(buf)
			if err != nil {
				fill(win, fmt.Errorf("reading netlink answers: %w", err))
				return err
			}
			buf = rest
			if h.Type != nlmsgError {
				continue
			}
			e, err := parseError(h, payload)
			if err != nil {
				fill(win, fmt.Errorf("reading netlink answers: %w", err))
				return err
			}
			switch {
			case e.Seq == fence && !lost:
				if e.Errno != 0 {
					err := &KernelError{Errno: syscall.Errno(e.Errno), Message: e.Msg}
					fill(win, fmt.Errorf("netlink fence: %w", err))
					return err
				}
				return nil
			case e.Seq == fence:
				// Some error answers of this window were dropped: the ones
				// we did not see have an unknown outcome.
				for i := range win {
					if win[i] == nil {
						win[i] = ErrAckLost
					}
				}
				return nil
			case e.Seq-base < uint32(len(win)) && e.Errno != 0:
				win[e.Seq-base] = &KernelError{Errno: syscall.Errno(e.Errno), Message: e.Msg}
			}
		}
	}
}

// dump sends one dump request and calls each for every message, restarting
// (after reset) when the kernel flags the dump as interrupted.
func (c *conn) dump(ctx context.Context, req func(b []byte, seq uint32) []byte, reset func(), each func(typ uint16, payload []byte) error) error {
	for try := 0; ; try++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		seq := c.seq
		c.seq++
		c.wbuf = req(c.wbuf[:0], seq)
		if err := c.send(c.wbuf); err != nil {
			return fmt.Errorf("sending the dump request: %w", err)
		}
		intr, err := c.readDump(seq, each)
		if err != nil {
			return err
		}
		if !intr {
			return nil
		}
		if try == maxDumpRetries {
			return fmt.Errorf("dump interrupted %d times: %w", try+1, unix.EINTR)
		}
		reset()
	}
}

func (c *conn) readDump(seq uint32, each func(typ uint16, payload []byte) error) (intr bool, err error) {
	var cbErr error
	for {
		buf, err := c.recv(0)
		if err != nil {
			return false, fmt.Errorf("reading the dump: %w", err)
		}
		for len(buf) > 0 {
			h, payload, rest, err := parseHeader(buf)
			if err != nil {
				return false, fmt.Errorf("reading the dump: %w", err)
			}
			buf = rest
			if h.Seq != seq {
				continue // an answer to an earlier request
			}
			if h.Flags&nlmFDumpIntr != 0 {
				intr = true
			}
			switch h.Type {
			case nlmsgDone:
				if len(payload) >= 4 {
					if e := int32(ne.Uint32(payload)); e < 0 {
						return false, fmt.Errorf("dump: %w", syscall.Errno(-e))
					}
				}
				return intr, cbErr
			case nlmsgError:
				e, err := parseError(h, payload)
				if err != nil {
					return false, fmt.Errorf("dump: %w", err)
				}
				if e.Errno != 0 {
					return false, fmt.Errorf("dump: %w", &KernelError{Errno: syscall.Errno(e.Errno), Message: e.Msg})
				}
				return intr, cbErr
			default:
				if cbErr == nil && !intr {
					cbErr = each(h.Type, payload)
				}
			}
		}
	}
}

var errClosed = errors.New("fib: programmer closed")
