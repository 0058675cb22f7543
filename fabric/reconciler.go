package fabric

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
)

// Reconciler makes the kernel match a [Desired] state. It is safe to call
// Apply again with the same desired state: a kernel that already matches
// sees no change. Calls must not overlap.
type Reconciler struct {
	k   Kernel
	log *slog.Logger
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
	r := &Reconciler{k: k, log: slog.Default()}
	for _, o := range opts {
		o(r)
	}
	return r
}

// StepError is the failure of one step of Apply.
type StepError struct {
	// Step names the step: a change's String ("set swp1 master vrf10010"),
	// or "read links", "validate", "apply" (interrupted), "re-read links".
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
	// depend on failed (enslaving into a VRF whose creation failed, deleting
	// a VRF whose port could not be released) or ctx was done.
	Skipped []Change
	// Errors has one entry per failed step.
	Errors []StepError
	// State is the kernel state reached, read back after applying; if that
	// read fails, the state read before applying with only the accepted
	// changes applied to it. It never claims more than the kernel has.
	State Actual
}

// Read returns the current kernel state.
func (r *Reconciler) Read(ctx context.Context) (Actual, error) {
	links, err := r.k.Links(ctx)
	if err != nil {
		return Actual{}, fmt.Errorf("listing links: %w", err)
	}
	return Actual{Links: links}, nil
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
		fail("read links", err)
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

	// blocked: VRFs whose (re-)creation failed, so their "set up" and the
	// enslaving of ports into them are skipped. kept: VRFs with a port that
	// could not be released, so they are not deleted.
	blocked := map[string]bool{}
	kept := map[string]bool{}
	for i, c := range res.Planned {
		if err := ctx.Err(); err != nil {
			fail("apply", fmt.Errorf("stopped before %q: %w", c.String(), err))
			res.Skipped = append(res.Skipped, res.Planned[i:]...)
			break
		}
		skip := false
		switch c.Op {
		case OpAddVRF, OpSetUp:
			skip = blocked[c.Link]
		case OpSetMaster:
			skip = blocked[c.Master]
		case OpDeleteVRF:
			skip = kept[c.Link]
		}
		if skip {
			r.log.Warn("skipping change: a step it depends on failed", "change", c.String())
			res.Skipped = append(res.Skipped, c)
			if c.Op == OpDeleteVRF {
				blocked[c.Link] = true
			}
			continue
		}
		if err := r.apply(ctx, c); err != nil {
			r.log.Error("change failed", append(logAttrs(c), "err", err)...)
			fail(c.String(), fmt.Errorf("%s: %w", c.action(), err))
			switch c.Op {
			case OpAddVRF, OpDeleteVRF:
				// A VRF that could not be (re-)created, or an old one
				// that could not be deleted before its re-creation,
				// must not receive ports.
				blocked[c.Link] = true
			case OpSetNoMaster:
				kept[c.Master] = true
			}
			continue
		}
		r.log.Info("changed", logAttrs(c)...)
		res.Applied = append(res.Applied, c)
	}

	if state, err := r.Read(ctx); err == nil {
		res.State = state
	} else {
		fail("re-read links", err)
		res.State = simulate(actual, res.Applied)
	}
	return res, res.err()
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
	case OpAddVRF:
		return r.k.AddVRF(ctx, c.Link, c.Table, Marker)
	case OpSetUp:
		return r.k.SetUp(ctx, c.Link)
	case OpSetMaster:
		return r.k.SetMaster(ctx, c.Link, c.Master)
	case OpSetNoMaster:
		return r.k.SetNoMaster(ctx, c.Link)
	case OpDeleteVRF:
		return r.k.DeleteLink(ctx, c.Link)
	default:
		return fmt.Errorf("unknown change op %d", int(c.Op))
	}
}

func logAttrs(c Change) []any {
	attrs := []any{"change", c.String()}
	switch c.Op {
	case OpAddVRF, OpDeleteVRF, OpSetUp:
		attrs = append(attrs, "vrf", c.Link)
	case OpSetMaster, OpSetNoMaster:
		attrs = append(attrs, "port", c.Link, "vrf", c.Master)
	}
	return attrs
}

// simulate returns actual with the accepted changes applied, as the kernel
// would have them.
func simulate(actual Actual, applied []Change) Actual {
	links := slices.Clone(actual.Links)
	find := func(name string) int {
		return slices.IndexFunc(links, func(l Link) bool { return l.Name == name })
	}
	for _, c := range applied {
		i := find(c.Link)
		switch c.Op {
		case OpAddVRF:
			if i < 0 {
				links = append(links, Link{Name: c.Link, Kind: KindVRF, Alias: Marker, VRFTable: c.Table, OperState: "down"})
			}
		case OpSetUp:
			if i >= 0 {
				links[i].AdminUp = true
			}
		case OpSetMaster:
			if i >= 0 {
				links[i].Master = c.Master
			}
		case OpSetNoMaster:
			if i >= 0 {
				links[i].Master = ""
			}
		case OpDeleteVRF:
			if i >= 0 {
				links = slices.Delete(links, i, i+1)
			}
			for j := range links {
				if links[j].Master == c.Link {
					links[j].Master = ""
				}
			}
		}
	}
	return Actual{Links: links}
}
