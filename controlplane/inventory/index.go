package inventory

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/metalfabric/fabric/controlplane/compile"
	"github.com/metalfabric/fabric/controlplane/model"
	"github.com/metalfabric/fabric/controlplane/store"
)

// Indexes. They are derived from the records and written in the same
// transaction as the records they derive from, so they are exactly as
// durable: a crash loses both or neither. They let a mutation touch only
// what it changes instead of reading every machine:
//
//   - bucketIPs: "<network>/<ip>" -> machine name, one key per allocated
//     address;
//   - bucketIPHints: network -> an address below which every host address
//     of the network outside its children is allocated (absent: the start
//     of the prefix), where the search for a free address starts;
//   - bucketChildren: "<parent>/<child>" -> the child's prefix;
//   - bucketAttachments: "<device>/<machine>" -> model.Attachment, what an
//     allocated machine contributes to the device's config.
//
// A store written before the indexes existed has no keyIndexes in the meta
// bucket, one written with an older layout an older indexVersion; the first
// mutation (re)builds them (ensureIndexes).
//
// Index versions: 1 the first layout; 2 attachments carry the machine's
// allowance (model.Attachment.Allowed), which version 1 entries lack.
const (
	bucketIPs         = "ips"
	bucketIPHints     = "iphints"
	bucketChildren    = "children"
	bucketAttachments = "attachments"
	keyIndexes        = "indexes"
	indexVersion      = 2
)

func ipKey(network string, ip netip.Addr) string { return network + "/" + ip.String() }

// ensureIndexes builds the indexes from the records when the store has
// none yet.
func (t txn) ensureIndexes() error {
	var v int
	err := t.get(bucketMeta, keyIndexes, &v)
	if err == nil && v == indexVersion {
		return nil
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("reading index version: %w", err)
	}
	if err := t.rebuildIndexes(); err != nil {
		return fmt.Errorf("building indexes: %w", err)
	}
	return t.put(bucketMeta, keyIndexes, indexVersion)
}

func (t txn) rebuildIndexes() error {
	for _, b := range []string{bucketIPs, bucketIPHints, bucketChildren, bucketAttachments} {
		kvs, err := t.tx.List(b, "")
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			if err := t.tx.Delete(b, kv.Key); err != nil {
				return err
			}
		}
	}
	nets, err := list[model.Network](t, bucketNetworks)
	if err != nil {
		return err
	}
	for _, n := range nets {
		if n.Parent != "" {
			if err := t.tx.Put(bucketChildren, n.Parent+"/"+n.Name, []byte(n.Prefix.String())); err != nil {
				return err
			}
		}
	}
	machines, err := list[model.Machine](t, bucketMachines)
	if err != nil {
		return err
	}
	for _, m := range machines {
		if err := t.indexMachine(nil, &m); err != nil {
			return err
		}
	}
	return nil
}

// touch marks a device whose config must be recompiled.
func (t txn) touch(device string) {
	if t.touched != nil {
		t.touched[device] = true
	}
}

// putMachine stores m, whose stored record was old (nil when new), and
// updates the indexes.
func (t txn) putMachine(old *model.Machine, m model.Machine) error {
	if err := t.put(bucketMachines, m.Name, m); err != nil {
		return err
	}
	return t.indexMachine(old, &m)
}

// deleteMachine deletes the stored machine old and its index entries.
func (t txn) deleteMachine(old model.Machine) error {
	if err := t.tx.Delete(bucketMachines, old.Name); err != nil {
		return err
	}
	return t.indexMachine(&old, nil)
}

// indexMachine moves a machine's index entries from old to m (either may
// be nil) and marks the devices whose attachments changed.
func (t txn) indexMachine(old, m *model.Machine) error {
	var oldA, newA *model.Allocation
	var oldAtt, newAtt []compile.DeviceAttachment
	if old != nil {
		oldA, oldAtt = old.Allocation, compile.Attachments(*old)
	}
	if m != nil {
		newA, newAtt = m.Allocation, compile.Attachments(*m)
	}
	if oldA != nil && (newA == nil || oldA.Network != newA.Network || oldA.IP != newA.IP) {
		if err := t.tx.Delete(bucketIPs, ipKey(oldA.Network, oldA.IP)); err != nil {
			return err
		}
		if err := t.lowerHint(oldA.Network, oldA.IP); err != nil {
			return err
		}
	}
	if newA != nil {
		if err := t.tx.Put(bucketIPs, ipKey(newA.Network, newA.IP), []byte(m.Name)); err != nil {
			return err
		}
	}
	if reflect.DeepEqual(oldAtt, newAtt) {
		return nil
	}
	for _, a := range oldAtt {
		if !slices.ContainsFunc(newAtt, func(b compile.DeviceAttachment) bool { return b.Device == a.Device }) {
			if err := t.tx.Delete(bucketAttachments, a.Device+"/"+a.Machine); err != nil {
				return err
			}
		}
		t.touch(a.Device)
	}
	for _, a := range newAtt {
		if err := t.put(bucketAttachments, a.Device+"/"+a.Machine, a.Attachment); err != nil {
			return err
		}
		t.touch(a.Device)
	}
	return nil
}

// ipHint returns where the search for a free address of network starts
// (invalid: at the start of its prefix).
func (t txn) ipHint(network string) (netip.Addr, error) {
	b, err := t.tx.Get(bucketIPHints, network)
	if errors.Is(err, store.ErrNotFound) {
		return netip.Addr{}, nil
	}
	if err != nil {
		return netip.Addr{}, err
	}
	a, err := netip.ParseAddr(string(b))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("decoding %s/%s: %w", bucketIPHints, network, err)
	}
	return a, nil
}

func (t txn) setHint(network string, a netip.Addr) error {
	return t.tx.Put(bucketIPHints, network, []byte(a.String()))
}

// lowerHint moves network's hint down to a, an address that became free.
func (t txn) lowerHint(network string, a netip.Addr) error {
	h, err := t.ipHint(network)
	if err != nil || !h.IsValid() || !a.Less(h) {
		return err
	}
	return t.setHint(network, a)
}

// ipUsed reports whether ip is allocated in network.
func (t txn) ipUsed(network string, ip netip.Addr) (bool, error) {
	_, err := t.tx.Get(bucketIPs, ipKey(network, ip))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// allocations returns the machines allocated in network by address.
func (t txn) allocations(network string) (map[netip.Addr]string, error) {
	kvs, err := t.tx.List(bucketIPs, network+"/")
	if err != nil {
		return nil, err
	}
	out := make(map[netip.Addr]string, len(kvs))
	for _, kv := range kvs {
		ip, err := netip.ParseAddr(strings.TrimPrefix(kv.Key, network+"/"))
		if err != nil {
			return nil, fmt.Errorf("decoding %s/%s: %w", bucketIPs, kv.Key, err)
		}
		out[ip] = string(kv.Value)
	}
	return out, nil
}

// children returns the networks whose parent is name (name and prefix
// only), sorted by name.
func (t txn) children(name string) ([]model.Network, error) {
	kvs, err := t.tx.List(bucketChildren, name+"/")
	if err != nil {
		return nil, err
	}
	out := make([]model.Network, 0, len(kvs))
	for _, kv := range kvs {
		p, err := netip.ParsePrefix(string(kv.Value))
		if err != nil {
			return nil, fmt.Errorf("decoding %s/%s: %w", bucketChildren, kv.Key, err)
		}
		out = append(out, model.Network{Name: strings.TrimPrefix(kv.Key, name+"/"), Prefix: p, Parent: name})
	}
	return out, nil
}

// childPrefixes returns the prefixes of name's children.
func (t txn) childPrefixes(name string) ([]netip.Prefix, error) {
	kids, err := t.children(name)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, 0, len(kids))
	for _, k := range kids {
		out = append(out, k.Prefix)
	}
	return out, nil
}

// allocatedIPs returns the machine addresses allocated in network name.
func (t txn) allocatedIPs(name string) ([]netip.Addr, error) {
	m, err := t.allocations(name)
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(m))
	for ip := range m {
		out = append(out, ip)
	}
	return out, nil
}

// putNetworkRecord stores a new network. No machine is allocated in it,
// so no device config changes.
func (t txn) putNetworkRecord(n model.Network) error {
	if err := t.put(bucketNetworks, n.Name, n); err != nil {
		return err
	}
	if n.Parent != "" {
		return t.tx.Put(bucketChildren, n.Parent+"/"+n.Name, []byte(n.Prefix.String()))
	}
	return nil
}

// deleteNetworkRecord deletes a network without allocations or children:
// a child's prefix becomes free in its parent again.
func (t txn) deleteNetworkRecord(n model.Network) error {
	if err := t.tx.Delete(bucketNetworks, n.Name); err != nil {
		return err
	}
	if err := t.tx.Delete(bucketIPHints, n.Name); err != nil {
		return err
	}
	if n.Parent == "" {
		return nil
	}
	if err := t.tx.Delete(bucketChildren, n.Parent+"/"+n.Name); err != nil {
		return err
	}
	return t.lowerHint(n.Parent, n.Prefix.Addr())
}

// recompile compiles the touched devices' configs and stores, with version
// rev, those that differ from what is stored. It returns the touched
// devices' configs and the changed ones. In numbered mode it allocates and
// frees the links' /31s (underlay.go); a device at the other end of a link
// whose /31 it allocated or moved is touched and compiled too.
func (t txn) recompile(rev uint64, u underlaySettings) (map[string]model.DeviceConfig, []model.DeviceConfig, error) {
	numbered := u.Mode == UnderlayNumbered
	networks := make(map[string]model.Network)
	all := make(map[string]model.DeviceConfig, len(t.touched))
	var changed []model.DeviceConfig
	var devices map[string]model.Device // by lower-case hostname, read once when needed
	loadDevices := func() error {
		if devices != nil {
			return nil
		}
		devs, err := list[model.Device](t, bucketDevices)
		if err != nil {
			return err
		}
		devices = make(map[string]model.Device, len(devs))
		for _, d := range devs {
			devices[strings.ToLower(d.Hostname)] = d
		}
		return nil
	}
	// sessionsOf compiles another device's sessions from its stored
	// neighbour table (host in lower case).
	sessionsOf := func(host string) ([]compile.Session, error) {
		d, ok := devices[host]
		if !ok {
			return nil, nil
		}
		var nbrs []model.Neighbor
		if err := t.get(bucketNeighbors, d.Hostname, &nbrs); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return compile.Sessions(d, nbrs, devices), nil
	}
	var lk *links
	done := make(map[string]bool, len(t.touched))
	for {
		var hosts []string
		for h := range t.touched {
			if !done[h] {
				hosts = append(hosts, h)
			}
		}
		if len(hosts) == 0 {
			break
		}
		slices.Sort(hosts)
		for _, h := range hosts {
			done[h] = true
			d, err := t.device(h)
			if errors.Is(err, ErrNotFound) {
				continue // connections to unknown devices are ignored
			}
			if err != nil {
				return nil, nil, fmt.Errorf("recompiling %s: %w", h, err)
			}
			cfg, err := t.compileDevice(d, networks, numbered, loadDevices, func(d model.Device, nbrs []model.Neighbor) ([]model.UnderlayPeer, error) {
				sessions := compile.Sessions(d, nbrs, devices)
				if !numbered {
					return compile.Unnumbered(sessions), nil
				}
				if lk == nil {
					var err error
					if lk, err = t.loadLinks(u.Pool); err != nil {
						return nil, err
					}
				}
				others, err := lk.number(d, sessions, sessionsOf)
				if err != nil {
					return nil, err
				}
				for _, o := range others {
					t.touch(o)
				}
				return compile.Number(sessions, lk.nets), nil
			})
			if err != nil {
				return nil, nil, fmt.Errorf("recompiling %s: %w", h, err)
			}
			var old model.DeviceConfig
			err = t.get(bucketConfigs, h, &old)
			switch {
			case err == nil && compile.Equal(old, cfg):
				all[h] = old
				continue
			case err != nil && !errors.Is(err, store.ErrNotFound):
				return nil, nil, fmt.Errorf("recompiling %s: %w", h, err)
			}
			cfg.Version = rev
			if err := t.put(bucketConfigs, h, cfg); err != nil {
				return nil, nil, fmt.Errorf("storing config of %s: %w", h, err)
			}
			all[h] = cfg
			changed = append(changed, cfg)
		}
	}
	slices.SortFunc(changed, func(a, b model.DeviceConfig) int { return strings.Compare(a.Hostname, b.Hostname) })
	return all, changed, nil
}

// compileDevice compiles one device's config from the store; underlay
// turns its neighbour table into its sessions (devices are loaded by then
// when the table is not empty or numbered is set).
func (t txn) compileDevice(d model.Device, networks map[string]model.Network, numbered bool, loadDevices func() error,
	underlay func(model.Device, []model.Neighbor) ([]model.UnderlayPeer, error)) (model.DeviceConfig, error) {
	h := d.Hostname
	atts, err := listPrefix[model.Attachment](t, bucketAttachments, h+"/")
	if err != nil {
		return model.DeviceConfig{}, err
	}
	for _, a := range atts {
		if _, ok := networks[a.Network]; ok {
			continue
		}
		n, err := t.network(a.Network)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return model.DeviceConfig{}, err
		}
		if err == nil {
			networks[a.Network] = n
		}
	}
	var nbrs []model.Neighbor
	if err := t.get(bucketNeighbors, h, &nbrs); err != nil && !errors.Is(err, store.ErrNotFound) {
		return model.DeviceConfig{}, err
	}
	// Numbered: a device whose table emptied may still hold links to free.
	if len(nbrs) > 0 || numbered {
		if err := loadDevices(); err != nil {
			return model.DeviceConfig{}, err
		}
	}
	peers, err := underlay(d, nbrs)
	if err != nil {
		return model.DeviceConfig{}, err
	}
	cfg := compile.Device(d, networks, atts, peers)
	if d.Role == model.RoleFirewall {
		pols, nets, err := t.firewallInput()
		if err != nil {
			return model.DeviceConfig{}, err
		}
		compile.Firewall(&cfg, d, pols, nets)
	}
	return cfg, nil
}
