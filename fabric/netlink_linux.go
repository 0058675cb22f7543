//go:build linux

package fabric

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// dumpAttempts bounds the retries of a netlink dump interrupted by a
// concurrent change (NLM_F_DUMP_INTR).
const dumpAttempts = 10

// Netlink is the Linux [Kernel] over one netlink handle. It remembers the
// ifindex of every link from the last Read (and of the links it creates), so
// a change costs one request, not a lookup and a request; a link that is not
// known is looked up by name. (A link deleted and re-created by someone else
// between Read and a change gets a new ifindex, so the change fails with
// ENODEV rather than hitting another link; the next Read refreshes the map.)
type Netlink struct {
	h     *netlink.Handle
	owned bool

	// raw is a second socket in the handle's network namespace for the
	// requests netlink.Handle cannot build (a group delete); nil when the
	// Kernel was made with NewNetlink.
	raw *nl.SocketHandle

	mu        sync.Mutex
	index     map[string]int
	maxIndex  int  // the highest ifindex seen or given out; never lowered
	groupBusy bool // a link is in deleteGroup: do not delete by group
}

// deleteGroup is the link group (IFLA_GROUP, "fabd") links are moved to
// right before they are deleted together with one RTM_DELLINK: the kernel
// then unregisters them in one batch, with one RCU grace period instead of
// one per link. It is used only when no link was in it at the last Read.
const deleteGroup = 0x66616264

var _ Kernel = (*Netlink)(nil)

// NewNetlink returns a Kernel that works through h, e.g. a handle for a
// fresh network namespace from netlink.NewHandleAt. The caller keeps
// ownership of h.
func NewNetlink(h *netlink.Handle) *Netlink { return &Netlink{h: h, index: map[string]int{}} }

// OpenKernel returns a Kernel for the calling thread's network namespace.
func OpenKernel() (Kernel, error) { return OpenKernelAt(netns.None()) }

// OpenKernelAt returns a Kernel for the network namespace ns (netns.None():
// the calling thread's). Close releases it.
func OpenKernelAt(ns netns.NsHandle) (*Netlink, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	raw, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	return &Netlink{h: h, owned: true, raw: &nl.SocketHandle{Socket: raw}, index: map[string]int{}}, nil
}

// Close closes the handle and socket if OpenKernel opened them.
func (n *Netlink) Close() error {
	if n.owned {
		n.h.Close()
		n.raw.Socket.Close()
	}
	return nil
}

// Read dumps links, addresses and bridge VLANs (three dumps). A dump
// interrupted by a concurrent change is retried; no other error is.
func (n *Netlink) Read(ctx context.Context) (Actual, error) {
	nls, err := retryDump(ctx, n.h.LinkList)
	if err != nil {
		return Actual{}, fmt.Errorf("listing links: %w", err)
	}
	names := make(map[int]string, len(nls))
	groupBusy := false
	for _, l := range nls {
		names[l.Attrs().Index] = l.Attrs().Name
		groupBusy = groupBusy || l.Attrs().Group == deleteGroup
	}
	nameOf := func(i int) string {
		if s, ok := names[i]; ok {
			return s
		}
		return fmt.Sprintf("if%d", i)
	}
	var a Actual
	a.Links = make([]Link, 0, len(nls))
	for _, nl := range nls {
		attrs := nl.Attrs()
		l := Link{
			Name:      attrs.Name,
			Index:     attrs.Index,
			Kind:      nl.Type(),
			Alias:     attrs.Alias,
			AdminUp:   attrs.Flags&net.FlagUp != 0,
			OperState: attrs.OperState.String(),
			Loopback:  attrs.Flags&net.FlagLoopback != 0,
			MTU:       attrs.MTU,
		}
		if len(attrs.HardwareAddr) > 0 {
			l.MAC = attrs.HardwareAddr.String()
		}
		if attrs.MasterIndex != 0 {
			l.Master = nameOf(attrs.MasterIndex)
		}
		switch v := nl.(type) {
		case *netlink.Vrf:
			l.VRFTable = v.Table
		case *netlink.Vxlan:
			l.VNI = uint32(v.VxlanId)
			if ip, ok := netip.AddrFromSlice(v.SrcAddr); ok {
				l.VXLANLocal = ip.Unmap().String()
			}
			l.VXLANPort = v.Port
			l.VXLANLearning = v.Learning
		case *netlink.Vlan:
			l.VLANID = uint16(v.VlanId)
			if attrs.ParentIndex != 0 {
				l.Parent = nameOf(attrs.ParentIndex)
			}
		case *netlink.Bridge:
			l.VLANFiltering = v.VlanFiltering != nil && *v.VlanFiltering
		}
		a.Links = append(a.Links, l)
	}

	addrs, err := retryDump(ctx, func() ([]netlink.Addr, error) { return n.h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return Actual{}, fmt.Errorf("listing addresses: %w", err)
	}
	a.Addrs = make([]Addr, 0, len(addrs))
	for _, ad := range addrs {
		ip, ok := netip.AddrFromSlice(ad.IP)
		if !ok {
			continue
		}
		bits, _ := ad.Mask.Size()
		ip = ip.Unmap()
		a.Addrs = append(a.Addrs, Addr{Link: nameOf(ad.LinkIndex), Prefix: netip.PrefixFrom(ip, bits), Label: ad.Label})
	}

	vlans, err := retryDump(ctx, n.h.BridgeVlanList)
	if err != nil {
		return Actual{}, fmt.Errorf("listing bridge vlans: %w", err)
	}
	for idx, vs := range vlans {
		for _, v := range vs {
			a.VLANs = append(a.VLANs, BridgeVLAN{
				Link:     nameOf(int(idx)),
				VID:      v.Vid,
				PVID:     v.Flags&nl.BRIDGE_VLAN_INFO_PVID != 0,
				Untagged: v.Flags&nl.BRIDGE_VLAN_INFO_UNTAGGED != 0,
			})
		}
	}

	n.mu.Lock()
	n.groupBusy = groupBusy
	clear(n.index)
	for i, name := range names {
		n.index[name] = i
		n.maxIndex = max(n.maxIndex, i)
	}
	n.mu.Unlock()
	return a, nil
}

// retryDump calls dump until it returns something other than
// netlink.ErrDumpInterrupted, at most dumpAttempts times.
func retryDump[T any](ctx context.Context, dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range dumpAttempts {
		if cerr := ctx.Err(); cerr != nil {
			return v, cerr
		}
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, fmt.Errorf("%d attempts: %w", dumpAttempts, err)
}

// AddLink creates a link and marks it: the kernel ignores IFLA_IFALIAS on
// creation, so the marker goes in a second request, and if that fails the
// new link is deleted again so no unmarked link is left behind.
func (n *Netlink) AddLink(ctx context.Context, c Change, marker string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	attrs := netlink.LinkAttrs{Name: c.Link, MTU: c.MTU}
	if c.MAC != "" {
		mac, err := net.ParseMAC(c.MAC)
		if err != nil {
			return err
		}
		attrs.HardwareAddr = mac
	}
	var l netlink.Link
	switch c.Kind {
	case KindVRF:
		l = &netlink.Vrf{LinkAttrs: attrs, Table: c.Table}
	case KindBridge:
		on, pvid := true, uint16(0)
		l = &netlink.Bridge{LinkAttrs: attrs, VlanFiltering: &on, VlanDefaultPVID: &pvid}
	case KindVXLAN:
		l = &netlink.Vxlan{LinkAttrs: attrs, VxlanId: int(c.VNI), SrcAddr: net.IP(c.Local.AsSlice()), Port: VXLANPort, Learning: false}
	case KindVLAN:
		p, err := n.linkIndex(c.Parent)
		if err != nil {
			return err
		}
		attrs.ParentIndex = p
		l = &netlink.Vlan{LinkAttrs: attrs, VlanId: int(c.VLAN)}
	default:
		return fmt.Errorf("unknown link kind %q", c.Kind)
	}
	if err := n.linkAdd(l); err != nil {
		return err
	}
	if err := n.h.LinkSetAlias(l, marker); err != nil {
		if derr := n.h.LinkDel(l); derr != nil {
			return fmt.Errorf("marking: %w (and deleting the unmarked link: %v)", err, derr)
		}
		return fmt.Errorf("marking: %w", err)
	}
	n.mu.Lock()
	n.index[c.Link] = l.Attrs().Index
	n.mu.Unlock()
	return nil
}

// linkAdd creates l with an ifindex above every one seen so far, so that
// the request needs no lookup afterwards (netlink.Handle.LinkAdd looks a
// link up by name when its index is unknown) and no ifindex is reused. When
// another process took that index (EBUSY), the next one is tried, then the
// kernel's choice.
func (n *Netlink) linkAdd(l netlink.Link) error {
	for range 3 {
		n.mu.Lock()
		n.maxIndex++
		idx := n.maxIndex
		n.mu.Unlock()
		l.Attrs().Index = idx
		err := n.h.LinkAdd(l)
		if !errors.Is(err, unix.EBUSY) {
			return err
		}
	}
	l.Attrs().Index = 0
	return n.h.LinkAdd(l)
}

// SetUp sets a link administratively up.
func (n *Netlink) SetUp(ctx context.Context, name string) error {
	return n.do(ctx, name, n.h.LinkSetUp)
}

// SetDown sets a link administratively down.
func (n *Netlink) SetDown(ctx context.Context, name string) error {
	return n.do(ctx, name, n.h.LinkSetDown)
}

// SetMTU sets a link's MTU.
func (n *Netlink) SetMTU(ctx context.Context, name string, mtu int) error {
	return n.do(ctx, name, func(l netlink.Link) error { return n.h.LinkSetMTU(l, mtu) })
}

// SetAlias sets a link's IFLA_IFALIAS.
func (n *Netlink) SetAlias(ctx context.Context, name, alias string) error {
	return n.do(ctx, name, func(l netlink.Link) error { return n.h.LinkSetAlias(l, alias) })
}

// SetMAC sets a link's MAC address.
func (n *Netlink) SetMAC(ctx context.Context, name, mac string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return err
	}
	return n.do(ctx, name, func(l netlink.Link) error { return n.h.LinkSetHardwareAddr(l, hw) })
}

// SetMaster enslaves link to master.
func (n *Netlink) SetMaster(ctx context.Context, link, master string) error {
	m, err := n.linkIndex(master)
	if err != nil {
		return err
	}
	return n.do(ctx, link, func(l netlink.Link) error { return n.h.LinkSetMasterByIndex(l, m) })
}

// SetNoMaster releases link from its master.
func (n *Netlink) SetNoMaster(ctx context.Context, link string) error {
	return n.do(ctx, link, n.h.LinkSetNoMaster)
}

// DeleteLink deletes a link (and, like the kernel does, forgets the 802.1Q
// devices on it).
func (n *Netlink) DeleteLink(ctx context.Context, name string) error {
	err := n.do(ctx, name, n.h.LinkDel)
	if err == nil {
		n.mu.Lock()
		delete(n.index, name)
		n.mu.Unlock()
	}
	return err
}

// DeleteLinks deletes links in one batch: each is moved to deleteGroup, then
// the group is deleted with one request. Without a raw socket, with the
// group in use, or when the group delete fails, the links are deleted one
// by one.
func (n *Netlink) DeleteLinks(ctx context.Context, names []string) []error {
	errs := make([]error, len(names))
	n.mu.Lock()
	batch := n.raw != nil && !n.groupBusy && len(names) > 1
	n.mu.Unlock()
	moved := make([]bool, len(names))
	if batch {
		any := false
		for i, name := range names {
			if err := n.do(ctx, name, func(l netlink.Link) error { return n.h.LinkSetGroup(l, deleteGroup) }); err == nil {
				moved[i], any = true, true
			}
		}
		if any && ctx.Err() == nil && n.deleteGroup() == nil {
			n.mu.Lock()
			for i, name := range names {
				if moved[i] {
					delete(n.index, name)
				}
			}
			n.mu.Unlock()
		} else {
			clear(moved)
		}
	}
	for i, name := range names {
		if !moved[i] {
			errs[i] = n.DeleteLink(ctx, name)
		}
	}
	return errs
}

func (n *Netlink) deleteGroup() error {
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   uint32(unix.SizeofNlMsghdr),
			Type:  unix.RTM_DELLINK,
			Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK,
		},
		Sockets: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: n.raw},
	}
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(deleteGroup)))
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// AddBridgeVLANs adds a VLAN range in one request.
func (n *Netlink) AddBridgeVLANs(ctx context.Context, v BridgeVLAN, end uint16, self bool) error {
	return n.do(ctx, v.Link, func(l netlink.Link) error {
		if end > v.VID {
			return n.h.BridgeVlanAddRange(l, v.VID, end, v.PVID, v.Untagged, self, !self)
		}
		return n.h.BridgeVlanAdd(l, v.VID, v.PVID, v.Untagged, self, !self)
	})
}

// DelBridgeVLANs deletes a VLAN range in one request.
func (n *Netlink) DelBridgeVLANs(ctx context.Context, v BridgeVLAN, end uint16, self bool) error {
	return n.do(ctx, v.Link, func(l netlink.Link) error {
		if end > v.VID {
			return n.h.BridgeVlanDelRange(l, v.VID, end, false, false, self, !self)
		}
		return n.h.BridgeVlanDel(l, v.VID, false, false, self, !self)
	})
}

// AddAddr adds an address.
func (n *Netlink) AddAddr(ctx context.Context, a Addr) error {
	return n.do(ctx, a.Link, func(l netlink.Link) error { return n.h.AddrAdd(l, nlAddr(a)) })
}

// DelAddr deletes an address.
func (n *Netlink) DelAddr(ctx context.Context, a Addr) error {
	return n.do(ctx, a.Link, func(l netlink.Link) error { return n.h.AddrDel(l, nlAddr(a)) })
}

func nlAddr(a Addr) *netlink.Addr {
	ip := a.Prefix.Addr()
	bits := 128
	if ip.Is4() {
		bits = 32
	}
	return &netlink.Addr{
		IPNet: &net.IPNet{IP: net.IP(ip.AsSlice()), Mask: net.CIDRMask(a.Prefix.Bits(), bits)},
		Label: a.Label,
	}
}

// do runs f on a link value that carries only the link's index, the only
// attribute the setters use.
func (n *Netlink) do(ctx context.Context, name string, f func(netlink.Link) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	i, err := n.linkIndex(name)
	if err != nil {
		return err
	}
	return f(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: name, Index: i}})
}

func (n *Netlink) linkIndex(name string) (int, error) {
	n.mu.Lock()
	i, ok := n.index[name]
	n.mu.Unlock()
	if ok {
		return i, nil
	}
	l, err := n.h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("looking up %s: %w", name, err)
	}
	n.mu.Lock()
	n.index[name] = l.Attrs().Index
	n.mu.Unlock()
	return l.Attrs().Index, nil
}
