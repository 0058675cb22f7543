package scenario

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// dialIn opens a TCP connection from inside the named network namespace, so
// the scenario (running in the root namespace) can reach the controller on
// the lab's management network without the host routing into the lab.
func dialIn(ctx context.Context, ns, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("getting current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("opening netns %s: %w", ns, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("entering netns %s: %w", ns, err)
	}
	// The socket is created in the thread's namespace and stays there.
	conn, dialErr := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: Go then discards it instead of reusing
		// a thread stuck in the wrong namespace.
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("leaving netns %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}

// Kernel reads link state inside one lab node's namespace over netlink; the
// checks use it so that they look at the kernel, never at what an agent says.
type Kernel struct {
	ns     netns.NsHandle
	handle *netlink.Handle
}

// OpenKernel opens a netlink handle in the named namespace.
func OpenKernel(ns string) (*Kernel, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("opening netns %s: %w", ns, err)
	}
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", ns, err)
	}
	return &Kernel{ns: h, handle: nh}, nil
}

// Close releases the handle.
func (k *Kernel) Close() {
	k.handle.Close()
	k.ns.Close()
}

// PortVRF is where a port is enslaved, as the kernel sees it.
type PortVRF struct {
	Port      string
	PortIndex int
	VRF       string // "" when the port has no VRF master
	VRFIndex  int
	Table     uint32
}

// PortVRF returns the VRF master of port (empty VRF if none).
func (k *Kernel) PortVRF(port string) (PortVRF, error) {
	l, err := k.handle.LinkByName(port)
	if err != nil {
		return PortVRF{}, fmt.Errorf("reading link %s: %w", port, err)
	}
	got := PortVRF{Port: port, PortIndex: l.Attrs().Index}
	if l.Attrs().MasterIndex == 0 {
		return got, nil
	}
	m, err := k.handle.LinkByIndex(l.Attrs().MasterIndex)
	if err != nil {
		return PortVRF{}, fmt.Errorf("reading master of %s: %w", port, err)
	}
	vrf, ok := m.(*netlink.Vrf)
	if !ok {
		return got, fmt.Errorf("master of %s is %s of type %s, not a vrf", port, m.Attrs().Name, m.Type())
	}
	got.VRF, got.VRFIndex, got.Table = vrf.Name, vrf.Index, vrf.Table
	return got, nil
}

// HasLink reports whether a link of that name exists.
func (k *Kernel) HasLink(name string) (bool, error) {
	_, err := k.handle.LinkByName(name)
	var nf netlink.LinkNotFoundError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &nf):
		return false, nil
	}
	return false, fmt.Errorf("reading link %s: %w", name, err)
}

// LinkStates returns every link's name with its master and flags, rendered
// like LinkState renders an update, so a watcher can tell a real change from
// a notification that changed neither (the bridge notifies, for example,
// when a port's forward-delay timer ends).
func (k *Kernel) LinkStates() (map[string]string, error) {
	links, err := retryDump(k.handle.LinkList)
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	out := make(map[string]string, len(links))
	for _, l := range links {
		out[l.Attrs().Name] = LinkState(l.Attrs())
	}
	return out, nil
}

// LinkState renders the parts of a link the e2e checks watch: master and
// flags.
func LinkState(a *netlink.LinkAttrs) string {
	return fmt.Sprintf("master=%d flags=%v", a.MasterIndex, a.Flags)
}

// WatchLinks streams link changes of the namespace until ctx ends.
func (k *Kernel) WatchLinks(ctx context.Context) (<-chan netlink.LinkUpdate, error) {
	ch := make(chan netlink.LinkUpdate, 256)
	done := make(chan struct{})
	go func() { <-ctx.Done(); close(done) }()
	ns := k.ns
	if err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{Namespace: &ns}); err != nil {
		return nil, fmt.Errorf("subscribing to links: %w", err)
	}
	return ch, nil
}

// L3VNIState is what the kernel holds for one tenant VRF's L3VNI.
type L3VNIState struct {
	VXLAN    string // vxlan<VNI>
	VNI      uint32
	Local    string // local VTEP address
	Learning bool
	Port     int // VXLAN UDP port
	Bridge   string
	SVI      string // the vlan<N> device in the VRF
	SVIVRF   string
}

// L3VNI reads vxlan<vni>, its bridge, and the SVI in vrf that belongs to it.
func (k *Kernel) L3VNI(vni uint32, vrf string) (L3VNIState, error) {
	name := fmt.Sprintf("vxlan%d", vni)
	l, err := k.handle.LinkByName(name)
	if err != nil {
		return L3VNIState{}, fmt.Errorf("reading %s: %w", name, err)
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return L3VNIState{}, fmt.Errorf("%s is a %s, not a vxlan", name, l.Type())
	}
	st := L3VNIState{VXLAN: name, VNI: uint32(vx.VxlanId), Learning: vx.Learning, Port: vx.Port}
	if vx.SrcAddr != nil {
		st.Local = vx.SrcAddr.String()
	}
	if vx.MasterIndex != 0 {
		if m, err := k.handle.LinkByIndex(vx.MasterIndex); err == nil {
			st.Bridge = m.Attrs().Name
		}
	}
	links, err := retryDump(k.handle.LinkList)
	if err != nil {
		return st, fmt.Errorf("listing links: %w", err)
	}
	var vrfIndex int
	for _, l := range links {
		if l.Attrs().Name == vrf {
			vrfIndex = l.Attrs().Index
		}
	}
	for _, l := range links {
		if l.Type() == "vlan" && vrfIndex != 0 && l.Attrs().MasterIndex == vrfIndex {
			st.SVI, st.SVIVRF = l.Attrs().Name, vrf
		}
	}
	return st, nil
}

// HasAddr reports whether dev holds the address prefix.
func (k *Kernel) HasAddr(dev, prefix string) (bool, error) {
	l, err := k.handle.LinkByName(dev)
	if err != nil {
		return false, fmt.Errorf("reading link %s: %w", dev, err)
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return k.handle.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return false, fmt.Errorf("listing addresses of %s: %w", dev, err)
	}
	for _, a := range addrs {
		if a.IPNet.String() == prefix {
			return true, nil
		}
	}
	return false, nil
}

// retryDump runs a netlink dump again while the kernel reports it was
// interrupted by a concurrent change (NLM_F_DUMP_INTR), a few times.
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var out []T
	var err error
	for range 5 {
		out, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return out, err
}
