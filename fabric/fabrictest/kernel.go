// Package fabrictest provides a fake [fabric.Kernel] for unit tests: an
// in-memory set of links with the kernel's semantics for the operations the
// reconciler uses, a record of every change call, and error injection. It
// touches no real kernel.
package fabrictest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/metalfabric/fabric/fabric"
)

// Errors the fake returns, like the kernel's EEXIST, ENODEV and EINVAL.
var (
	ErrExists   = errors.New("file exists")
	ErrNoDevice = errors.New("no such device")
	ErrInvalid  = errors.New("invalid argument")
)

// Kernel is a fake fabric.Kernel. The zero value is not usable; use New.
type Kernel struct {
	mu        sync.Mutex
	links     []fabric.Link
	nextIndex int
	calls     []string
	failOn    map[string]error
	linksErrs []error
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

// In returns l enslaved to master.
func In(l fabric.Link, master string) fabric.Link {
	l.Master = master
	return l
}

// FailOn makes the change call with this record (see Calls) fail with err.
func (k *Kernel) FailOn(call string, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failOn[call] = err
}

// FailLinks makes the next Links calls return errs, one per call.
func (k *Kernel) FailLinks(errs ...error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.linksErrs = append(k.linksErrs, errs...)
}

// SetHook sets a function called, without the fake's lock held, at the start
// of every call, with "links" or the change call's record.
func (k *Kernel) SetHook(f func(call string)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.hook = f
}

// Calls returns the record of every change call, failed ones included:
//
//	add vrf vrf10 table 10 alias fabric-agent
//	set vrf10 up
//	set swp1 master vrf10
//	set swp1 nomaster
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

// State returns the links, sorted by name.
func (k *Kernel) State() fabric.Actual {
	k.mu.Lock()
	defer k.mu.Unlock()
	return fabric.Actual{Links: k.sorted()}
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

// Links implements fabric.Kernel.
func (k *Kernel) Links(ctx context.Context) ([]fabric.Link, error) {
	k.runHook("links")
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.linksErrs) > 0 {
		err := k.linksErrs[0]
		k.linksErrs = k.linksErrs[1:]
		if err != nil {
			return nil, err
		}
	}
	return k.sorted(), nil
}

// AddVRF implements fabric.Kernel.
func (k *Kernel) AddVRF(ctx context.Context, name string, table uint32, marker string) error {
	return k.change(ctx, fmt.Sprintf("add vrf %s table %d alias %s", name, table, marker), func() error {
		if k.find(name) >= 0 {
			return ErrExists
		}
		if table == 0 {
			return ErrInvalid
		}
		k.add(fabric.Link{Name: name, Kind: fabric.KindVRF, VRFTable: table, Alias: marker, OperState: "down", MTU: 65575})
		return nil
	})
}

// SetUp implements fabric.Kernel.
func (k *Kernel) SetUp(ctx context.Context, name string) error {
	return k.change(ctx, fmt.Sprintf("set %s up", name), func() error {
		i := k.find(name)
		if i < 0 {
			return ErrNoDevice
		}
		k.links[i].AdminUp = true
		k.links[i].OperState = "up"
		return nil
	})
}

// SetMaster implements fabric.Kernel.
func (k *Kernel) SetMaster(ctx context.Context, link, master string) error {
	return k.change(ctx, fmt.Sprintf("set %s master %s", link, master), func() error {
		i, m := k.find(link), k.find(master)
		if i < 0 || m < 0 {
			return ErrNoDevice
		}
		if kind := k.links[m].Kind; kind != fabric.KindVRF && kind != fabric.KindBridge {
			return ErrInvalid
		}
		if k.links[i].Kind == fabric.KindVRF || i == m {
			return ErrInvalid
		}
		k.links[i].Master = master
		return nil
	})
}

// SetNoMaster implements fabric.Kernel.
func (k *Kernel) SetNoMaster(ctx context.Context, link string) error {
	return k.change(ctx, fmt.Sprintf("set %s nomaster", link), func() error {
		i := k.find(link)
		if i < 0 {
			return ErrNoDevice
		}
		k.links[i].Master = ""
		return nil
	})
}

// DeleteLink implements fabric.Kernel. Like the kernel, it releases the
// links enslaved to the deleted one.
func (k *Kernel) DeleteLink(ctx context.Context, name string) error {
	return k.change(ctx, fmt.Sprintf("delete %s", name), func() error {
		i := k.find(name)
		if i < 0 {
			return ErrNoDevice
		}
		k.links = slices.Delete(k.links, i, i+1)
		for j := range k.links {
			if k.links[j].Master == name {
				k.links[j].Master = ""
			}
		}
		return nil
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

func (k *Kernel) find(name string) int {
	return slices.IndexFunc(k.links, func(l fabric.Link) bool { return l.Name == name })
}

func (k *Kernel) sorted() []fabric.Link {
	links := slices.Clone(k.links)
	slices.SortFunc(links, func(x, y fabric.Link) int { return strings.Compare(x.Name, y.Name) })
	return links
}
