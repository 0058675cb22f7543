package fabric

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
)

// Reconciler makes the kernel match a [Desired] state. It is safe to call
// Apply again with the same desired state: a kernel that already matches
// sees no change. Calls must not overlap.
type Reconciler struct {
	k   Kernel
	log *slog.Logger

	mu    sync.Mutex
	addrs map[Addr]bool // unlabelled addresses added to foreign links
}

// Option configures a Reconciler.
type Option func(*Reconciler)

// WithLogger sets the logger (default: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(r *Reconciler) {
		if l != nil {
			r.log = l
		}
	}
}

// NewReconciler returns a reconciler over the kernel k.
func NewReconciler(k Kernel, opts ...Option) *Reconciler {
	r := &Reconciler{k: k, log: slog.Default(), addrs: map[Addr]bool{}}
	for _, o := range opts {
		o(r)
	}
	return r
}

// StepError is the failure of one step of Apply.
type StepError struct {
	// Step names the step: a change's String ("set swp1 master vrf10010"),
	// or "read", "validate", "apply" (interrupted), "re-read".
	Step string
	// Err says what went wrong, naming the step ("enslaving swp1 to
	// vrf10010: no such device").
	Err error
}

func (e *StepError) Error() string { return e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// Result is what Apply did.
type Result struct {
	// Planned is the diff computed before applying.
	Planned []Change
	// Applied lists the changes the kernel accepted, in order.
	Applied []Change
	// Skipped lists the planned changes not attempted, because a change they
	// depend on failed (configuring or enslaving into a link whose creation
	// failed, deleting a master whose slave could not be released) or ctx
	// was done.
	Skipped []Change
	// Errors has one entry per failed step.
	Errors []StepError
	// State is the kernel state reached, read back after applying; if that
	// read fails, the state read before applying with only the accepted
	// changes applied to it. It never claims more than the kernel has.
	State Actual
}

// Read returns the current kernel state, with the addresses this reconciler
// added to foreign links without a label in Actual.OwnedAddrs.
func (r *Reconciler) Read(ctx context.Context) (Actual, error) {
	a, err := r.k.Read(ctx)
	if err != nil {
		return Actual{}, fmt.Errorf("reading the kernel: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ad := range a.Addrs {
		if r.addrs[Addr{Link: ad.Link, Prefix: ad.Prefix}] {
			a.OwnedAddrs = append(a.OwnedAddrs, Addr{Link: ad.Link, Prefix: ad.Prefix})
		}
	}
	return a, nil
}

// Plan reads the kernel, validates desired against it and returns the changes
// Apply would make. It changes nothing.
func (r *Reconciler) Plan(ctx context.Context, desired Desired) ([]Change, error) {
	actual, err := r.Read(ctx)
	if err != nil {
		return nil, err
	}
	if err := Validate(desired, actual); err != nil {
		return nil, err
	}
	return Diff(desired, actual), nil
}

// Apply makes the kernel match desired: read the kernel, validate (on a
// problem nothing is touched), diff, apply the changes in order. When a step
// fails, Apply goes on with the steps that do not depend on it. The returned
// error joins every StepError in Result.Errors (nil when there is none); a
// *ValidationError can be found with errors.As.
func (r *Reconciler) Apply(ctx context.Context, desired Desired) (Result, error) {
	var res Result
	fail := func(step string, err error) {
		res.Errors = append(res.Errors, StepError{Step: step, Err: err})
	}

	actual, err := r.Read(ctx)
	if err != nil {
		fail("read", err)
		return res, res.err()
	}
	res.State = actual
	if err := Validate(desired, actual); err != nil {
		fail("validate", err)
		return res, res.err()
	}
	res.Planned = Diff(desired, actual)
	if len(res.Planned) == 0 {
		return res, nil
	}

	// blocked: links whose (re-)creation failed (or whose parent's did), so
	// the changes to them and the enslaving into them are skipped. kept:
	// masters with a slave that could not be released, so they are not
	// deleted.
	blocked := map[string]bool{}
	kept := map[string]bool{}
	detached := map[string]bool{} // links whose enslaving failed or was skipped
	for i := 0; i < len(res.Planned); i++ {
		c := res.Planned[i]
		if err := ctx.Err(); err != nil {
			fail("apply", fmt.Errorf("stopped before %q: %w", c.String(), err))
			res.Skipped = append(res.Skipped, res.Planned[i:]...)
			break
		}
		var skip bool
		switch c.Op {
		case OpDeleteLink:
			skip = kept[c.Link]
		case OpSetNoMaster:
		case OpAddLink:
			skip = blocked[c.Link] || (c.Parent != "" && blocked[c.Parent])
		case OpAddBridgeVLAN, OpDelBridgeVLAN:
			skip = blocked[c.Link] || (!c.Self && detached[c.Link])
		default:
			skip = blocked[c.Link] || (c.Master != "" && blocked[c.Master])
		}
		if skip {
			r.log.Warn("skipping change: a step it depends on failed", "change", c.String())
			res.Skipped = append(res.Skipped, c)
			if c.Op == OpDeleteLink || c.Op == OpAddLink {
				blocked[c.Link] = true
			}
			if c.Op == OpSetMaster {
				detached[c.Link] = true
			}
			continue
		}
		if c.Op == OpDeleteLink {
			// A run of deletes goes to the kernel as one batch: deleting
			// links one by one costs an RCU grace period each.
			run := []Change{c}
			for j := i + 1; j < len(res.Planned) && res.Planned[j].Op == OpDeleteLink && !kept[res.Planned[j].Link]; j++ {
				run = append(run, res.Planned[j])
			}
			if len(run) > 1 {
				names := make([]string, len(run))
				for n, dc := range run {
					names[n] = dc.Link
				}
				errs := r.k.DeleteLinks(ctx, names)
				for n, dc := range run {
					var err error
					if n < len(errs) {
						err = errs[n]
					}
					if err != nil {
						r.log.Error("change failed", append(logAttrs(dc), "err", err)...)
						fail(dc.String(), fmt.Errorf("%s: %w", dc.action(), err))
						blocked[dc.Link] = true
						continue
					}
					r.log.Info("changed", logAttrs(dc)...)
					res.Applied = append(res.Applied, dc)
				}
				i += len(run) - 1
				continue
			}
		}
		if err := r.apply(ctx, c); err != nil {
			r.log.Error("change failed", append(logAttrs(c), "err", err)...)
			fail(c.String(), fmt.Errorf("%s: %w", c.action(), err))
			switch c.Op {
			case OpAddLink, OpDeleteLink:
				// A link that could not be (re-)created, or an old one
				// that could not be deleted before its re-creation,
				// must not be configured or receive slaves.
				blocked[c.Link] = true
			case OpSetNoMaster:
				kept[c.Master] = true
			case OpSetMaster:
				detached[c.Link] = true
			}
			continue
		}
		r.log.Info("changed", logAttrs(c)...)
		res.Applied = append(res.Applied, c)
		r.remember(c, actual)
	}

	if state, err := r.Read(ctx); err == nil {
		res.State = state
	} else {
		fail("re-read", err)
		res.State = simulate(actual, res.Applied)
	}
	return res, res.err()
}

// remember keeps track of the unlabelled addresses the reconciler adds to
// foreign links, so it can remove them later.
func (r *Reconciler) remember(c Change, actual Actual) {
	if c.Op != OpAddAddr && c.Op != OpDelAddr {
		return
	}
	key := Addr{Link: c.Link, Prefix: c.Prefix}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.Op == OpDelAddr {
		delete(r.addrs, key)
		return
	}
	if l, ok := actual.Link(c.Link); c.Label == "" && ok && !l.Owned() {
		r.addrs[key] = true
	}
}

func (res Result) err() error {
	errs := make([]error, len(res.Errors))
	for i := range res.Errors {
		errs[i] = &res.Errors[i]
	}
	return errors.Join(errs...)
}

func (r *Reconciler) apply(ctx context.Context, c Change) error {
	switch c.Op {
	case OpAddLink:
		return r.k.AddLink(ctx, c, Marker)
	case OpSetUp:
		return r.k.SetUp(ctx, c.Link)
	case OpSetDown:
		return r.k.SetDown(ctx, c.Link)
	case OpSetMTU:
		return r.k.SetMTU(ctx, c.Link, c.MTU)
	case OpSetAlias:
		return r.k.SetAlias(ctx, c.Link, c.Alias)
	case OpSetMAC:
		return r.k.SetMAC(ctx, c.Link, c.MAC)
	case OpSetMaster:
		return r.k.SetMaster(ctx, c.Link, c.Master)
	case OpSetNoMaster:
		return r.k.SetNoMaster(ctx, c.Link)
	case OpAddBridgeVLAN:
		return r.k.AddBridgeVLANs(ctx, BridgeVLAN{Link: c.Link, VID: c.VLAN, PVID: c.PVID, Untagged: c.Untagged}, c.VLANEnd, c.Self)
	case OpDelBridgeVLAN:
		return r.k.DelBridgeVLANs(ctx, BridgeVLAN{Link: c.Link, VID: c.VLAN}, c.VLANEnd, c.Self)
	case OpAddAddr:
		return r.k.AddAddr(ctx, Addr{Link: c.Link, Prefix: c.Prefix, Label: c.Label})
	case OpDelAddr:
		return r.k.DelAddr(ctx, Addr{Link: c.Link, Prefix: c.Prefix})
	case OpDeleteLink:
		return r.k.DeleteLink(ctx, c.Link)
	default:
		return fmt.Errorf("unknown change op %d", int(c.Op))
	}
}

func logAttrs(c Change) []any {
	attrs := []any{"change", c.String(), "device", c.Link}
	switch {
	case c.Kind == KindVRF:
		attrs = append(attrs, "vrf", c.Link)
	case c.VNI != 0:
		attrs = append(attrs, "vni", c.VNI)
	case c.Op == OpSetMaster || c.Op == OpSetNoMaster:
		attrs = append(attrs, "port", c.Link, "master", c.Master)
	}
	return attrs
}

// simulate returns actual with the accepted changes applied, as the kernel
// would have them.
func simulate(actual Actual, applied []Change) Actual {
	a := Actual{
		Links:      slices.Clone(actual.Links),
		Addrs:      slices.Clone(actual.Addrs),
		VLANs:      slices.Clone(actual.VLANs),
		OwnedAddrs: slices.Clone(actual.OwnedAddrs),
	}
	find := func(name string) int {
		return slices.IndexFunc(a.Links, func(l Link) bool { return l.Name == name })
	}
	dropVLANs := func(link string, from, to uint16) {
		a.VLANs = slices.DeleteFunc(a.VLANs, func(v BridgeVLAN) bool { return v.Link == link && v.VID >= from && v.VID <= to })
	}
	for _, c := range applied {
		i := find(c.Link)
		end := max(c.VLAN, c.VLANEnd)
		switch c.Op {
		case OpAddLink:
			if i < 0 {
				a.Links = append(a.Links, Link{
					Name: c.Link, Kind: c.Kind, Alias: Marker, VRFTable: c.Table, OperState: "down",
					VNI: c.VNI, VXLANLocal: addrString(c.Local), VXLANPort: vxlanPortOf(c), VLANID: c.VLAN, Parent: c.Parent,
					MAC: c.MAC, MTU: c.MTU, VLANFiltering: c.Kind == KindBridge,
				})
			}
		case OpSetUp, OpSetDown:
			if i >= 0 {
				a.Links[i].AdminUp = c.Op == OpSetUp
			}
		case OpSetMTU:
			if i >= 0 {
				a.Links[i].MTU = c.MTU
			}
		case OpSetAlias:
			if i >= 0 {
				a.Links[i].Alias = c.Alias
			}
		case OpSetMAC:
			if i >= 0 {
				a.Links[i].MAC = c.MAC
			}
		case OpSetMaster:
			if i >= 0 {
				if a.Links[i].Master != c.Master {
					dropVLANs(c.Link, 0, 4095)
				}
				a.Links[i].Master = c.Master
			}
		case OpSetNoMaster:
			if i >= 0 {
				a.Links[i].Master = ""
				dropVLANs(c.Link, 0, 4095)
			}
		case OpAddBridgeVLAN:
			dropVLANs(c.Link, c.VLAN, end)
			if c.PVID {
				for j := range a.VLANs {
					if a.VLANs[j].Link == c.Link {
						a.VLANs[j].PVID = false
					}
				}
			}
			for vid := c.VLAN; vid <= end; vid++ {
				a.VLANs = append(a.VLANs, BridgeVLAN{Link: c.Link, VID: vid, PVID: c.PVID, Untagged: c.Untagged})
			}
		case OpDelBridgeVLAN:
			dropVLANs(c.Link, c.VLAN, end)
		case OpAddAddr:
			a.Addrs = append(a.Addrs, Addr{Link: c.Link, Prefix: c.Prefix, Label: c.Label})
		case OpDelAddr:
			a.Addrs = slices.DeleteFunc(a.Addrs, func(x Addr) bool { return x.Link == c.Link && x.Prefix == c.Prefix })
		case OpDeleteLink:
			if i >= 0 {
				a.Links = slices.Delete(a.Links, i, i+1)
			}
			a.Links = slices.DeleteFunc(a.Links, func(l Link) bool { return l.Kind == KindVLAN && l.Parent == c.Link })
			for j := range a.Links {
				if a.Links[j].Master == c.Link {
					a.Links[j].Master = ""
				}
			}
			a.Addrs = slices.DeleteFunc(a.Addrs, func(x Addr) bool { return x.Link == c.Link })
			dropVLANs(c.Link, 0, 4095)
		}
	}
	return a
}

func vxlanPortOf(c Change) int {
	if c.Kind == KindVXLAN {
		return VXLANPort
	}
	return 0
}
