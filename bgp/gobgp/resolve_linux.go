//go:build linux

package gobgp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

var allNodes = netip.MustParseAddr("ff02::1")

// resolveLinkLocal finds the IPv6 link-local address of the single
// neighbour on the point-to-point link ifname: it sends an ICMPv6 echo
// request to ff02::1 on that link and takes the source of the replies
// (waiting up to wait). When nobody answers it falls back to the kernel's
// neighbour table. It fails when no neighbour, or more than one, is found.
func resolveLinkLocal(ctx context.Context, ifname string, wait time.Duration) (netip.Addr, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return netip.Addr{}, err
	}
	local, err := localAddrs(ifi)
	if err != nil {
		return netip.Addr{}, err
	}
	found, perr := pingAllNodes(ctx, ifi, local, wait)
	if len(found) == 0 {
		nfound, nerr := neighLinkLocals(ifi, local)
		if nerr != nil && perr != nil {
			return netip.Addr{}, errors.Join(perr, nerr)
		}
		found = nfound
	}
	switch len(found) {
	case 0:
		return netip.Addr{}, fmt.Errorf("no IPv6 link-local neighbour on %s", ifname)
	case 1:
		for a := range found {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%d IPv6 link-local neighbours on %s: unnumbered peering needs a point-to-point link", len(found), ifname)
}

func localAddrs(ifi *net.Interface) (map[netip.Addr]bool, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("listing addresses of %s: %w", ifi.Name, err)
	}
	m := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok {
				m[ip.Unmap()] = true
			}
		}
	}
	return m, nil
}

func pingAllNodes(ctx context.Context, ifi *net.Interface, local map[netip.Addr]bool, wait time.Duration) (map[netip.Addr]bool, error) {
	c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("opening ICMPv6 socket: %w", err)
	}
	defer c.Close()
	p := c.IPv6PacketConn()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeEchoReply)
	if err := p.SetICMPFilter(&f); err != nil {
		return nil, fmt.Errorf("setting ICMPv6 filter: %w", err)
	}
	if err := p.SetMulticastInterface(ifi); err != nil {
		return nil, fmt.Errorf("setting multicast interface %s: %w", ifi.Name, err)
	}
	_ = p.SetMulticastLoopback(false)
	if err := p.SetControlMessage(ipv6.FlagInterface, true); err != nil {
		return nil, fmt.Errorf("enabling control messages: %w", err)
	}
	// Announce ourselves first: FRR learns an unnumbered neighbour's
	// link-local address only from its router advertisements.
	if err := sendRA(p, ifi); err != nil {
		return nil, err
	}
	id := rand.IntN(0xffff)
	msg := icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("fabric-bgp-unnumbered")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return nil, err
	}
	dst := &net.IPAddr{IP: net.IP(allNodes.AsSlice()), Zone: ifi.Name}
	if _, err := p.WriteTo(b, nil, dst); err != nil {
		return nil, fmt.Errorf("sending echo request on %s: %w", ifi.Name, err)
	}
	deadline := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := p.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	found := map[netip.Addr]bool{}
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := p.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return found, nil
			}
			return found, fmt.Errorf("reading echo replies on %s: %w", ifi.Name, err)
		}
		if cm != nil && cm.IfIndex != ifi.Index {
			continue
		}
		m, err := icmp.ParseMessage(58, buf[:n])
		if err != nil || m.Type != ipv6.ICMPTypeEchoReply {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); !ok || e.ID != id {
			continue
		}
		ipa, ok := src.(*net.IPAddr)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(ipa.IP)
		if !ok || !a.IsLinkLocalUnicast() || local[a] {
			continue
		}
		found[a] = true
		// A point-to-point link has one neighbour: keep listening a
		// little for a second one only while the deadline allows.
		if len(found) == 1 {
			short := time.Now().Add(200 * time.Millisecond)
			if short.Before(deadline) {
				deadline = short
				_ = p.SetReadDeadline(deadline)
			}
		}
	}
}

// announce sends one router advertisement on ifname (see sendRA).
func announce(ifname string) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return err
	}
	c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return fmt.Errorf("opening ICMPv6 socket: %w", err)
	}
	defer c.Close()
	p := c.IPv6PacketConn()
	if err := p.SetMulticastInterface(ifi); err != nil {
		return fmt.Errorf("setting multicast interface %s: %w", ifi.Name, err)
	}
	_ = p.SetMulticastLoopback(false)
	return sendRA(p, ifi)
}

// sendRA sends a router advertisement with router lifetime 0 (nobody uses
// us as a default router) and our link-layer address to ff02::1 on ifi.
// FRR's "neighbor IF interface" learns the peer's link-local address from
// the router advertisements it receives (zebra rtadv), the way FRR peers
// announce themselves to each other; without it FRR neither connects nor
// accepts our connection.
func sendRA(p *ipv6.PacketConn, ifi *net.Interface) error {
	if err := p.SetMulticastHopLimit(255); err != nil {
		return fmt.Errorf("setting hop limit: %w", err)
	}
	// RFC 4861 4.2: cur hop limit, flags, router lifetime, reachable
	// time, retrans timer, then the source link-layer address option.
	body := make([]byte, 12, 12+8)
	if len(ifi.HardwareAddr) == 6 {
		body = append(body, 1, 1)
		body = append(body, ifi.HardwareAddr...)
	}
	msg := icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Body: &icmp.RawBody{Data: body}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	dst := &net.IPAddr{IP: net.IP(allNodes.AsSlice()), Zone: ifi.Name}
	if _, err := p.WriteTo(b, nil, dst); err != nil {
		return fmt.Errorf("sending router advertisement on %s: %w", ifi.Name, err)
	}
	return nil
}

// kernelLinkLocal returns the link-local address of the single reachable
// (or stale, not failed) neighbour the kernel knows on ifname, without
// sending anything.
func kernelLinkLocal(ifname string) (netip.Addr, bool) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return netip.Addr{}, false
	}
	local, err := localAddrs(ifi)
	if err != nil {
		return netip.Addr{}, false
	}
	found, err := neighLinkLocals(ifi, local)
	if err != nil || len(found) != 1 {
		return netip.Addr{}, false
	}
	for a := range found {
		return a, true
	}
	return netip.Addr{}, false
}

// neighLinkLocals reads the kernel's neighbour table like GoBGP's own
// NeighborInterface support does (pkg/config/oc/default_linux.go).
func neighLinkLocals(ifi *net.Interface, local map[netip.Addr]bool) (map[netip.Addr]bool, error) {
	neighs, err := netlink.NeighList(ifi.Index, netlink.FAMILY_V6)
	if err != nil {
		return nil, fmt.Errorf("listing neighbours of %s: %w", ifi.Name, err)
	}
	found := map[netip.Addr]bool{}
	for _, n := range neighs {
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok || !a.IsLinkLocalUnicast() || local[a] || n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) != 0 {
			continue
		}
		found[a] = true
	}
	return found, nil
}
