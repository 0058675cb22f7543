//go:build linux

package vm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive flock on name, polling so ctx can cancel the
// wait. The returned function releases it.
func lockFile(ctx context.Context, name string) (func(), error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	logged := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		if !logged {
			slog.Info("vm: waiting for another process preparing the kernel", "lock", name)
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// qemuSysProcAttr kills qemu when the thread that started it dies (see
// startAndWait), so a crashed caller leaves no qemu behind.
func qemuSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// terminalSize returns the size of the terminal on stdin, or zeros.
func terminalSize() (rows, cols int) {
	ws, err := unix.IoctlGetWinsize(int(os.Stdin.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0, 0
	}
	return int(ws.Row), int(ws.Col)
}

// HostSupportsVRF reports whether the running kernel can create a VRF
// device. It tries in a fresh network namespace private to one OS thread,
// which is discarded afterwards, so nothing is left behind. It needs root
// (CAP_SYS_ADMIN); without it the answer is false.
func HostSupportsVRF() bool {
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it ends with this goroutine and
		// takes the namespace with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		errc <- createVRF("vrfprobe", 4242)
	}()
	err := <-errc
	if err != nil {
		slog.Debug("vm: VRF probe failed", "err", err)
	}
	return err == nil
}

// createVRF sends RTM_NEWLINK for a VRF device over rtnetlink in the
// calling thread's network namespace and waits for the kernel's answer.
func createVRF(name string, table uint32) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink bind: %w", err)
	}
	msg := newLinkMsg(name, "vrf", vrfTableAttr(table))
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return fmt.Errorf("netlink receive: %w", err)
	}
	return parseAck(buf[:n])
}

// nlAttr encodes one netlink attribute, padded to 4 bytes.
func nlAttr(typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	b := make([]byte, (l+3)&^3)
	binary.NativeEndian.PutUint16(b[0:2], uint16(l))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	copy(b[4:], data)
	return b
}

func vrfTableAttr(table uint32) []byte {
	var v [4]byte
	binary.NativeEndian.PutUint32(v[:], table)
	return nlAttr(unix.IFLA_VRF_TABLE, v[:])
}

// newLinkMsg builds an RTM_NEWLINK request creating device name of kind
// with the given IFLA_INFO_DATA attributes.
func newLinkMsg(name, kind string, infoData []byte) []byte {
	linkinfo := append(nlAttr(unix.IFLA_INFO_KIND, append([]byte(kind), 0)), nlAttr(unix.IFLA_INFO_DATA, infoData)...)
	body := make([]byte, unix.SizeofIfInfomsg) // ifinfomsg, all zero
	body = append(body, nlAttr(unix.IFLA_IFNAME, append([]byte(name), 0))...)
	body = append(body, nlAttr(unix.IFLA_LINKINFO, linkinfo)...)
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:4], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:6], unix.RTM_NEWLINK)
	binary.NativeEndian.PutUint16(msg[6:8], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	binary.NativeEndian.PutUint32(msg[8:12], 1) // sequence number
	return append(msg, body...)
}

// parseAck returns the error carried by a netlink NLMSG_ERROR answer (nil
// for an ACK).
func parseAck(b []byte) error {
	if len(b) < unix.SizeofNlMsghdr+4 {
		return fmt.Errorf("short netlink answer (%d bytes)", len(b))
	}
	if typ := binary.NativeEndian.Uint16(b[4:6]); typ != unix.NLMSG_ERROR {
		return fmt.Errorf("unexpected netlink message type %d", typ)
	}
	if code := int32(binary.NativeEndian.Uint32(b[16:20])); code != 0 {
		return fmt.Errorf("creating VRF: %w", syscall.Errno(-code))
	}
	return nil
}
