package nft

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// WithConnOptions passes extra google/nftables connection options (e.g.
// WithTestDial) to the firewall's netlink connection.
func WithConnOptions(opts ...nftables.ConnOption) Option {
	return func(o *options) {
		for _, c := range opts {
			o.extra = append(o.extra, c)
		}
	}
}

// sockBuf is the netlink socket buffer size the firewall forces (as
// root): a whole ruleset goes to the kernel in one message batch, in one
// sendmsg (50k rules' worth of policy is about 5 MB), and every message
// in it is acknowledged.
const sockBuf = 64 << 20

// maxElemsPerMsg keeps a set element message below the 64 KiB netlink
// attribute limit.
const maxElemsPerMsg = 1000

// Firewall programs the policy into its nftables table.
type Firewall struct {
	mu    sync.Mutex
	opts  options
	copts []nftables.ConnOption
	table *nftables.Table
	// last is what the last successful Apply put into the kernel, and
	// lastPolicy the policy it came from; nil when unknown (the next
	// Apply replaces the table).
	last       *ruleset
	lastPolicy *Policy
	sets       map[string]*setSpec // last's sets by name
}

// remember records what the kernel holds after a successful apply.
func (f *Firewall) remember(p *Policy, rs *ruleset) {
	f.last = rs
	f.lastPolicy = p
	if rs == nil {
		f.sets = nil
		return
	}
	f.sets = make(map[string]*setSpec, len(rs.sets))
	for _, s := range rs.sets {
		f.sets[s.name] = s
	}
}

// New returns a firewall owning the inet table named by WithTable (default
// "fabric"), in the namespace named by WithNetNSFd (default: the caller's).
// It does not touch the kernel.
func New(opts ...Option) (*Firewall, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := ValidateName(o.table); err != nil {
		return nil, fmt.Errorf("nft: table: %w", err)
	}
	copts := []nftables.ConnOption{nftables.WithSockOptions(forceBuffers)}
	if o.netnsFd >= 0 {
		copts = append(copts, nftables.WithNetNSFd(o.netnsFd))
	}
	for _, e := range o.extra {
		c, ok := e.(nftables.ConnOption)
		if !ok {
			return nil, fmt.Errorf("nft: unexpected option %T", e)
		}
		copts = append(copts, c)
	}
	return &Firewall{
		opts:  o,
		copts: copts,
		table: &nftables.Table{Name: o.table, Family: nftables.TableFamilyINet},
	}, nil
}

// newConn returns a connection for one batch or query. A fresh one per
// operation means a batch abandoned on an error is never sent later.
func (f *Firewall) newConn() (*nftables.Conn, error) {
	c, err := nftables.New(f.copts...)
	if err != nil {
		return nil, fmt.Errorf("nft: opening netlink: %w", err)
	}
	return c, nil
}

// forceBuffers sizes the netlink socket's buffers: the send buffer holds
// the whole batch (one sendmsg), the receive buffer the kernel's
// acknowledgement of every message in it (google/nftables asks for one per
// message; each costs about a kilobyte of buffer).
func forceBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, o := range []struct {
			force, plain int
			name         string
		}{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, "send"}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, "receive"}} {
			e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.force, sockBuf)
			if errors.Is(e, unix.EPERM) {
				// Without CAP_NET_ADMIN the plain option (capped by
				// net.core.[wr]mem_max) is the best we can do.
				e = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.plain, sockBuf)
			}
			if e != nil {
				serr = fmt.Errorf("setting the netlink %s buffer: %w", o.name, e)
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// Table returns the name of the table the firewall owns.
func (f *Firewall) Table() string { return f.opts.table }

// Reset forgets what the last Apply programmed, so the next Apply replaces
// the whole table (e.g. after something else changed it).
func (f *Firewall) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.remember(nil, nil)
}

// Apply makes the table hold exactly the policy. The policy is validated
// first (a *ValidationError, nothing touched). When only set contents
// differ from what the last Apply programmed, it adds and deletes those
// set elements in one batch; otherwise it replaces the table in one batch
// (create if missing, delete, recreate with every chain, set, element,
// rule and counter), keeping the values of counters whose names survive.
// Either batch is one kernel transaction: on any error the kernel keeps the
// previous ruleset in full. Applying the same policy again sends nothing.
func (f *Firewall) Apply(ctx context.Context, p Policy) (ApplyResult, error) {
	if err := Validate(p); err != nil {
		return ApplyResult{}, fmt.Errorf("nft: validating policy: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return ApplyResult{}, err
	}
	if f.lastPolicy != nil {
		// Only rules' CIDRs or ports changed: touch their sets only.
		if changes, ok := rulesDelta(*f.lastPolicy, p, f.sets); ok {
			res, err := f.applyChanges(changes)
			if err == nil {
				for _, c := range changes {
					c.spec.items = c.items
				}
				cp := clonePolicy(p)
				f.lastPolicy = &cp
				return res, nil
			}
			f.opts.log.Warn("nft: incremental apply failed, replacing the table", "table", f.opts.table, "err", err)
			f.remember(nil, nil)
		}
	}
	rs := translate(p)
	cp := clonePolicy(p)
	if f.last != nil && sameShape(f.last, rs) {
		var changes []setChange
		for i, s := range rs.sets {
			changes = appendChange(changes, f.last.sets[i], s.items)
		}
		res, err := f.applyChanges(changes)
		if err == nil {
			f.remember(&cp, rs)
			return res, nil
		}
		// The table may have changed behind our back: replace it.
		f.opts.log.Warn("nft: incremental apply failed, replacing the table", "table", f.opts.table, "err", err)
		f.remember(nil, nil)
	}
	res, err := f.applyFull(rs)
	if err != nil {
		return ApplyResult{}, err
	}
	f.remember(&cp, rs)
	return res, nil
}

// applyFull replaces the table in one batch.
func (f *Firewall) applyFull(rs *ruleset) (ApplyResult, error) {
	old, err := f.readCounters()
	if err != nil {
		return ApplyResult{}, fmt.Errorf("nft: reading counters before replacing table %s: %w", f.opts.table, err)
	}
	keep := make(map[string]*nftables.CounterObj, len(old))
	for _, c := range old {
		keep[c.Name] = c
	}
	c, err := f.newConn()
	if err != nil {
		return ApplyResult{}, err
	}
	t := f.table
	c.AddTable(t) // so that the delete cannot fail on a missing table
	c.DelTable(t)
	c.AddTable(t)
	for _, name := range rs.counters {
		obj := &nftables.CounterObj{Table: t, Name: name}
		if o, ok := keep[name]; ok {
			obj.Packets, obj.Bytes = o.Packets, o.Bytes
		}
		c.AddObj(obj)
	}
	chains := make(map[string]*nftables.Chain, len(rs.chains))
	for _, cs := range rs.chains {
		ch := &nftables.Chain{Name: cs.name, Table: t, Hooknum: cs.hook, Priority: cs.priority, Type: cs.typ, Policy: cs.policy}
		chains[cs.name] = c.AddChain(ch)
	}
	res := ApplyResult{Full: true, Sets: len(rs.sets), Rules: len(rs.rules)}
	for _, s := range rs.sets {
		ns := s.nftSet(t)
		if err := c.AddSet(ns, nil); err != nil {
			return ApplyResult{}, fmt.Errorf("nft: adding set %s: %w", s.name, err)
		}
		elems := s.elements(s.items)
		res.Elements += len(elems)
		if err := addElements(c, ns, elems); err != nil {
			return ApplyResult{}, fmt.Errorf("nft: adding elements of set %s: %w", s.name, err)
		}
	}
	for _, r := range rs.rules {
		nr := &nftables.Rule{Table: t, Chain: chains[r.chain], Exprs: r.exprs}
		if r.comment != "" {
			nr.UserData = userdata.AppendString(nil, userdata.TypeComment, r.comment)
		}
		c.AddRule(nr)
	}
	if err := c.Flush(); err != nil {
		return ApplyResult{}, fmt.Errorf("nft: replacing table inet %s (%d chains, %d sets, %d rules): %w",
			f.opts.table, len(rs.chains), len(rs.sets), len(rs.rules), err)
	}
	f.opts.log.Info("nft: table replaced", "table", f.opts.table, "chains", len(rs.chains), "sets", len(rs.sets),
		"rules", len(rs.rules), "elements", res.Elements)
	return res, nil
}

// applyChanges changes only set elements, in one batch: first every
// deletion, then every addition (so a replaced interval never overlaps
// its successor). No changes send nothing.
func (f *Firewall) applyChanges(changes []setChange) (ApplyResult, error) {
	res := ApplyResult{Sets: len(f.last.sets), Rules: len(f.last.rules)}
	for _, s := range f.last.sets {
		res.Elements += elementCount(s, s.items)
	}
	if len(changes) == 0 {
		return res, nil
	}
	c, err := f.newConn()
	if err != nil {
		return ApplyResult{}, err
	}
	nsets := make([]*nftables.Set, len(changes))
	for i, ch := range changes {
		nsets[i] = ch.spec.nftSet(f.table)
		del := ch.spec.elements(ch.del)
		res.Deleted += len(del)
		res.Elements -= len(del)
		if err := deleteElements(c, nsets[i], del); err != nil {
			return ApplyResult{}, fmt.Errorf("nft: deleting elements of set %s: %w", ch.spec.name, err)
		}
	}
	for i, ch := range changes {
		add := ch.spec.elements(ch.add)
		res.Added += len(add)
		res.Elements += len(add)
		if err := addElements(c, nsets[i], add); err != nil {
			return ApplyResult{}, fmt.Errorf("nft: adding elements to set %s: %w", ch.spec.name, err)
		}
	}
	if err := c.Flush(); err != nil {
		return ApplyResult{}, fmt.Errorf("nft: changing %d set(s) of table inet %s: %w", len(changes), f.opts.table, err)
	}
	f.opts.log.Info("nft: set elements changed", "table", f.opts.table, "sets", len(changes), "added", res.Added, "deleted", res.Deleted)
	return res, nil
}

// elementCount is the number of kernel elements of items in s.
func elementCount(s *setSpec, items []item) int {
	n := len(items)
	if s.interval {
		for _, it := range items {
			if it.end != nil {
				n++
			}
		}
	}
	return n
}

func addElements(c *nftables.Conn, s *nftables.Set, elems []nftables.SetElement) error {
	for chunk := range slices.Chunk(elems, maxElemsPerMsg) {
		if err := c.SetAddElements(s, chunk); err != nil {
			return err
		}
	}
	return nil
}

func deleteElements(c *nftables.Conn, s *nftables.Set, elems []nftables.SetElement) error {
	for chunk := range slices.Chunk(elems, maxElemsPerMsg) {
		if err := c.SetDeleteElements(s, chunk); err != nil {
			return err
		}
	}
	return nil
}

// diffItems returns the items of old missing from new (to delete) and of
// new missing from old (to add).
func diffItems(old, new []item) (del, add []item) {
	have := make(map[string]bool, len(old))
	for _, it := range old {
		have[it.id()] = true
	}
	want := make(map[string]bool, len(new))
	for _, it := range new {
		id := it.id()
		want[id] = true
		if !have[id] {
			add = append(add, it)
		}
	}
	for _, it := range old {
		if !want[it.id()] {
			del = append(del, it)
		}
	}
	return del, add
}

// sameShape reports whether two rulesets differ in set elements only.
func sameShape(a, b *ruleset) bool {
	if len(a.sets) != len(b.sets) {
		return false
	}
	for i := range a.sets {
		x, y := *a.sets[i], *b.sets[i]
		x.items, y.items = nil, nil
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return slices.Equal(a.counters, b.counters) && reflect.DeepEqual(a.chains, b.chains) && reflect.DeepEqual(a.rules, b.rules)
}

func (s *setSpec) nftSet(t *nftables.Table) *nftables.Set {
	return &nftables.Set{
		Table:        t,
		Name:         s.name,
		Interval:     s.interval,
		IsMap:        s.isMap,
		KeyType:      s.keyType,
		DataType:     s.dataType,
		KeyByteOrder: s.byteOrder,
	}
}

// Counters returns the values of the table's named counters, sorted by
// name; none when the table does not exist.
func (f *Firewall) Counters(ctx context.Context) ([]Counter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	objs, err := f.readCounters()
	if err != nil {
		return nil, fmt.Errorf("nft: reading counters of table inet %s: %w", f.opts.table, err)
	}
	out := make([]Counter, 0, len(objs))
	for _, o := range objs {
		c := Counter{Name: o.Name, Packets: o.Packets, Bytes: o.Bytes}
		if n, err := ParseCounterName(o.Name); err == nil {
			c.CounterName = n
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Counter) int { return compareStrings(a.Name, b.Name) })
	return out, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (f *Firewall) readCounters() ([]*nftables.CounterObj, error) {
	c, err := f.newConn()
	if err != nil {
		return nil, err
	}
	objs, err := c.GetObjects(f.table)
	if errors.Is(err, syscall.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*nftables.CounterObj
	for _, o := range objs {
		if c, ok := o.(*nftables.CounterObj); ok {
			out = append(out, c)
		}
	}
	return out, nil
}

// Delete removes the firewall's table (and only it), if it exists.
func (f *Firewall) Delete(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.newConn()
	if err != nil {
		return err
	}
	c.AddTable(f.table)
	c.DelTable(f.table)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nft: deleting table inet %s: %w", f.opts.table, err)
	}
	f.remember(nil, nil)
	return nil
}
