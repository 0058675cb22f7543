package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/metalfabric/fabric/controlplane/compile"
	"github.com/metalfabric/fabric/controlplane/model"
	"github.com/metalfabric/fabric/controlplane/store"
)

// This file holds the numbered underlay: the /31 of every fabric link.
//
// In numbered mode (WithUnderlay(UnderlayNumbered)) every fabric link, a
// session between two registered devices as compile.Sessions derives it
// from a device's neighbour table, gets a /31 from the link pool, stored in
// bucketLinks under the link's name (its two device:port ends, in order,
// so both ends find the same record). It is allocated when one end's
// config is compiled with the session and kept while either end's
// neighbour table still shows the link, so it survives recompiles,
// controller restarts and an agent restart (whose neighbours keep the link
// in their tables). It is freed in the transaction that compiles an end of
// the link once neither end's table shows it any more (a recabling, a
// port gone for longer than the LLDP TTL): both ends' configs then have no
// session on it, and a link that comes back gets the lowest free /31,
// usually the same one. Which end gets which address is compile.Number's
// rule (the end that dials the lower one).

// UnderlayMode says how underlay sessions are addressed.
type UnderlayMode string

// Underlay modes.
const (
	// UnderlayUnnumbered: eBGP over IPv6 link-local addresses (RFC 5549),
	// no addresses on the fabric ports (the default).
	UnderlayUnnumbered UnderlayMode = "unnumbered"
	// UnderlayNumbered: every fabric link gets a /31 from the link pool.
	UnderlayNumbered UnderlayMode = "numbered"
)

// ParseUnderlayMode parses "unnumbered" or "numbered".
func ParseUnderlayMode(s string) (UnderlayMode, error) {
	switch m := UnderlayMode(s); m {
	case UnderlayUnnumbered, UnderlayNumbered:
		return m, nil
	}
	return "", fmt.Errorf("underlay mode %q is not one of unnumbered, numbered", s)
}

// DefaultLinkPool is where the /31s of a numbered underlay come from unless
// WithLinkPool says otherwise. It does not overlap DefaultLoopbackPool.
var DefaultLinkPool = netip.MustParsePrefix("10.254.0.0/16")

// WithUnderlay sets the underlay mode (default UnderlayUnnumbered).
func WithUnderlay(m UnderlayMode) Option { return func(i *Inventory) { i.underlay = m } }

// WithLinkPool sets the IPv4 prefix the /31s of fabric links are allocated
// from in numbered mode. It must not overlap the loopback pool, and tenant
// networks must not overlap it.
func WithLinkPool(p netip.Prefix) Option { return func(i *Inventory) { i.linkPool = p } }

// validUnderlay checks the underlay options.
func (inv *Inventory) validUnderlay() error {
	if _, err := ParseUnderlayMode(string(inv.underlay)); err != nil {
		return err
	}
	if inv.underlay != UnderlayNumbered {
		return nil
	}
	p := inv.linkPool
	if !p.IsValid() || p != p.Masked() || !p.Addr().Is4() || p.Bits() > 31 {
		return fmt.Errorf("underlay link pool %s is not an IPv4 network prefix of length /31 or shorter", p)
	}
	if p.Overlaps(inv.loopbacks) {
		return fmt.Errorf("underlay link pool %s overlaps the loopback pool %s", p, inv.loopbacks)
	}
	return nil
}

func (inv *Inventory) numbered() bool { return inv.underlay == UnderlayNumbered }

// bucketLinks holds the numbered links: link name (compile.Link.String)
// -> linkRecord. keyUnderlay in the meta bucket the underlay settings the
// stored configs were compiled with.
const (
	bucketLinks = "links"
	keyUnderlay = "underlay"
)

type linkRecord struct {
	Link   compile.Link `json:"link"`
	Prefix netip.Prefix `json:"prefix"`
}

// underlaySettings is what keyUnderlay records.
type underlaySettings struct {
	Mode UnderlayMode `json:"mode"`
	Pool netip.Prefix `json:"pool,omitzero"`
}

func (inv *Inventory) settings() underlaySettings {
	s := underlaySettings{Mode: inv.underlay}
	if inv.numbered() {
		s.Pool = inv.linkPool
	}
	return s
}

// ensureUnderlay recompiles every device when the stored configs were
// compiled with other underlay settings (a controller restarted with
// another mode or pool): every underlay session changes.
func (inv *Inventory) ensureUnderlay(t txn, bump func() (uint64, error)) error {
	var old underlaySettings
	err := t.get(bucketMeta, keyUnderlay, &old)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("reading underlay settings: %w", err)
	}
	cur := inv.settings()
	if errors.Is(err, store.ErrNotFound) {
		old = underlaySettings{Mode: UnderlayUnnumbered} // what stores before this setting hold
	}
	if old == cur {
		if errors.Is(err, store.ErrNotFound) {
			return t.put(bucketMeta, keyUnderlay, cur)
		}
		return nil
	}
	if _, err := bump(); err != nil {
		return err
	}
	devs, err := list[model.Device](t, bucketDevices)
	if err != nil {
		return err
	}
	for _, d := range devs {
		t.touch(d.Hostname)
	}
	inv.log.Info("underlay settings changed, recompiling every device", "mode", cur.Mode, "pool", cur.Pool, "devices", len(devs))
	return t.put(bucketMeta, keyUnderlay, cur)
}

// links is the numbered links of one transaction, read once.
type links struct {
	t    txn
	pool netip.Prefix
	nets map[compile.Link]netip.Prefix
	used map[netip.Prefix]compile.Link
}

func (t txn) loadLinks(pool netip.Prefix) (*links, error) {
	recs, err := list[linkRecord](t, bucketLinks)
	if err != nil {
		return nil, fmt.Errorf("reading link addresses: %w", err)
	}
	l := &links{t: t, pool: pool, nets: make(map[compile.Link]netip.Prefix, len(recs)), used: make(map[netip.Prefix]compile.Link, len(recs))}
	for _, r := range recs {
		l.nets[r.Link] = r.Prefix
		l.used[r.Prefix] = r.Link
	}
	return l, nil
}

// number gives every complete link of ss a /31 (the stored one when it
// lies in the pool, else the lowest free one) and frees the stored links
// of self that neither self's sessions (ss) nor the other end's neighbour
// table show any more. It returns the devices at the other end of links
// it allocated or moved: their configs must be recompiled too.
func (l *links) number(self model.Device, ss []compile.Session, sessionsOf func(host string) ([]compile.Session, error)) ([]string, error) {
	var others []string
	mine := make(map[compile.Link]bool, len(ss))
	for _, s := range ss {
		mine[s.Link] = true
		if !s.Link.Complete() {
			continue
		}
		if p, ok := l.nets[s.Link]; ok && l.pool.Contains(p.Addr()) {
			continue
		}
		p, err := l.next()
		if err != nil {
			return nil, err
		}
		if old, ok := l.nets[s.Link]; ok {
			delete(l.used, old)
		}
		l.nets[s.Link], l.used[p] = p, s.Link
		if err := l.t.put(bucketLinks, s.Link.String(), linkRecord{Link: s.Link, Prefix: p}); err != nil {
			return nil, err
		}
		others = append(others, s.Peer)
	}
	for _, link := range slices.SortedFunc(maps.Keys(l.nets), func(a, b compile.Link) int { return strings.Compare(a.String(), b.String()) }) {
		if mine[link] || !link.Has(self.Hostname) {
			continue
		}
		other := link.A.Device
		if other == strings.ToLower(self.Hostname) {
			other = link.B.Device
		}
		theirs, err := sessionsOf(other)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(theirs, func(s compile.Session) bool { return s.Link == link }) {
			continue
		}
		if err := l.t.tx.Delete(bucketLinks, link.String()); err != nil {
			return nil, err
		}
		delete(l.used, l.nets[link])
		delete(l.nets, link)
	}
	return others, nil
}

// next returns the lowest /31 of the pool no link holds.
func (l *links) next() (netip.Prefix, error) {
	for a := l.pool.Addr(); a.IsValid() && l.pool.Contains(a); a = a.Next().Next() {
		p := netip.PrefixFrom(a, 31)
		if _, ok := l.used[p]; !ok {
			return p, nil
		}
	}
	return netip.Prefix{}, errorf(ErrExhausted, "no free /31 left in the underlay link pool %s", l.pool)
}

// LinkNets returns the /31 of every numbered fabric link (none in
// unnumbered mode unless an earlier numbered run left some).
func (inv *Inventory) LinkNets(ctx context.Context) (map[compile.Link]netip.Prefix, error) {
	var out map[compile.Link]netip.Prefix
	err := inv.st.View(ctx, func(tx store.Tx) error {
		kvs, err := tx.List(bucketLinks, "")
		if err != nil {
			return err
		}
		out = make(map[compile.Link]netip.Prefix, len(kvs))
		for _, kv := range kvs {
			var r linkRecord
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				return fmt.Errorf("decoding %s/%s: %w", bucketLinks, kv.Key, err)
			}
			out[r.Link] = r.Prefix
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading link addresses: %w", err)
	}
	return out, nil
}

// Underlay returns the underlay mode and, in numbered mode, the link pool.
func (inv *Inventory) Underlay() (UnderlayMode, netip.Prefix) {
	return inv.underlay, inv.settings().Pool
}
