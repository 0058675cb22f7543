package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// kernelLeaker installs leak routes over a netlink handle.
type kernelLeaker struct{ h *netlink.Handle }

// NewKernelLeaker returns the Leaker over netlink in the process's network
// namespace.
func NewKernelLeaker() Leaker { return kernelLeaker{h: &netlink.Handle{}} }

// newKernelLeakerAt returns the Leaker over a handle (another namespace).
func newKernelLeakerAt(h *netlink.Handle) Leaker { return kernelLeaker{h: h} }

// Sync replaces every wanted route (so a changed target device is
// updated) and deletes the routes of LeakProtocol that are not wanted. It
// goes on after a failure and returns every error, joined.
func (k kernelLeaker) Sync(ctx context.Context, want []LeakRoute) error {
	var errs []error
	wanted := make(map[string]bool, len(want))
	for _, r := range want {
		if err := ctx.Err(); err != nil {
			return err
		}
		wanted[leakKey(r.Table, r.Prefix)] = true
		link, err := k.h.LinkByName(r.Dev)
		if err != nil {
			errs = append(errs, fmt.Errorf("route %s: device %s: %w", r, r.Dev, err))
			continue
		}
		nr := &netlink.Route{
			LinkIndex: link.Attrs().Index, Dst: ipNet(r.Prefix), Table: int(r.Table),
			Protocol: LeakProtocol, Scope: netlink.SCOPE_LINK, Type: unix.RTN_UNICAST,
		}
		if err := k.h.RouteReplace(nr); err != nil {
			errs = append(errs, fmt.Errorf("route %s: %w", r, err))
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		have, err := k.h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_UNSPEC, Protocol: LeakProtocol},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing leak routes: %w", err))
			continue
		}
		for _, hr := range have {
			if hr.Protocol != LeakProtocol {
				continue
			}
			p := prefixOf(hr.Dst, fam)
			if wanted[leakKey(uint32(hr.Table), p)] {
				continue
			}
			if err := k.h.RouteDel(&hr); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("removing route %s table %d: %w", p, hr.Table, err))
			}
		}
	}
	return errors.Join(errs...)
}

func leakKey(table uint32, p netip.Prefix) string { return fmt.Sprintf("%d/%s", table, p.Masked()) }

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet, fam int) netip.Prefix {
	if n == nil {
		if fam == netlink.FAMILY_V6 {
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	a, _ := netip.AddrFromSlice(n.IP)
	if fam == netlink.FAMILY_V4 {
		a = a.Unmap()
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones)
}
