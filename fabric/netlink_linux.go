//go:build linux

package fabric

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dumpAttempts bounds the retries of a netlink dump interrupted by a
// concurrent change (NLM_F_DUMP_INTR).
const dumpAttempts = 10

// Netlink is the Linux [Kernel] over a netlink handle.
type Netlink struct {
	h     *netlink.Handle
	owned bool
}

// NewNetlink returns a Kernel that works through h, e.g. a handle for a
// fresh network namespace from netlink.NewHandleAt. The caller keeps
// ownership of h.
func NewNetlink(h *netlink.Handle) *Netlink { return &Netlink{h: h} }

// OpenKernel returns a Kernel for the calling process's network namespace.
func OpenKernel() (Kernel, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	return &Netlink{h: h, owned: true}, nil
}

// Close closes the handle if OpenKernel opened it.
func (n *Netlink) Close() error {
	if n.owned {
		n.h.Close()
	}
	return nil
}

// Links lists all links. A dump interrupted by a concurrent change is
// retried; no other error is.
func (n *Netlink) Links(ctx context.Context) ([]Link, error) {
	nls, err := retryDump(ctx, n.h.LinkList)
	if err != nil {
		return nil, err
	}
	names := make(map[int]string, len(nls))
	for _, l := range nls {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	links := make([]Link, 0, len(nls))
	for _, nl := range nls {
		a := nl.Attrs()
		l := Link{
			Name:      a.Name,
			Index:     a.Index,
			Kind:      nl.Type(),
			Alias:     a.Alias,
			AdminUp:   a.Flags&net.FlagUp != 0,
			OperState: a.OperState.String(),
			Loopback:  a.Flags&net.FlagLoopback != 0,
			MTU:       a.MTU,
		}
		if len(a.HardwareAddr) > 0 {
			l.MAC = a.HardwareAddr.String()
		}
		if a.MasterIndex != 0 {
			l.Master = names[a.MasterIndex]
			if l.Master == "" {
				l.Master = fmt.Sprintf("if%d", a.MasterIndex)
			}
		}
		if v, ok := nl.(*netlink.Vrf); ok {
			l.VRFTable = v.Table
		}
		links = append(links, l)
	}
	return links, nil
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

// AddVRF creates a VRF and marks it. The marker is sent with the creation
// request; a kernel that does not apply IFLA_IFALIAS on creation gets it in a
// second request, and if that fails the new VRF is deleted again so no
// unmarked VRF is left behind.
func (n *Netlink) AddVRF(ctx context.Context, name string, table uint32, marker string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	vrf := &netlink.Vrf{LinkAttrs: netlink.LinkAttrs{Name: name, Alias: marker}, Table: table}
	if err := n.h.LinkAdd(vrf); err != nil {
		return err
	}
	l, err := n.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("looking up new vrf: %w", err)
	}
	if l.Attrs().Alias == marker {
		return nil
	}
	if err := n.h.LinkSetAlias(l, marker); err != nil {
		if derr := n.h.LinkDel(l); derr != nil {
			return fmt.Errorf("marking: %w (and deleting the unmarked vrf: %v)", err, derr)
		}
		return fmt.Errorf("marking: %w", err)
	}
	return nil
}

// SetUp sets a link administratively up.
func (n *Netlink) SetUp(ctx context.Context, name string) error {
	l, err := n.link(ctx, name)
	if err != nil {
		return err
	}
	return n.h.LinkSetUp(l)
}

// SetMaster enslaves link to master.
func (n *Netlink) SetMaster(ctx context.Context, link, master string) error {
	l, err := n.link(ctx, link)
	if err != nil {
		return err
	}
	m, err := n.link(ctx, master)
	if err != nil {
		return err
	}
	return n.h.LinkSetMasterByIndex(l, m.Attrs().Index)
}

// SetNoMaster releases link from its master.
func (n *Netlink) SetNoMaster(ctx context.Context, link string) error {
	l, err := n.link(ctx, link)
	if err != nil {
		return err
	}
	return n.h.LinkSetNoMaster(l)
}

// DeleteLink deletes a link.
func (n *Netlink) DeleteLink(ctx context.Context, name string) error {
	l, err := n.link(ctx, name)
	if err != nil {
		return err
	}
	return n.h.LinkDel(l)
}

func (n *Netlink) link(ctx context.Context, name string) (netlink.Link, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l, err := n.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("looking up %s: %w", name, err)
	}
	return l, nil
}
