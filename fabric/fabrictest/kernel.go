// Package fabrictest provides a fake [fabric.Kernel] for unit tests: an
// in-memory set of links, addresses and bridge VLANs with the kernel's
// semantics for the operations the reconciler uses, a record of every change
// call, and error injection. It touches no real kernel.
package fabrictest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/metalfabric/fabric/fabric"
)

// Errors the fake returns, like the kernel's EEXIST, ENODEV, EINVAL and
// EADDRNOTAVAIL.
var (
	ErrExists        = errors.New("file exists")
	ErrNoDevice      = errors.New("no such device")
	ErrInvalid       = errors.New("invalid argument")
	ErrAddrNotAvail  = errors.New("cannot assign requested address")
	ErrNotBridgePort = errors.New("operation not supported: not a bridge port")
)

// Kernel is a fake fabric.Kernel. The zero value is not usable; use New.
type Kernel struct {
	mu        sync.Mutex
	links     []fabric.Link
	addrs     []fabric.Addr
	vlans     []fabric.BridgeVLAN
	nextIndex int
	calls     []string
	failOn    map[string]error
	readErrs  []error
	reads     int
	hook      func(call string)
}

var _ fabric.Kernel = (*Kernel)(nil)

// New returns a fake kernel holding links (indexes are filled in when 0).
func New(links ...fabric.Link) *Kernel {
	k := &Kernel{nextIndex: 1, failOn: map[string]error{}}
	for _, l := range links {
		k.add(l)
	}
	return k
}

// NewFrom returns a fake kernel holding the state a (OwnedAddrs ignored).
func NewFrom(a fabric.Actual) *Kernel {
	k := New(a.Links...)
	k.addrs = slices.Clone(a.Addrs)
	k.vlans = slices.Clone(a.VLANs)
	return k
}

// Port returns an up veth port with a MAC derived from its name.
func Port(name string) fabric.Link {
	var sum byte
	for _, c := range []byte(name) {
		sum = sum*31 + c
	}
	return fabric.Link{
		Name: name, Kind: fabric.KindVeth, AdminUp: true, OperState: "up",
		MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", len(name), sum), MTU: 9000,
	}
}

// Loopback returns the loopback link "lo".
func Loopback() fabric.Link {
	return fabric.Link{Name: "lo", Kind: fabric.KindDevice, AdminUp: true, OperState: "unknown", Loopback: true, MAC: "00:00:00:00:00:00", MTU: 65536}
}

// VRF returns an up VRF link; marked VRFs carry fabric.Marker.
func VRF(name string, table uint32, marked bool) fabric.Link {
	l := fabric.Link{Name: name, Kind: fabric.KindVRF, VRFTable: table, AdminUp: true, OperState: "up", MTU: 65575}
	if marked {
		l.Alias = fabric.Marker
	}
	return l
}

// Bridge returns an up VLAN-filtering bridge.
func Bridge(name string, marked bool) fabric.Link {
	l := fabric.Link{Name: name, Kind: fabric.KindBridge, AdminUp: true, OperState: "up", MTU: 1500, VLANFiltering: true, MAC: "02:bb:00:00:00:01"}
	if marked {
		l.Alias = fabric.Marker
	}
	return l
}

// VXLAN returns an up, marked VXLAN device vxlan<VNI> as the reconciler
// creates it.
func VXLAN(vni uint32, local netip.Addr) fabric.Link {
	return fabric.Link{
		Name: fabric.VXLANName(vni), Kind: fabric.KindVXLAN, Alias: fabric.Marker, AdminUp: true, OperState: "unknown",
		MTU: 1450, VNI: vni, VXLANLocal: local.String(), VXLANPort: fabric.VXLANPort, MAC: "02:aa:00:00:00:01",
	}
}

// SVI returns an up, marked SVI vlan<VLAN> on parent.
func SVI(vlan uint16, parent, mac string) fabric.Link {
	return fabric.Link{
		Name: fabric.SVIName(vlan), Kind: fabric.KindVLAN, Alias: fabric.Marker, AdminUp: true, OperState: "up",
		MTU: 1500, VLANID: vlan, Parent: parent, MAC: mac,
	}
}

// In returns l enslaved to master.
func In(l fabric.Link, master string) fabric.Link {
	l.Master = master
	return l
}

// SetAddrs replaces the fake's addresses.
func (k *Kernel) SetAddrs(addrs ...fabric.Addr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.addrs = slices.Clone(addrs)
}

// SetVLANs replaces the fake's bridge VLAN entries.
func (k *Kernel) SetVLANs(vlans ...fabric.BridgeVLAN) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.vlans = slices.Clone(vlans)
}

// FailOn makes the change call with this record (see Calls) fail with err.
func (k *Kernel) FailOn(call string, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failOn[call] = err
}

// FailRead makes the next Read calls return errs, one per call (nil: no
// failure).
func (k *Kernel) FailRead(errs ...error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.readErrs = append(k.readErrs, errs...)
}

// FailLinks is FailRead, under its old name.
func (k *Kernel) FailLinks(errs ...error) { k.FailRead(errs...) }

// SetHook sets a function called, without the fake's lock held, at the start
// of every call, with "read" or the change call's record.
func (k *Kernel) SetHook(f func(call string)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.hook = f
}

// Calls returns the record of every change call, failed ones included:
//
//	add vrf vrf10 table 10 alias fabric-agent
//	add vxlan vxlan10 vni 10 local 10.0.0.1 dstport 4789 nolearning alias fabric-agent
//	set vrf10 up
//	set swp1 down
//	set swp1 mtu 9000
//	set swp1 alias "m1"
//	set vlan1000 address 02:00:00:00:00:01
//	set swp1 master vrf10
//	set swp1 nomaster
//	add bridge vlan 1-10 dev bridge self
//	delete bridge vlan 1000 dev swp2
//	add address 10.0.0.1/32 dev lo label lo:fab
//	delete address 10.0.0.1/32 dev lo
//	delete vrf10
func (k *Kernel) Calls() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.calls)
}

// ResetCalls forgets the recorded calls.
func (k *Kernel) ResetCalls() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = nil
}

// Reads returns the number of Read calls so far.
func (k *Kernel) Reads() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reads
}

// State returns the kernel state, sorted (links by name, addresses by link
// and prefix, VLANs by link and VID).
func (k *Kernel) State() fabric.Actual {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.state()
}

// Link returns one link.
func (k *Kernel) Link(name string) (fabric.Link, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if i := k.find(name); i >= 0 {
		return k.links[i], true
	}
	return fabric.Link{}, false
}

// Read implements fabric.Kernel.
func (k *Kernel) Read(ctx context.Context) (fabric.Actual, error) {
	k.runHook("read")
	if err := ctx.Err(); err != nil {
		return fabric.Actual{}, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.reads++
	if len(k.readErrs) > 0 {
		err := k.readErrs[0]
		k.readErrs = k.readErrs[1:]
		if err != nil {
			return fabric.Actual{}, err
		}
	}
	return k.state(), nil
}

// AddLink implements fabric.Kernel.
func (k *Kernel) AddLink(ctx context.Context, c fabric.Change, marker string) error {
	return k.change(ctx, c.String()+" alias "+marker, func() error {
		if k.find(c.Link) >= 0 {
			return ErrExists
		}
		l := fabric.Link{Name: c.Link, Kind: c.Kind, Alias: marker, OperState: "down", MTU: 1500, MAC: c.MAC}
		switch c.Kind {
		case fabric.KindVRF:
			if c.Table == 0 {
				return ErrInvalid
			}
			l.VRFTable, l.MTU, l.MAC = c.Table, 65575, ""
		case fabric.KindBridge:
			l.VLANFiltering = true
		case fabric.KindVXLAN:
			if c.VNI == 0 || !c.Local.IsValid() {
				return ErrInvalid
			}
			l.VNI, l.VXLANLocal, l.VXLANPort, l.MTU = c.VNI, c.Local.String(), fabric.VXLANPort, 1450
		case fabric.KindVLAN:
			p := k.find(c.Parent)
			if p < 0 {
				return ErrNoDevice
			}
			l.VLANID, l.Parent, l.MTU = c.VLAN, c.Parent, k.links[p].MTU
		default:
			return ErrInvalid
		}
		if c.MTU != 0 {
			l.MTU = c.MTU
		}
		if l.MAC == "" && c.Kind != fabric.KindVRF {
			l.MAC = fmt.Sprintf("02:fa:00:00:%02x:%02x", k.nextIndex>>8&0xff, k.nextIndex&0xff)
		}
		k.add(l)
		return nil
	})
}

// SetUp implements fabric.Kernel.
func (k *Kernel) SetUp(ctx context.Context, name string) error {
	return k.onLink(ctx, fmt.Sprintf("set %s up", name), name, func(l *fabric.Link) error {
		l.AdminUp, l.OperState = true, "up"
		return nil
	})
}

// SetDown implements fabric.Kernel.
func (k *Kernel) SetDown(ctx context.Context, name string) error {
	return k.onLink(ctx, fmt.Sprintf("set %s down", name), name, func(l *fabric.Link) error {
		l.AdminUp, l.OperState = false, "down"
		return nil
	})
}

// SetMTU implements fabric.Kernel.
func (k *Kernel) SetMTU(ctx context.Context, name string, mtu int) error {
	return k.onLink(ctx, fmt.Sprintf("set %s mtu %d", name, mtu), name, func(l *fabric.Link) error {
		if mtu < 68 {
			return ErrInvalid
		}
		l.MTU = mtu
		return nil
	})
}

// SetAlias implements fabric.Kernel.
func (k *Kernel) SetAlias(ctx context.Context, name, alias string) error {
	return k.onLink(ctx, fmt.Sprintf("set %s alias %s", name, strconv.Quote(alias)), name, func(l *fabric.Link) error {
		l.Alias = alias
		return nil
	})
}

// SetMAC implements fabric.Kernel.
func (k *Kernel) SetMAC(ctx context.Context, name, mac string) error {
	return k.onLink(ctx, fmt.Sprintf("set %s address %s", name, mac), name, func(l *fabric.Link) error {
		l.MAC = mac
		return nil
	})
}

// SetMaster implements fabric.Kernel. Like the kernel, a link leaving a
// bridge loses its bridge VLANs; a VLAN-filtering bridge created by the
// reconciler has no default PVID, so a new port gets none.
func (k *Kernel) SetMaster(ctx context.Context, link, master string) error {
	return k.change(ctx, fmt.Sprintf("set %s master %s", link, master), func() error {
		i, m := k.find(link), k.find(master)
		if i < 0 || m < 0 {
			return ErrNoDevice
		}
		if kind := k.links[m].Kind; kind != fabric.KindVRF && kind != fabric.KindBridge {
			return ErrInvalid
		}
		if k.links[i].Kind == fabric.KindVRF || k.links[i].Kind == fabric.KindBridge || i == m {
			return ErrInvalid
		}
		if k.links[i].Master != master {
			k.dropVLANs(link)
		}
		k.links[i].Master = master
		return nil
	})
}

// SetNoMaster implements fabric.Kernel.
func (k *Kernel) SetNoMaster(ctx context.Context, link string) error {
	return k.onLink(ctx, fmt.Sprintf("set %s nomaster", link), link, func(l *fabric.Link) error {
		l.Master = ""
		k.dropVLANs(link)
		return nil
	})
}

// DeleteLink implements fabric.Kernel. Like the kernel, it releases the
// links enslaved to the deleted one, deletes the 802.1Q devices on it and
// its addresses and VLANs.
func (k *Kernel) DeleteLink(ctx context.Context, name string) error {
	return k.change(ctx, fmt.Sprintf("delete %s", name), func() error {
		if k.find(name) < 0 {
			return ErrNoDevice
		}
		k.remove(name)
		return nil
	})
}

// DeleteLinks implements fabric.Kernel: one DeleteLink per name, each
// recorded on its own.
func (k *Kernel) DeleteLinks(ctx context.Context, names []string) []error {
	errs := make([]error, len(names))
	for i, n := range names {
		errs[i] = k.DeleteLink(ctx, n)
	}
	return errs
}

// AddBridgeVLANs implements fabric.Kernel.
func (k *Kernel) AddBridgeVLANs(ctx context.Context, v fabric.BridgeVLAN, end uint16, self bool) error {
	return k.change(ctx, "add bridge vlan "+vlanArgs(v, end, self), func() error {
		if err := k.checkVLANTarget(v.Link, self); err != nil {
			return err
		}
		end := max(end, v.VID)
		if v.VID < 1 || end > 4094 || (v.PVID && end != v.VID) {
			return ErrInvalid
		}
		k.vlans = slices.DeleteFunc(k.vlans, func(x fabric.BridgeVLAN) bool {
			return x.Link == v.Link && x.VID >= v.VID && x.VID <= end
		})
		if v.PVID {
			for j := range k.vlans {
				if k.vlans[j].Link == v.Link {
					k.vlans[j].PVID = false
				}
			}
		}
		for vid := v.VID; vid <= end; vid++ {
			k.vlans = append(k.vlans, fabric.BridgeVLAN{Link: v.Link, VID: vid, PVID: v.PVID, Untagged: v.Untagged})
		}
		return nil
	})
}

// DelBridgeVLANs implements fabric.Kernel.
func (k *Kernel) DelBridgeVLANs(ctx context.Context, v fabric.BridgeVLAN, end uint16, self bool) error {
	return k.change(ctx, "delete bridge vlan "+vlanArgs(fabric.BridgeVLAN{Link: v.Link, VID: v.VID}, end, self), func() error {
		if err := k.checkVLANTarget(v.Link, self); err != nil {
			return err
		}
		end := max(end, v.VID)
		k.vlans = slices.DeleteFunc(k.vlans, func(x fabric.BridgeVLAN) bool {
			return x.Link == v.Link && x.VID >= v.VID && x.VID <= end
		})
		return nil
	})
}

// AddAddr implements fabric.Kernel.
func (k *Kernel) AddAddr(ctx context.Context, a fabric.Addr) error {
	call := fmt.Sprintf("add address %s dev %s", a.Prefix, a.Link)
	if a.Label != "" {
		call += " label " + a.Label
	}
	return k.change(ctx, call, func() error {
		if k.find(a.Link) < 0 {
			return ErrNoDevice
		}
		if a.Label != "" && (!a.Prefix.Addr().Is4() || !strings.HasPrefix(a.Label, a.Link) || len(a.Label) > 15) {
			return ErrInvalid
		}
		if slices.ContainsFunc(k.addrs, func(x fabric.Addr) bool { return x.Link == a.Link && x.Prefix == a.Prefix }) {
			return ErrExists
		}
		if a.Prefix.Addr().Is4() && a.Label == "" {
			a.Label = a.Link
		}
		k.addrs = append(k.addrs, a)
		return nil
	})
}

// DelAddr implements fabric.Kernel.
func (k *Kernel) DelAddr(ctx context.Context, a fabric.Addr) error {
	return k.change(ctx, fmt.Sprintf("delete address %s dev %s", a.Prefix, a.Link), func() error {
		n := len(k.addrs)
		k.addrs = slices.DeleteFunc(k.addrs, func(x fabric.Addr) bool { return x.Link == a.Link && x.Prefix == a.Prefix })
		if len(k.addrs) == n {
			return ErrAddrNotAvail
		}
		return nil
	})
}

func vlanArgs(v fabric.BridgeVLAN, end uint16, self bool) string {
	s := strconv.Itoa(int(v.VID))
	if end > v.VID {
		s += "-" + strconv.Itoa(int(end))
	}
	s += " dev " + v.Link
	if self {
		s += " self"
	}
	if v.PVID {
		s += " pvid"
	}
	if v.Untagged {
		s += " untagged"
	}
	return s
}

func (k *Kernel) checkVLANTarget(link string, self bool) error {
	i := k.find(link)
	if i < 0 {
		return ErrNoDevice
	}
	if self {
		if k.links[i].Kind != fabric.KindBridge {
			return ErrInvalid
		}
		return nil
	}
	m := k.find(k.links[i].Master)
	if m < 0 || k.links[m].Kind != fabric.KindBridge {
		return ErrNotBridgePort
	}
	return nil
}

func (k *Kernel) onLink(ctx context.Context, call, name string, f func(*fabric.Link) error) error {
	return k.change(ctx, call, func() error {
		i := k.find(name)
		if i < 0 {
			return ErrNoDevice
		}
		return f(&k.links[i])
	})
}

func (k *Kernel) change(ctx context.Context, call string, do func() error) error {
	k.runHook(call)
	if err := ctx.Err(); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = append(k.calls, call)
	if err := k.failOn[call]; err != nil {
		return err
	}
	return do()
}

func (k *Kernel) runHook(call string) {
	k.mu.Lock()
	hook := k.hook
	k.mu.Unlock()
	if hook != nil {
		hook(call)
	}
}

func (k *Kernel) add(l fabric.Link) {
	if l.Index == 0 {
		l.Index = k.nextIndex
	}
	k.nextIndex = max(k.nextIndex, l.Index) + 1
	k.links = append(k.links, l)
}

// remove deletes a link the way the kernel does.
func (k *Kernel) remove(name string) {
	var children []string
	for _, l := range k.links {
		if l.Kind == fabric.KindVLAN && l.Parent == name {
			children = append(children, l.Name)
		}
	}
	for _, c := range children {
		k.remove(c)
	}
	k.links = slices.DeleteFunc(k.links, func(l fabric.Link) bool { return l.Name == name })
	for j := range k.links {
		if k.links[j].Master == name {
			k.links[j].Master = ""
			k.dropVLANs(k.links[j].Name)
		}
	}
	k.addrs = slices.DeleteFunc(k.addrs, func(a fabric.Addr) bool { return a.Link == name })
	k.dropVLANs(name)
}

func (k *Kernel) dropVLANs(link string) {
	k.vlans = slices.DeleteFunc(k.vlans, func(v fabric.BridgeVLAN) bool { return v.Link == link })
}

func (k *Kernel) find(name string) int {
	return slices.IndexFunc(k.links, func(l fabric.Link) bool { return l.Name == name })
}

func (k *Kernel) state() fabric.Actual {
	a := fabric.Actual{Links: slices.Clone(k.links), Addrs: slices.Clone(k.addrs), VLANs: slices.Clone(k.vlans)}
	slices.SortFunc(a.Links, func(x, y fabric.Link) int { return strings.Compare(x.Name, y.Name) })
	slices.SortFunc(a.Addrs, func(x, y fabric.Addr) int {
		return cmp.Or(strings.Compare(x.Link, y.Link), x.Prefix.Addr().Compare(y.Prefix.Addr()), cmp.Compare(x.Prefix.Bits(), y.Prefix.Bits()))
	})
	slices.SortFunc(a.VLANs, func(x, y fabric.BridgeVLAN) int {
		return cmp.Or(strings.Compare(x.Link, y.Link), cmp.Compare(x.VID, y.VID))
	})
	return a
}

// CmpOpts lets go-cmp compare fabric types (Desired, Actual), which hold
// netip values: cmp.Diff(want, got, fabrictest.CmpOpts).
var CmpOpts = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})
