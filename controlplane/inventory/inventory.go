// Package inventory owns the controller's state in the store: networks,
// machines, devices, compiled device configs and the global revision. It
// validates every request (returning errors that wrap one of the Err* kinds),
// allocates VNIs and addresses, and on every mutating operation bumps the
// revision, recompiles the configs of the devices the mutation touched and
// stores those that changed, all in one transaction. Indexes derived from the
// records (index.go) are written in the same transaction, so a mutation
// reads only what it changes, not every machine. After the commit it hands
// the changed configs to a Notifier.
//
// It must not know about gRPC or protobuf, and must not talk to agents.
package inventory

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/metalfabric/fabric/controlplane/ipam"
	"github.com/metalfabric/fabric/controlplane/model"
	"github.com/metalfabric/fabric/controlplane/store"
)

// Store layout: one bucket per record type, keyed by name; the revision
// counter lives in the meta bucket.
const (
	bucketNetworks = "networks"
	bucketMachines = "machines"
	bucketDevices  = "devices"
	bucketConfigs  = "configs"
	// bucketNeighbors holds each device's LLDP neighbour table
	// ([]model.Neighbor), bucketPlans its cabling plan.
	bucketNeighbors = "neighbors"
	bucketPlans     = "plans"
	bucketMeta      = "meta"
	keyRevision     = "revision"
)

// Notifier receives the configs that changed, after their commit.
type Notifier interface {
	Publish(cfgs ...model.DeviceConfig)
}

// Inventory is the controller's state machine over a store.
type Inventory struct {
	st        store.Store
	vnis      ipam.VNIRange
	asns      ipam.ASNRange
	loopbacks netip.Prefix
	underlay  UnderlayMode
	linkPool  netip.Prefix
	now       func() time.Time
	notify    Notifier
	log       *slog.Logger
}

// Option configures New.
type Option func(*Inventory)

// WithVNIRange sets the VNI pool new networks draw from.
func WithVNIRange(r ipam.VNIRange) Option { return func(i *Inventory) { i.vnis = r } }

// WithASNRange sets the pool device AS numbers are allocated from.
func WithASNRange(r ipam.ASNRange) Option { return func(i *Inventory) { i.asns = r } }

// DefaultLoopbackPool is where devices' loopback addresses come from unless
// WithLoopbackPool says otherwise.
var DefaultLoopbackPool = netip.MustParsePrefix("10.255.0.0/24")

// WithLoopbackPool sets the prefix device loopbacks (router id, VTEP) are
// allocated from. Tenant networks must not overlap it.
func WithLoopbackPool(p netip.Prefix) Option { return func(i *Inventory) { i.loopbacks = p } }

// WithClock sets the clock used for LastSeen.
func WithClock(now func() time.Time) Option { return func(i *Inventory) { i.now = now } }

// WithNotifier sets who is told about changed configs after each commit.
func WithNotifier(n Notifier) Option { return func(i *Inventory) { i.notify = n } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(i *Inventory) { i.log = l } }

// New returns an inventory over st.
func New(st store.Store, opts ...Option) (*Inventory, error) {
	inv := &Inventory{
		st:        st,
		vnis:      ipam.DefaultVNIRange,
		asns:      ipam.DefaultASNRange,
		loopbacks: DefaultLoopbackPool,
		underlay:  UnderlayUnnumbered,
		linkPool:  DefaultLinkPool,
		now:       time.Now,
		log:       slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(inv)
	}
	if err := inv.vnis.Validate(); err != nil {
		return nil, err
	}
	if err := inv.asns.Validate(); err != nil {
		return nil, err
	}
	if !inv.loopbacks.IsValid() || inv.loopbacks != inv.loopbacks.Masked() {
		return nil, fmt.Errorf("loopback pool %s is not a network prefix", inv.loopbacks)
	}
	if err := inv.validUnderlay(); err != nil {
		return nil, err
	}
	return inv, nil
}

// NetworkInfo is a network with its number of allocated machines.
type NetworkInfo struct {
	model.Network
	Allocated int
}

// DeviceInfo is a device with the version of its desired config and its
// LLDP neighbours.
type DeviceInfo struct {
	model.Device
	DesiredVersion uint64
	Neighbors      []model.Neighbor
}

// commit is what a mutating transaction produced.
type commit struct {
	rev     uint64
	configs map[string]model.DeviceConfig // every device, with versions
	changed []model.DeviceConfig
}

// mutate runs fn in one transaction together with the revision bump and the
// recompilation, then publishes the changed configs. fn may run more than
// once (store.Store contract); it must only touch t.
func (inv *Inventory) mutate(ctx context.Context, fn func(t txn, rev uint64) error) (commit, error) {
	return inv.mutateMaybe(ctx, func(t txn, bump func() (uint64, error)) error {
		rev, err := bump()
		if err != nil {
			return err
		}
		return fn(t, rev)
	})
}

// mutateMaybe is mutate for operations that change desired state only
// sometimes (a neighbour report): fn calls bump when it does, before writing
// anything that carries the revision; bump returns the same revision when
// called again. Without a bump nothing is recompiled and the returned commit
// has rev 0.
func (inv *Inventory) mutateMaybe(ctx context.Context, fn func(t txn, bump func() (uint64, error)) error) (commit, error) {
	var c commit
	err := inv.st.Update(ctx, func(tx store.Tx) error {
		c = commit{}
		t := txn{tx: tx, touched: make(map[string]bool)}
		if err := t.ensureIndexes(); err != nil {
			return err
		}
		var rev uint64
		bump := func() (uint64, error) {
			if rev != 0 {
				return rev, nil
			}
			r, err := t.bumpRevision()
			if err != nil {
				return 0, err
			}
			rev = r
			return rev, nil
		}
		if err := inv.ensureUnderlay(t, bump); err != nil {
			return err
		}
		if err := fn(t, bump); err != nil {
			return err
		}
		if rev == 0 {
			return nil
		}
		var err error
		c.configs, c.changed, err = t.recompile(rev, inv.settings())
		c.rev = rev
		return err
	})
	if err != nil {
		return commit{}, err
	}
	for _, cfg := range c.changed {
		inv.log.Info("device config changed", "device", cfg.Hostname, "version", cfg.Version, "vrfs", len(cfg.VRFs))
	}
	if inv.notify != nil && len(c.changed) > 0 {
		inv.notify.Publish(c.changed...)
	}
	return c, nil
}

// CreateNetwork creates a network on prefix with the lowest free VNI.
//
// Options: External() marks it as an external (internet) network, which
// every firewall then holds (and so gets recompiled).
func (inv *Inventory) CreateNetwork(ctx context.Context, name, prefix string, opts ...NetworkOption) (model.Network, error) {
	var no networkOptions
	for _, o := range opts {
		o(&no)
	}
	if err := validName("network", name); err != nil {
		return model.Network{}, fmt.Errorf("creating network: %w", err)
	}
	p, err := ipam.ParsePrefix(prefix)
	if err != nil {
		return model.Network{}, fmt.Errorf("creating network %s: %w", name, errorf(ErrInvalid, "%v", err))
	}
	var n model.Network
	_, err = inv.mutate(ctx, func(t txn, _ uint64) error {
		nets, err := list[model.Network](t, bucketNetworks)
		if err != nil {
			return err
		}
		if err := checkNewName(nets, name); err != nil {
			return err
		}
		for _, o := range nets {
			if o.Prefix.Overlaps(p) {
				return errorf(ErrPrecondition, "prefix %s overlaps network %s (%s)", p, o.Name, o.Prefix)
			}
		}
		if inv.loopbacks.Overlaps(p) {
			return errorf(ErrPrecondition, "prefix %s overlaps the device loopback pool %s", p, inv.loopbacks)
		}
		if inv.numbered() && inv.linkPool.Overlaps(p) {
			return errorf(ErrPrecondition, "prefix %s overlaps the underlay link pool %s", p, inv.linkPool)
		}
		if no.external {
			if err := t.touchFirewalls(); err != nil {
				return err
			}
		}
		n, err = inv.putNetwork(t, nets, model.Network{Name: name, Prefix: p, External: no.external})
		return err
	})
	if err != nil {
		return model.Network{}, fmt.Errorf("creating network %s: %w", name, err)
	}
	inv.log.Info("network created", "network", n.Name, "prefix", n.Prefix, "vni", n.VNI)
	return n, nil
}

// NetworkOption is an option of CreateNetwork.
type NetworkOption func(*networkOptions)

type networkOptions struct{ external bool }

// External marks a new network as external (internet).
func External() NetworkOption { return func(o *networkOptions) { o.external = true } }

// CreateChildNetwork creates a network as a child of parent, on the lowest
// prefix of length bits inside the parent's prefix that overlaps no other
// child of the parent and no machine address allocated in the parent, with
// the lowest free VNI. The parent's free addresses outside its children stay
// allocatable.
func (inv *Inventory) CreateChildNetwork(ctx context.Context, name, parent string, bits int) (model.Network, error) {
	if err := validName("network", name); err != nil {
		return model.Network{}, fmt.Errorf("creating network: %w", err)
	}
	if err := validName("parent network", parent); err != nil {
		return model.Network{}, fmt.Errorf("creating network %s: %w", name, err)
	}
	if bits <= 0 {
		return model.Network{}, fmt.Errorf("creating network %s: %w", name, errorf(ErrInvalid, "child prefix length is missing"))
	}
	var n model.Network
	_, err := inv.mutate(ctx, func(t txn, _ uint64) error {
		nets, err := list[model.Network](t, bucketNetworks)
		if err != nil {
			return err
		}
		if err := checkNewName(nets, name); err != nil {
			return err
		}
		par, err := t.network(parent)
		if errors.Is(err, ErrNotFound) {
			return errorf(ErrNotFound, "parent network %s not found", parent)
		}
		if err != nil {
			return err
		}
		taken, err := t.childPrefixes(parent)
		if err != nil {
			return err
		}
		ips, err := t.allocatedIPs(parent)
		if err != nil {
			return err
		}
		for _, ip := range ips {
			taken = append(taken, netip.PrefixFrom(ip, ip.BitLen()))
		}
		p, err := ipam.NextChild(par.Prefix, bits, taken)
		if errors.Is(err, ipam.ErrExhausted) {
			return errorf(ErrExhausted, "network %s (%s) has no free /%d left outside its children and allocated addresses", parent, par.Prefix, bits)
		}
		if err != nil {
			return errorf(ErrInvalid, "parent network %s (%s): %v", parent, par.Prefix, err)
		}
		n, err = inv.putNetwork(t, nets, model.Network{Name: name, Prefix: p, Parent: parent})
		return err
	})
	if err != nil {
		return model.Network{}, fmt.Errorf("creating network %s: %w", name, err)
	}
	inv.log.Info("network created", "network", n.Name, "prefix", n.Prefix, "vni", n.VNI, "parent", n.Parent)
	return n, nil
}

// checkNewName rejects a network name that is taken.
func checkNewName(nets []model.Network, name string) error {
	for _, o := range nets {
		if o.Name == name {
			return errorf(ErrExists, "network %s already exists (%s)", name, o.Prefix)
		}
	}
	return nil
}

// putNetwork gives n the lowest VNI none of nets holds and stores it.
func (inv *Inventory) putNetwork(t txn, nets []model.Network, n model.Network) (model.Network, error) {
	used := make(map[uint32]bool, len(nets))
	for _, o := range nets {
		used[o.VNI] = true
	}
	vni, err := ipam.NextVNI(inv.vnis, used)
	if errors.Is(err, ipam.ErrExhausted) {
		return model.Network{}, errorf(ErrExhausted, "no free VNI left in the VNI pool %s", inv.vnis)
	}
	if err != nil {
		return model.Network{}, fmt.Errorf("allocating vni: %w", err)
	}
	n.VNI = vni
	if err := t.putNetworkRecord(n); err != nil {
		return model.Network{}, err
	}
	return n, nil
}

// DeleteNetwork deletes a network without allocations.
func (inv *Inventory) DeleteNetwork(ctx context.Context, name string) error {
	if err := validName("network", name); err != nil {
		return fmt.Errorf("deleting network: %w", err)
	}
	_, err := inv.mutate(ctx, func(t txn, _ uint64) error {
		n, err := t.network(name)
		if err != nil {
			return err
		}
		kids, err := t.children(name)
		if err != nil {
			return err
		}
		if len(kids) > 0 {
			var names []string
			for _, k := range kids {
				names = append(names, k.Name)
			}
			return errorf(ErrPrecondition, "network %s still has %d child network(s) (%s); delete them first",
				name, len(kids), strings.Join(names, ", "))
		}
		allocs, err := t.allocations(name)
		if err != nil {
			return err
		}
		users := slices.Sorted(maps.Values(allocs))
		if len(users) > 0 {
			return errorf(ErrPrecondition, "network %s still has %d allocated machine(s) (%s); free them first",
				name, len(users), strings.Join(users, ", "))
		}
		// The network's firewall policy goes with it.
		if _, err := t.tx.Get(bucketFirewalls, name); err == nil {
			if err := t.touchFirewalls(); err != nil {
				return err
			}
			if err := t.tx.Delete(bucketFirewalls, name); err != nil {
				return err
			}
		}
		// Firewalls hold every external network's VRF.
		if n.External {
			if err := t.touchFirewalls(); err != nil {
				return err
			}
		}
		return t.deleteNetworkRecord(n)
	})
	if err != nil {
		return fmt.Errorf("deleting network %s: %w", name, err)
	}
	inv.log.Info("network deleted", "network", name)
	return nil
}

// ListNetworks returns all networks sorted by name.
func (inv *Inventory) ListNetworks(ctx context.Context) ([]NetworkInfo, error) {
	var out []NetworkInfo
	err := inv.st.View(ctx, func(tx store.Tx) error {
		t := txn{tx: tx}
		nets, err := list[model.Network](t, bucketNetworks)
		if err != nil {
			return err
		}
		machines, err := list[model.Machine](t, bucketMachines)
		if err != nil {
			return err
		}
		count := make(map[string]int)
		for _, m := range machines {
			if m.Allocation != nil {
				count[m.Allocation.Network]++
			}
		}
		out = make([]NetworkInfo, 0, len(nets))
		for _, n := range nets {
			out = append(out, NetworkInfo{Network: n, Allocated: count[n.Name]})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing networks: %w", err)
	}
	return out, nil
}

// Register records or refreshes a device: role, chassis MAC and ports are
// replaced, status and every machine's cabling and allocation are kept.
// It returns the version of the device's desired config.
func (inv *Inventory) Register(ctx context.Context, d model.Device) (uint64, error) {
	if err := validHostname(d.Hostname); err != nil {
		return 0, fmt.Errorf("registering device: %w", err)
	}
	if d.Role == "" {
		return 0, fmt.Errorf("registering device %s: %w", d.Hostname, errorf(ErrInvalid, "role is missing; want leaf, spine or firewall"))
	}
	if !d.Role.Valid() {
		return 0, fmt.Errorf("registering device %s: %w", d.Hostname, errorf(ErrInvalid, "role %q is not one of leaf, spine, firewall", d.Role))
	}
	if err := validMAC("chassis mac", d.ChassisMAC); err != nil {
		return 0, fmt.Errorf("registering device %s: %w", d.Hostname, err)
	}
	ports, err := validPorts(d.Ports)
	if err != nil {
		return 0, fmt.Errorf("registering device %s: %w", d.Hostname, err)
	}
	now := inv.now()
	created := false
	c, err := inv.mutate(ctx, func(t txn, rev uint64) error {
		cur, err := t.device(d.Hostname)
		created = errors.Is(err, ErrNotFound)
		if err != nil && !created {
			return err
		}
		roleChanged := !created && cur.Role != d.Role
		cur.Hostname = d.Hostname
		cur.Role = d.Role
		cur.ChassisMAC = d.ChassisMAC
		cur.Ports = ports
		cur.LastSeen = now
		if !cur.Loopback.IsValid() {
			if cur.Loopback, err = t.nextLoopback(inv.loopbacks); err != nil {
				return err
			}
		}
		if cur.ASN == 0 {
			if cur.ASN, err = t.nextASN(inv.asns); err != nil {
				return err
			}
		}
		if err := t.put(bucketDevices, d.Hostname, cur); err != nil {
			return err
		}
		t.touch(d.Hostname)
		// A new device turns neighbours announcing its name from machines
		// into fabric links: the devices that see it get underlay sessions.
		// A new role can change which end of those sessions listens.
		if created || roleChanged {
			tables, err := t.neighborTables()
			if err != nil {
				return err
			}
			for host, nbrs := range tables {
				if slices.ContainsFunc(nbrs, func(n model.Neighbor) bool { return strings.EqualFold(n.Identity(), d.Hostname) }) {
					t.touch(host)
				}
			}
		}
		return inv.relearn(t, rev)
	})
	if err != nil {
		return 0, fmt.Errorf("registering device %s: %w", d.Hostname, err)
	}
	version := c.configs[d.Hostname].Version
	inv.log.Info("device registered", "device", d.Hostname, "role", d.Role, "ports", len(ports), "new", created, "version", version)
	return version, nil
}

// Status is what an agent reports.
type Status struct {
	AppliedVersion uint64
	Errors         []model.StepError
	// Ports replaces the device's ports when not empty.
	Ports []model.Port
	Drift model.Drift
	// Routing replaces the device's routing report when not nil.
	Routing *model.Routing
}

// ReportStatus records a device's applied version, errors and port states.
// It does not bump the revision: status is not part of any desired config.
func (inv *Inventory) ReportStatus(ctx context.Context, hostname string, s Status) error {
	if err := validHostname(hostname); err != nil {
		return fmt.Errorf("recording status: %w", err)
	}
	ports, err := validPorts(s.Ports)
	if err != nil {
		return fmt.Errorf("recording status of %s: %w", hostname, err)
	}
	now := inv.now()
	err = inv.st.Update(ctx, func(tx store.Tx) error {
		t := txn{tx: tx}
		d, err := t.device(hostname)
		if err != nil {
			return err
		}
		var cfg model.DeviceConfig
		if err := t.get(bucketConfigs, hostname, &cfg); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if s.AppliedVersion > cfg.Version {
			return errorf(ErrPrecondition, "applied version %d is newer than the desired version %d; the agent's config did not come from this controller",
				s.AppliedVersion, cfg.Version)
		}
		d.AppliedVersion = s.AppliedVersion
		d.Errors = slices.Clone(s.Errors)
		d.Drift = s.Drift
		if s.Routing != nil {
			d.Routing = s.Routing
		}
		if len(ports) > 0 {
			d.Ports = ports
		}
		d.LastSeen = now
		return t.put(bucketDevices, hostname, d)
	})
	if err != nil {
		return fmt.Errorf("recording status of %s: %w", hostname, err)
	}
	inv.log.Debug("device status", "device", hostname, "applied_version", s.AppliedVersion, "errors", len(s.Errors))
	return nil
}

// ListDevices returns all devices sorted by hostname.
func (inv *Inventory) ListDevices(ctx context.Context) ([]DeviceInfo, error) {
	var out []DeviceInfo
	err := inv.st.View(ctx, func(tx store.Tx) error {
		t := txn{tx: tx}
		devs, err := list[model.Device](t, bucketDevices)
		if err != nil {
			return err
		}
		cfgs, err := list[model.DeviceConfig](t, bucketConfigs)
		if err != nil {
			return err
		}
		versions := make(map[string]uint64, len(cfgs))
		for _, c := range cfgs {
			versions[c.Hostname] = c.Version
		}
		tables, err := t.neighborTables()
		if err != nil {
			return err
		}
		out = make([]DeviceInfo, 0, len(devs))
		for _, d := range devs {
			out = append(out, DeviceInfo{Device: d, DesiredVersion: versions[d.Hostname], Neighbors: tables[d.Hostname]})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	return out, nil
}

// DeviceConfig returns a registered device's current desired config.
func (inv *Inventory) DeviceConfig(ctx context.Context, hostname string) (model.DeviceConfig, error) {
	if err := validHostname(hostname); err != nil {
		return model.DeviceConfig{}, fmt.Errorf("reading config: %w", err)
	}
	var cfg model.DeviceConfig
	err := inv.st.View(ctx, func(tx store.Tx) error {
		t := txn{tx: tx}
		if _, err := t.device(hostname); err != nil {
			return err
		}
		return t.get(bucketConfigs, hostname, &cfg)
	})
	if err != nil {
		return model.DeviceConfig{}, fmt.Errorf("reading config of %s: %w", hostname, err)
	}
	return cfg, nil
}

// ListMachines returns all machines sorted by name.
func (inv *Inventory) ListMachines(ctx context.Context) ([]model.Machine, error) {
	var out []model.Machine
	err := inv.st.View(ctx, func(tx store.Tx) error {
		var err error
		out, err = list[model.Machine](txn{tx: tx}, bucketMachines)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing machines: %w", err)
	}
	return out, nil
}

// Machine returns one machine.
func (inv *Inventory) Machine(ctx context.Context, name string) (model.Machine, error) {
	var m model.Machine
	err := inv.st.View(ctx, func(tx store.Tx) error {
		var err error
		m, err = txn{tx: tx}.machine(name)
		return err
	})
	if err != nil {
		return model.Machine{}, fmt.Errorf("reading machine %s: %w", name, err)
	}
	return m, nil
}

// CableMachine sets a manual override of a machine's wiring, creating the
// machine if needed: with connections, they become the machine's effective
// connections (Manual) whatever LLDP learns; with none, the override is
// removed and the effective connections are the learned ones again. Every
// connection must name a registered leaf and a port it reported, not in the
// effective wiring of another machine. Changing the effective wiring of an
// allocated machine moves its ports between VRFs and counts as a change of
// the machine for convergence.
func (inv *Inventory) CableMachine(ctx context.Context, name string, conns []model.Connection) (model.Machine, error) {
	if err := validName("machine", name); err != nil {
		return model.Machine{}, fmt.Errorf("cabling machine: %w", err)
	}
	conns = slices.Clone(conns)
	slices.SortFunc(conns, func(a, b model.Connection) int {
		return cmp.Or(cmp.Compare(a.Device, b.Device), cmp.Compare(a.Port, b.Port))
	})
	for i, c := range conns {
		if err := validHostname(c.Device); err != nil {
			return model.Machine{}, fmt.Errorf("cabling machine %s: connection device: %w", name, err)
		}
		if err := validPortName(c.Port); err != nil {
			return model.Machine{}, fmt.Errorf("cabling machine %s: %w", name, err)
		}
		if i > 0 && conns[i-1] == c {
			return model.Machine{}, fmt.Errorf("cabling machine %s: %w", name, errorf(ErrInvalid, "connection %s/%s is listed twice", c.Device, c.Port))
		}
	}
	var m model.Machine
	_, err := inv.mutate(ctx, func(t txn, rev uint64) error {
		machines, err := list[model.Machine](t, bucketMachines)
		if err != nil {
			return err
		}
		owner := make(map[model.Connection]string)
		m = model.Machine{Name: name}
		var old *model.Machine
		for _, o := range machines {
			if o.Name == name {
				m, old = o, &o
				continue
			}
			for _, c := range o.Connections {
				owner[c] = o.Name
			}
		}
		for _, c := range conns {
			d, err := t.device(c.Device)
			if errors.Is(err, ErrNotFound) {
				return errorf(ErrNotFound, "device %s has not registered", c.Device)
			}
			if err != nil {
				return err
			}
			if d.Role != model.RoleLeaf {
				return errorf(ErrPrecondition, "device %s is a %s; machines are cabled to leaves", c.Device, d.Role)
			}
			if !d.HasPort(c.Port) {
				return errorf(ErrNotFound, "device %s did not report a port %s", c.Device, c.Port)
			}
			if o, ok := owner[c]; ok {
				return errorf(ErrPrecondition, "port %s/%s is already cabled to machine %s", c.Device, c.Port, o)
			}
		}
		effective := conns
		m.Manual = len(conns) > 0
		if !m.Manual {
			effective = m.Learned
		}
		if m.Allocation != nil && !slices.Equal(m.Connections, effective) {
			m.Revision = rev
		}
		m.Connections = effective
		if err := t.putMachine(old, m); err != nil {
			return err
		}
		// Manual claims hide ports from other machines' learned wiring,
		// and a removed override hands them back.
		if err := inv.relearn(t, rev); err != nil {
			return err
		}
		m, err = t.machine(name)
		return err
	})
	if err != nil {
		return model.Machine{}, fmt.Errorf("cabling machine %s: %w", name, err)
	}
	inv.log.Info("machine cabled", "machine", name, "connections", len(m.Connections), "manual", m.Manual)
	return m, nil
}

// AllocateMachine puts a free machine with known wiring into a network with
// the lowest free host address of its prefix. With a non-empty requestID, a
// retry of the machine's last allocation with the same id returns that
// allocation (the machine as it is now, with the allocation the request
// made) and changes nothing; the same id with another network is rejected.
func (inv *Inventory) AllocateMachine(ctx context.Context, machine, network, requestID string, announce ...netip.Prefix) (model.Machine, error) {
	if err := validName("machine", machine); err != nil {
		return model.Machine{}, fmt.Errorf("allocating machine: %w", err)
	}
	if err := validName("network", network); err != nil {
		return model.Machine{}, fmt.Errorf("allocating machine %s: %w", machine, err)
	}
	if err := validRequestID(requestID); err != nil {
		return model.Machine{}, fmt.Errorf("allocating machine %s: %w", machine, err)
	}
	announce, err := validAnnounce(announce)
	if err != nil {
		return model.Machine{}, fmt.Errorf("allocating machine %s: %w", machine, err)
	}
	var m model.Machine
	_, err = inv.mutate(ctx, func(t txn, rev uint64) error {
		var err error
		if m, err = t.machine(machine); err != nil {
			return err
		}
		if r := m.AllocateRequest; requestID != "" && r != nil && r.ID == requestID {
			if r.Network != network {
				return errorf(ErrPrecondition, "request id %s was used to allocate machine %s into network %s, not %s", requestID, machine, r.Network, network)
			}
			m.Allocation = &r.Allocation
			return &replay{m: m}
		}
		n, err := t.network(network)
		if err != nil {
			return err
		}
		if a := m.Allocation; a != nil {
			return errorf(ErrExists, "machine %s is already allocated to network %s (%s)", machine, a.Network, a.IP)
		}
		if len(m.Connections) == 0 {
			return errorf(ErrPrecondition, "machine %s has no known wiring: LLDP has not seen it on any leaf port and it has no manual cabling (fabricctl machine cable)", machine)
		}
		kids, err := t.childPrefixes(network)
		if err != nil {
			return err
		}
		hint, err := t.ipHint(network)
		if err != nil {
			return err
		}
		ip, err := ipam.NextHostFunc(n.Prefix, hint, kids, func(a netip.Addr) (bool, error) { return t.ipUsed(network, a) })
		if errors.Is(err, ipam.ErrExhausted) {
			allocs, err := t.allocations(network)
			if err != nil {
				return err
			}
			what := ""
			if len(kids) > 0 {
				what = fmt.Sprintf(" outside its %d child network(s)", len(kids))
			}
			return errorf(ErrExhausted, "network %s is full: all %d host addresses of %s%s are allocated",
				network, len(allocs), n.Prefix, what)
		}
		if err != nil {
			return fmt.Errorf("allocating address: %w", err)
		}
		// Every host address below ip is taken now.
		next := ip.Next()
		if !next.IsValid() {
			next = ip
		}
		if err := t.setHint(network, next); err != nil {
			return err
		}
		old := m
		m.Allocation = &model.Allocation{Network: network, IP: ip, Revision: rev, Announce: announce}
		m.Revision = rev
		if requestID != "" {
			m.AllocateRequest = &model.AllocateRequest{ID: requestID, Network: network, Allocation: *m.Allocation}
		}
		return t.putMachine(&old, m)
	})
	if r, ok := errors.AsType[*replay](err); ok {
		inv.log.Info("machine allocation replayed", "machine", machine, "request_id", requestID)
		return r.m, nil
	}
	if err != nil {
		return model.Machine{}, fmt.Errorf("allocating machine %s in %s: %w", machine, network, err)
	}
	inv.log.Info("machine allocated", "machine", machine, "network", network, "ip", m.Allocation.IP, "revision", m.Revision)
	return m, nil
}

// FreeMachine releases a machine's allocation. With a non-empty requestID,
// a retry of the machine's last free with the same id returns the machine
// (without allocation) and changes nothing.
func (inv *Inventory) FreeMachine(ctx context.Context, machine, requestID string) (model.Machine, error) {
	if err := validName("machine", machine); err != nil {
		return model.Machine{}, fmt.Errorf("freeing machine: %w", err)
	}
	if err := validRequestID(requestID); err != nil {
		return model.Machine{}, fmt.Errorf("freeing machine %s: %w", machine, err)
	}
	var m model.Machine
	var was model.Allocation
	_, err := inv.mutate(ctx, func(t txn, rev uint64) error {
		var err error
		if m, err = t.machine(machine); err != nil {
			return err
		}
		if requestID != "" && m.FreeRequest == requestID {
			m.Allocation = nil
			return &replay{m: m}
		}
		if m.Allocation == nil {
			return errorf(ErrPrecondition, "machine %s is not allocated", machine)
		}
		was = *m.Allocation
		old := m
		m.Allocation = nil
		m.Revision = rev
		m.FreeRequest = requestID
		return t.putMachine(&old, m)
	})
	if r, ok := errors.AsType[*replay](err); ok {
		inv.log.Info("machine free replayed", "machine", machine, "request_id", requestID)
		return r.m, nil
	}
	if err != nil {
		return model.Machine{}, fmt.Errorf("freeing machine %s: %w", machine, err)
	}
	inv.log.Info("machine freed", "machine", machine, "network", was.Network, "ip", was.IP, "revision", m.Revision)
	return m, nil
}

// Convergence reports, for every device the machine is cabled to, whether
// it applied the version containing the machine's last change without
// errors.
func (inv *Inventory) Convergence(ctx context.Context, machine string) (model.Convergence, error) {
	if err := validName("machine", machine); err != nil {
		return model.Convergence{}, fmt.Errorf("reading convergence: %w", err)
	}
	var out model.Convergence
	err := inv.st.View(ctx, func(tx store.Tx) error {
		t := txn{tx: tx}
		m, err := t.machine(machine)
		if err != nil {
			return err
		}
		out = model.Convergence{Machine: m.Name, Revision: m.Revision, Converged: true}
		var hosts []string
		for _, c := range m.Connections {
			hosts = append(hosts, c.Device)
		}
		slices.Sort(hosts)
		for _, h := range slices.Compact(hosts) {
			d, err := t.device(h)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			// The change at m.Revision may have left this device's config
			// as it was (e.g. a NIC of the machine on another switch came
			// back): then its current config already holds the machine's
			// state, and that is the version it must have applied.
			required := m.Revision
			var cfg model.DeviceConfig
			if gerr := t.get(bucketConfigs, h, &cfg); gerr == nil && cfg.Version > 0 && cfg.Version < required {
				required = cfg.Version
			} else if gerr != nil && !errors.Is(gerr, store.ErrNotFound) {
				return gerr
			}
			dc := model.DeviceConvergence{
				Hostname:        h,
				RequiredVersion: required,
				AppliedVersion:  d.AppliedVersion,
				Errors:          d.Errors,
			}
			dc.Converged = err == nil && d.AppliedVersion >= required && len(d.Errors) == 0
			out.Converged = out.Converged && dc.Converged
			out.Devices = append(out.Devices, dc)
		}
		return nil
	})
	if err != nil {
		return model.Convergence{}, fmt.Errorf("reading convergence of %s: %w", machine, err)
	}
	return out, nil
}

// Shared tells whether the store is shared with other controller replicas
// (it implements store.Watcher), so Follow has something to do.
func (inv *Inventory) Shared() bool {
	_, ok := inv.st.(store.Watcher)
	return ok
}

// Follow hands every device config committed to a shared store, by this
// replica or any other, to the Notifier, until ctx is done; it starts with
// every stored config, and again after a break in the store's change feed.
// The Notifier sees configs of this replica's own commits twice and must
// drop versions it already has (watch.Hub does). Follow returns ctx's
// error, or nil at once when the store is not shared or there is no
// Notifier.
func (inv *Inventory) Follow(ctx context.Context) error {
	w, ok := inv.st.(store.Watcher)
	if !ok || inv.notify == nil {
		return nil
	}
	err := w.WatchBucket(ctx, bucketConfigs, func(kv store.KV) {
		if kv.Value == nil {
			return // a deleted device: its watchers are gone or get NotFound
		}
		var cfg model.DeviceConfig
		if err := json.Unmarshal(kv.Value, &cfg); err != nil {
			inv.log.Error("undecodable config in the store", "device", kv.Key, "err", err)
			return
		}
		inv.notify.Publish(cfg)
	})
	if err != nil {
		return fmt.Errorf("following configs: %w", err)
	}
	return nil
}

// Revision returns the current global revision.
func (inv *Inventory) Revision(ctx context.Context) (uint64, error) {
	var rev uint64
	err := inv.st.View(ctx, func(tx store.Tx) error {
		err := txn{tx: tx}.get(bucketMeta, keyRevision, &rev)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("reading revision: %w", err)
	}
	return rev, nil
}

// txn adds typed, JSON-encoded records on top of a store.Tx. In a mutation,
// touched collects the devices whose config may have changed.
type txn struct {
	tx      store.Tx
	touched map[string]bool
}

func (t txn) get(bucket, key string, v any) error {
	b, err := t.tx.Get(bucket, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decoding %s/%s: %w", bucket, key, err)
	}
	return nil
}

func (t txn) put(bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s/%s: %w", bucket, key, err)
	}
	return t.tx.Put(bucket, key, b)
}

func list[T any](t txn, bucket string) ([]T, error) { return listPrefix[T](t, bucket, "") }

// listPrefix decodes the records of bucket whose key starts with prefix.
func listPrefix[T any](t txn, bucket, prefix string) ([]T, error) {
	kvs, err := t.tx.List(bucket, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(kvs))
	for _, kv := range kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("decoding %s/%s: %w", bucket, kv.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// getKind is get with store.ErrNotFound turned into an ErrNotFound naming
// the record.
func (t txn) getKind(bucket, what, key string, v any) error {
	err := t.get(bucket, key, v)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(ErrNotFound, "%s %s not found", what, key)
	}
	return err
}

func (t txn) network(name string) (model.Network, error) {
	var n model.Network
	return n, t.getKind(bucketNetworks, "network", name, &n)
}

func (t txn) machine(name string) (model.Machine, error) {
	var m model.Machine
	return m, t.getKind(bucketMachines, "machine", name, &m)
}

func (t txn) device(hostname string) (model.Device, error) {
	var d model.Device
	return d, t.getKind(bucketDevices, "device", hostname, &d)
}

// nextASN returns the lowest ASN of pool no device holds.
func (t txn) nextASN(pool ipam.ASNRange) (uint32, error) {
	devs, err := list[model.Device](t, bucketDevices)
	if err != nil {
		return 0, err
	}
	used := make(map[uint32]bool, len(devs))
	for _, d := range devs {
		used[d.ASN] = true
	}
	a, err := ipam.NextASN(pool, used)
	if errors.Is(err, ipam.ErrExhausted) {
		return 0, errorf(ErrExhausted, "no free AS number left in the ASN pool %s", pool)
	}
	if err != nil {
		return 0, fmt.Errorf("allocating asn: %w", err)
	}
	return a, nil
}

// nextLoopback returns the lowest address of pool no device holds.
func (t txn) nextLoopback(pool netip.Prefix) (netip.Addr, error) {
	devs, err := list[model.Device](t, bucketDevices)
	if err != nil {
		return netip.Addr{}, err
	}
	used := make(map[netip.Addr]bool, len(devs))
	for _, d := range devs {
		used[d.Loopback] = true
	}
	a, err := ipam.NextHost(pool, used)
	if errors.Is(err, ipam.ErrExhausted) {
		return netip.Addr{}, errorf(ErrExhausted, "no free address left in the loopback pool %s", pool)
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("allocating loopback: %w", err)
	}
	return a, nil
}

func (t txn) bumpRevision() (uint64, error) {
	var rev uint64
	if err := t.get(bucketMeta, keyRevision, &rev); err != nil && !errors.Is(err, store.ErrNotFound) {
		return 0, fmt.Errorf("reading revision: %w", err)
	}
	rev++
	if err := t.put(bucketMeta, keyRevision, rev); err != nil {
		return 0, fmt.Errorf("bumping revision: %w", err)
	}
	return rev, nil
}

func sortPorts(ps []model.Port) {
	slices.SortFunc(ps, func(a, b model.Port) int { return cmp.Compare(a.Name, b.Name) })
}
