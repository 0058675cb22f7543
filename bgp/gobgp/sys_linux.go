//go:build linux

package gobgp

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// EnableL3mdevAccept sets net.ipv4.tcp_l3mdev_accept=1 in the calling
// thread's network namespace, so that the speaker's listener (bound in the
// default VRF) accepts BGP connections arriving on ports enslaved to a VRF.
// The speaker never changes sysctls itself: the agent calls this once when
// it sets up VRFs. It covers IPv6 listeners as well (the kernel uses the
// ipv4 knob for both).
func EnableL3mdevAccept() error {
	const p = "/proc/sys/net/ipv4/tcp_l3mdev_accept"
	if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enabling tcp_l3mdev_accept: %w", err)
	}
	return nil
}

// shutdownSessions shuts down (without a BGP NOTIFICATION) the TCP
// connections of this process whose remote address is one of peers and one
// of whose ports is the BGP port or listenPort. It is how Stop closes
// sessions for graceful restart: GoBGP v3.37.0 has no way to stop without
// sending CEASE (StopBgpRequest has no AllowGracefulRestart field in this
// version), and a CEASE makes the peer flush our routes. A plain TCP close
// is a transport failure, which RFC 4724 helpers answer by keeping our
// routes for the restart time. It returns the number of sockets shut down.
func shutdownSessions(peers map[netip.Addr]bool, listenPort int) (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, fmt.Errorf("listing file descriptors: %w", err)
	}
	n := 0
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:") {
			continue
		}
		rsa, err := syscall.Getpeername(fd)
		if err != nil {
			continue
		}
		lsa, err := syscall.Getsockname(fd)
		if err != nil {
			continue
		}
		raddr, rport := sockaddr(rsa)
		_, lport := sockaddr(lsa)
		if !peers[raddr] || (rport != 179 && lport != 179 && lport != listenPort) {
			continue
		}
		if err := syscall.Shutdown(fd, syscall.SHUT_RDWR); err == nil {
			n++
		}
	}
	return n, nil
}

func sockaddr(sa syscall.Sockaddr) (netip.Addr, int) {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr), sa.Port
	case *syscall.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr).Unmap(), sa.Port
	}
	return netip.Addr{}, 0
}
