package inventory

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/metalfabric/fabric/controlplane/compile"
	"github.com/metalfabric/fabric/controlplane/ipam"
	"github.com/metalfabric/fabric/controlplane/model"
	"github.com/metalfabric/fabric/controlplane/store"
)

// This file holds what the inventory learns from LLDP: neighbour tables,
// the learned wiring of machines, cabling plans and their findings.
//
// Wiring rules (see ReportNeighbors):
//   - A neighbour's identity is its system name, or its chassis id when it
//     announces none. An identity that names a registered device (case
//     insensitive) is a fabric link and never a machine.
//   - Only leaves learn machines. The machine name is the identity in lower
//     case with ':' replaced by '-' (so a MAC chassis id becomes a name);
//     identities that are still not valid machine names are ignored.
//   - A leaf port learns a machine when exactly one machine is seen on it
//     and no other machine claims the port by a manual override.
//   - Wiring follows the current neighbour tables: a neighbour that vanishes
//     takes its port out of the machine's learned wiring (and out of the VRF
//     when the machine is allocated and not manually cabled) at once; it
//     does not wait for the machine to be considered dead.

// replay aborts a transaction (so nothing is written and the revision is
// not bumped) to return the recorded result of a retried request.
type replay struct{ m model.Machine }

func (*replay) Error() string { return "replayed request" }

// validRequestID checks an optional client request id.
func validRequestID(id string) error {
	if len(id) > 128 {
		return errorf(ErrInvalid, "request id is longer than 128 bytes")
	}
	for _, r := range id {
		if r <= ' ' || r == 0x7f {
			return errorf(ErrInvalid, "request id %q contains whitespace or control characters", id)
		}
	}
	return nil
}

// machineName maps a neighbour identity to a machine name.
func machineName(identity string) (string, bool) {
	n := strings.ToLower(strings.ReplaceAll(identity, ":", "-"))
	return n, validName("machine", n) == nil
}

// validNeighbors checks a reported neighbour table and returns it
// normalised: last-seen times set (zero or future ones become now) and
// sorted by port, then identity.
func validNeighbors(nbrs []model.Neighbor, now time.Time) ([]model.Neighbor, error) {
	type key struct{ port, chassis, portID string }
	seen := make(map[key]bool, len(nbrs))
	out := make([]model.Neighbor, 0, len(nbrs))
	for _, n := range nbrs {
		if err := validPortName(n.Port); err != nil {
			return nil, fmt.Errorf("neighbour: %w", err)
		}
		if n.ChassisID == "" {
			return nil, errorf(ErrInvalid, "neighbour on port %s has no chassis id", n.Port)
		}
		for what, v := range map[string]string{"chassis id": n.ChassisID, "port id": n.PortID, "system name": n.SystemName} {
			if len(v) > 255 {
				return nil, errorf(ErrInvalid, "neighbour on port %s: %s is longer than 255 bytes", n.Port, what)
			}
		}
		if len(n.PortDescription) > 255 || len(n.SystemDescription) > 255 {
			return nil, errorf(ErrInvalid, "neighbour on port %s: description is longer than 255 bytes", n.Port)
		}
		k := key{n.Port, n.ChassisID, n.PortID}
		if seen[k] {
			return nil, errorf(ErrInvalid, "neighbour %s (port id %q) is listed twice on port %s", n.ChassisID, n.PortID, n.Port)
		}
		seen[k] = true
		if n.LastSeen.IsZero() || n.LastSeen.After(now) {
			n.LastSeen = now
		}
		n.MgmtAddrs = slices.Clone(n.MgmtAddrs)
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b model.Neighbor) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Identity(), b.Identity()), cmp.Compare(a.PortID, b.PortID))
	})
	return out, nil
}

// ReportNeighbors replaces a device's LLDP neighbour table and re-derives
// the learned wiring of every machine. The revision is bumped (and configs
// recompiled and published) only when the effective wiring of some machine
// changed, e.g. an allocated machine's port lost its neighbour; otherwise
// only the table and the machines' last-seen times are written. Machines
// seen for the first time are created, free. It reports whether the
// revision was bumped.
func (inv *Inventory) ReportNeighbors(ctx context.Context, hostname string, nbrs []model.Neighbor) (bool, error) {
	if err := validHostname(hostname); err != nil {
		return false, fmt.Errorf("recording neighbours: %w", err)
	}
	nbrs, err := validNeighbors(nbrs, inv.now())
	if err != nil {
		return false, fmt.Errorf("recording neighbours of %s: %w", hostname, err)
	}
	c, err := inv.mutateMaybe(ctx, func(t txn, bump func() (uint64, error)) error {
		if _, err := t.device(hostname); err != nil {
			return err
		}
		var before []model.Neighbor
		if err := t.get(bucketNeighbors, hostname, &before); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if len(nbrs) == 0 {
			if err := t.tx.Delete(bucketNeighbors, hostname); err != nil {
				return err
			}
		} else if err := t.put(bucketNeighbors, hostname, nbrs); err != nil {
			return err
		}
		if _, err := inv.relearnLazy(t, bump); err != nil {
			return err
		}
		// A fabric link that appeared or went away changes the device's
		// underlay sessions.
		devs, err := list[model.Device](t, bucketDevices)
		if err != nil {
			return err
		}
		devices := make(map[string]model.Device, len(devs))
		for _, d := range devs {
			devices[strings.ToLower(d.Hostname)] = d
		}
		self := devices[strings.ToLower(hostname)]
		changed := !slices.Equal(compile.Underlay(self, before, devices), compile.Underlay(self, nbrs, devices))
		if inv.numbered() {
			// A neighbour port that moved keeps the session but changes
			// its link, and so its /31.
			changed = !slices.Equal(compile.Sessions(self, before, devices), compile.Sessions(self, nbrs, devices))
		}
		if changed {
			if _, err := bump(); err != nil {
				return err
			}
			t.touch(hostname)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("recording neighbours of %s: %w", hostname, err)
	}
	inv.log.Debug("device neighbours", "device", hostname, "neighbors", len(nbrs), "revision", c.rev)
	return c.rev != 0, nil
}

// relearn is relearnLazy inside a transaction that already bumped to rev.
func (inv *Inventory) relearn(t txn, rev uint64) error {
	_, err := inv.relearnLazy(t, func() (uint64, error) { return rev, nil })
	return err
}

// sighting is where one machine is seen by LLDP.
type sighting struct {
	conns    []model.Connection
	chassis  string
	lastSeen time.Time
}

// relearnLazy re-derives every machine's learned wiring, last-seen time and
// chassis id from the stored neighbour tables and writes the machines that
// changed. When some machine's effective wiring changed it calls bump first
// and gives allocated machines whose wiring moved the new revision. Free,
// non-manual machines whose name turned out to be a registered device are
// deleted. It reports whether it bumped.
func (inv *Inventory) relearnLazy(t txn, bump func() (uint64, error)) (bool, error) {
	devs, err := list[model.Device](t, bucketDevices)
	if err != nil {
		return false, fmt.Errorf("relearning wiring: %w", err)
	}
	tables, err := t.neighborTables()
	if err != nil {
		return false, fmt.Errorf("relearning wiring: %w", err)
	}
	machines, err := list[model.Machine](t, bucketMachines)
	if err != nil {
		return false, fmt.Errorf("relearning wiring: %w", err)
	}
	isDevice := make(map[string]bool, len(devs))
	for _, d := range devs {
		isDevice[strings.ToLower(d.Hostname)] = true
	}
	manualOwner := make(map[model.Connection]string)
	for _, m := range machines {
		if m.Manual {
			for _, c := range m.Connections {
				manualOwner[c] = m.Name
			}
		}
	}
	sights := make(map[string]*sighting)
	for _, d := range devs {
		if d.Role != model.RoleLeaf {
			continue
		}
		perPort := make(map[string]map[string]bool)
		for _, n := range tables[d.Hostname] {
			id := n.Identity()
			if isDevice[strings.ToLower(id)] {
				continue // a fabric link
			}
			name, ok := machineName(id)
			if !ok {
				inv.log.Debug("neighbour is not a machine name", "device", d.Hostname, "port", n.Port, "neighbor", id)
				continue
			}
			s := sights[name]
			if s == nil {
				s = &sighting{}
				sights[name] = s
			}
			if n.LastSeen.After(s.lastSeen) {
				s.lastSeen, s.chassis = n.LastSeen, n.ChassisID
			}
			if perPort[n.Port] == nil {
				perPort[n.Port] = make(map[string]bool)
			}
			perPort[n.Port][name] = true
		}
		for _, port := range slices.Sorted(maps.Keys(perPort)) {
			names := perPort[port]
			if len(names) != 1 {
				inv.log.Warn("several machines seen on one port, learning none", "device", d.Hostname, "port", port, "machines", len(names))
				continue
			}
			var name string
			for name = range names {
			}
			c := model.Connection{Device: d.Hostname, Port: port}
			if o, ok := manualOwner[c]; ok && o != name {
				continue
			}
			sights[name].conns = append(sights[name].conns, c)
		}
	}

	byName := make(map[string]model.Machine, len(machines))
	for _, m := range machines {
		byName[m.Name] = m
	}
	names := slices.Collect(maps.Keys(byName))
	for name := range sights {
		if _, ok := byName[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)

	type change struct {
		old    *model.Machine // nil when created
		m      model.Machine
		wiring bool // effective wiring changed
		create bool
		delete bool
	}
	var changes []change
	wiring := false
	for _, name := range names {
		old, exists := byName[name]
		m := old
		if !exists {
			m = model.Machine{Name: name}
		}
		if exists && isDevice[name] && m.Allocation == nil && !m.Manual {
			changes = append(changes, change{old: &old, m: m, delete: true, wiring: len(m.Connections) > 0})
			wiring = wiring || len(m.Connections) > 0
			continue
		}
		var learned []model.Connection
		if s := sights[name]; s != nil {
			learned = s.conns
			slices.SortFunc(learned, compareConn)
			if s.lastSeen.After(m.LastSeen) {
				m.LastSeen = s.lastSeen
			}
			if s.chassis != "" {
				m.ChassisID = s.chassis
			}
		}
		m.Learned = learned
		if !m.Manual {
			m.Connections = learned
		}
		ch := change{m: m, create: !exists, wiring: !slices.Equal(old.Connections, m.Connections)}
		if exists {
			ch.old = &old
		}
		if ch.create || ch.wiring || !slices.Equal(old.Learned, m.Learned) || !old.LastSeen.Equal(m.LastSeen) || old.ChassisID != m.ChassisID {
			changes = append(changes, ch)
			wiring = wiring || ch.wiring
		}
	}
	var rev uint64
	if wiring {
		if rev, err = bump(); err != nil {
			return false, err
		}
	}
	for _, ch := range changes {
		m := ch.m
		if ch.delete {
			inv.log.Info("machine is a device, removed", "machine", m.Name)
			if err := t.deleteMachine(*ch.old); err != nil {
				return false, err
			}
			continue
		}
		if ch.wiring && m.Allocation != nil {
			m.Revision = rev
		}
		if ch.create {
			inv.log.Info("machine discovered", "machine", m.Name, "chassis_id", m.ChassisID, "connections", len(m.Connections))
		} else if ch.wiring {
			inv.log.Info("machine wiring changed", "machine", m.Name, "connections", len(m.Connections), "allocated", m.Allocation != nil)
		}
		if err := t.putMachine(ch.old, m); err != nil {
			return false, err
		}
	}
	return wiring, nil
}

func compareConn(a, b model.Connection) int {
	return cmp.Or(cmp.Compare(a.Device, b.Device), cmp.Compare(a.Port, b.Port))
}

// neighborTables returns every stored neighbour table by hostname.
func (t txn) neighborTables() (map[string][]model.Neighbor, error) {
	kvs, err := t.tx.List(bucketNeighbors, "")
	if err != nil {
		return nil, err
	}
	out := make(map[string][]model.Neighbor, len(kvs))
	for _, kv := range kvs {
		var nbrs []model.Neighbor
		if err := json.Unmarshal(kv.Value, &nbrs); err != nil {
			return nil, fmt.Errorf("decoding %s/%s: %w", bucketNeighbors, kv.Key, err)
		}
		out[kv.Key] = nbrs
	}
	return out, nil
}

// Device returns one device with its desired version and neighbours.
func (inv *Inventory) Device(ctx context.Context, hostname string) (DeviceInfo, error) {
	if err := validHostname(hostname); err != nil {
		return DeviceInfo{}, fmt.Errorf("reading device: %w", err)
	}
	var out DeviceInfo
	err := inv.st.View(ctx, func(tx store.Tx) error {
		t := txn{tx: tx}
		d, err := t.device(hostname)
		if err != nil {
			return err
		}
		out = DeviceInfo{Device: d}
		var cfg model.DeviceConfig
		if err := t.get(bucketConfigs, hostname, &cfg); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		out.DesiredVersion = cfg.Version
		if err := t.get(bucketNeighbors, hostname, &out.Neighbors); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return DeviceInfo{}, fmt.Errorf("reading device %s: %w", hostname, err)
	}
	return out, nil
}

// Network returns one network with its number of allocated machines.
func (inv *Inventory) Network(ctx context.Context, name string) (NetworkInfo, error) {
	if err := validName("network", name); err != nil {
		return NetworkInfo{}, fmt.Errorf("reading network: %w", err)
	}
	var out NetworkInfo
	err := inv.st.View(ctx, func(tx store.Tx) error {
		t := txn{tx: tx}
		n, err := t.network(name)
		if err != nil {
			return err
		}
		machines, err := list[model.Machine](t, bucketMachines)
		if err != nil {
			return err
		}
		out = NetworkInfo{Network: n}
		for _, m := range machines {
			if m.Allocation != nil && m.Allocation.Network == name {
				out.Allocated++
			}
		}
		return nil
	})
	if err != nil {
		return NetworkInfo{}, fmt.Errorf("reading network %s: %w", name, err)
	}
	return out, nil
}

// SetCablingPlan replaces a device's cabling plan; an empty plan removes
// it. Every planned port must be one the device reported. Plans are not
// part of any desired config, so the revision is not bumped.
func (inv *Inventory) SetCablingPlan(ctx context.Context, device string, ports []model.PlannedPort) (model.CablingPlan, error) {
	if err := validHostname(device); err != nil {
		return model.CablingPlan{}, fmt.Errorf("setting cabling plan: %w", err)
	}
	plan := model.CablingPlan{Device: device, Ports: slices.Clone(ports)}
	slices.SortFunc(plan.Ports, func(a, b model.PlannedPort) int { return cmp.Compare(a.Port, b.Port) })
	for i, p := range plan.Ports {
		if err := validPortName(p.Port); err != nil {
			return model.CablingPlan{}, fmt.Errorf("setting cabling plan of %s: %w", device, err)
		}
		if p.Neighbor == "" || len(p.Neighbor) > 255 {
			return model.CablingPlan{}, fmt.Errorf("setting cabling plan of %s: %w", device, errorf(ErrInvalid, "port %s: expected neighbour must be 1-255 bytes", p.Port))
		}
		if i > 0 && plan.Ports[i-1].Port == p.Port {
			return model.CablingPlan{}, fmt.Errorf("setting cabling plan of %s: %w", device, errorf(ErrInvalid, "port %s is planned twice", p.Port))
		}
	}
	err := inv.st.Update(ctx, func(tx store.Tx) error {
		t := txn{tx: tx}
		d, err := t.device(device)
		if err != nil {
			return err
		}
		for _, p := range plan.Ports {
			if !d.HasPort(p.Port) {
				return errorf(ErrNotFound, "device %s did not report a port %s", device, p.Port)
			}
		}
		if len(plan.Ports) == 0 {
			return t.tx.Delete(bucketPlans, device)
		}
		return t.put(bucketPlans, device, plan)
	})
	if err != nil {
		return model.CablingPlan{}, fmt.Errorf("setting cabling plan of %s: %w", device, err)
	}
	inv.log.Info("cabling plan set", "device", device, "ports", len(plan.Ports))
	return plan, nil
}

// Findings compares every cabling plan with the neighbour tables: a
// planned port without neighbour is "missing", one whose neighbours do not
// include the expected name (system name or chassis id, case insensitive)
// is a "mismatch", and a port with neighbours but no plan entry on a device
// that has a plan is "unplanned". Sorted by device, then port.
func (inv *Inventory) Findings(ctx context.Context) ([]model.Finding, error) {
	var out []model.Finding
	err := inv.st.View(ctx, func(tx store.Tx) error {
		t := txn{tx: tx}
		plans, err := list[model.CablingPlan](t, bucketPlans)
		if err != nil {
			return err
		}
		tables, err := t.neighborTables()
		if err != nil {
			return err
		}
		out = nil
		for _, plan := range plans {
			seen := make(map[string][]model.Neighbor)
			for _, n := range tables[plan.Device] {
				seen[n.Port] = append(seen[n.Port], n)
			}
			planned := make(map[string]bool, len(plan.Ports))
			for _, p := range plan.Ports {
				planned[p.Port] = true
				nbrs := seen[p.Port]
				if len(nbrs) == 0 {
					out = append(out, model.Finding{Device: plan.Device, Port: p.Port, Kind: model.FindingMissing, Expected: p.Neighbor})
					continue
				}
				match := slices.ContainsFunc(nbrs, func(n model.Neighbor) bool {
					return strings.EqualFold(n.SystemName, p.Neighbor) || strings.EqualFold(n.ChassisID, p.Neighbor)
				})
				if !match {
					out = append(out, model.Finding{Device: plan.Device, Port: p.Port, Kind: model.FindingMismatch, Expected: p.Neighbor, Actual: identities(nbrs)})
				}
			}
			for port, nbrs := range seen {
				if !planned[port] {
					out = append(out, model.Finding{Device: plan.Device, Port: port, Kind: model.FindingUnplanned, Actual: identities(nbrs)})
				}
			}
		}
		slices.SortFunc(out, func(a, b model.Finding) int {
			return cmp.Or(cmp.Compare(a.Device, b.Device), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Kind, b.Kind))
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing findings: %w", err)
	}
	return out, nil
}

func identities(nbrs []model.Neighbor) string {
	ids := make([]string, 0, len(nbrs))
	for _, n := range nbrs {
		ids = append(ids, n.Identity())
	}
	slices.Sort(ids)
	return strings.Join(slices.Compact(ids), ",")
}

// ASNRange returns the pool device AS numbers come from.
func (inv *Inventory) ASNRange() ipam.ASNRange { return inv.asns }
