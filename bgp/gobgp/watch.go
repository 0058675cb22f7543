package gobgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/metalfabric/fabric/bgp"
)

// coalesceWindow is how long WatchBest keeps collecting GoBGP events after
// the first one of a burst before it calls fn (bounded by maxBatchDelay).
const (
	coalesceWindow = 10 * time.Millisecond
	maxBatchDelay  = 100 * time.Millisecond
)

// WatchBest calls fn with batches of best-path changes: first the whole
// current table, then the changes. It blocks until ctx is done (returning
// nil) or the speaker stops (returning ErrNotStarted).
//
// GoBGP's best-path events carry, per destination, the best path or (with
// Global.Multipath) all equal-cost paths; a withdrawn destination comes as a
// single withdrawal. Events arriving close together are coalesced: a
// destination changed twice in a batch is reported once, with its latest
// paths. VRF paths live in GoBGP's global RIB as L3VPN paths: they are
// reported as unicast with Update.VRF set from their RD (paths with an RD of
// no VRF of ours are dropped). EVPN routes other than type-5 are dropped.
func (s *Speaker) WatchBest(ctx context.Context, fn func([]bgp.Update)) error {
	s.mu.Lock()
	if !s.started {
		s.mu.Unlock()
		return fmt.Errorf("watching best paths: %w", ErrNotStarted)
	}
	srv, stopped := s.srv, s.stopped
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := &eventQueue{signal: make(chan struct{}, 1)}
	err := srv.WatchEvent(ctx, &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true}},
	}}, func(r *api.WatchEventResponse) {
		if t := r.GetTable(); t != nil && len(t.Paths) > 0 {
			q.push(t.Paths)
		}
	})
	if err != nil {
		return fmt.Errorf("watching best paths: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-stopped:
			return fmt.Errorf("watching best paths: %w", ErrNotStarted)
		case <-q.signal:
		}
		// Coalesce a burst.
		deadline := time.After(maxBatchDelay)
	collect:
		for {
			t := time.NewTimer(coalesceWindow)
			select {
			case <-q.signal:
				t.Stop()
			case <-t.C:
				break collect
			case <-deadline:
				t.Stop()
				break collect
			case <-ctx.Done():
				t.Stop()
				return nil
			}
		}
		events := q.take()
		if ups := s.updates(events); len(ups) > 0 {
			fn(ups)
		}
	}
}

// eventQueue buffers GoBGP's events between its watcher goroutine and ours;
// GoBGP's callback must not block.
type eventQueue struct {
	mu     sync.Mutex
	events [][]*api.Path
	signal chan struct{}
}

func (q *eventQueue) push(paths []*api.Path) {
	q.mu.Lock()
	q.events = append(q.events, paths)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *eventQueue) take() [][]*api.Path {
	q.mu.Lock()
	defer q.mu.Unlock()
	ev := q.events
	q.events = nil
	return ev
}

// peerInfo is what path conversion needs to know about a peer.
type peerInfo struct {
	Key       bgp.PeerKey
	Interface string // unnumbered peers
}

// updates converts GoBGP events into coalesced updates.
func (s *Speaker) updates(events [][]*api.Path) []bgp.Update {
	s.mu.Lock()
	peers := make(map[netip.Addr]peerInfo, len(s.byAddr))
	for a, k := range s.byAddr {
		pi := peerInfo{Key: k}
		if e, ok := s.peers[k]; ok {
			pi.Interface = e.cfg.Interface
		}
		peers[a] = pi
	}
	rdToVRF := make(map[string]string, len(s.rdToVRF))
	for rd, v := range s.rdToVRF {
		rdToVRF[rd] = v
	}
	s.mu.Unlock()
	return toUpdates(events, peers, rdToVRF, func(err error) {
		s.log.Warn("decoding best path", "err", err)
	})
}

// toUpdates is the pure part of updates: it groups each event's paths by
// destination (GoBGP sends a destination's multipath set consecutively) and
// lets later events replace earlier ones for the same destination.
func toUpdates(events [][]*api.Path, peers map[netip.Addr]peerInfo, rdToVRF map[string]string, warn func(error)) []bgp.Update {
	n := 0
	for _, ev := range events {
		n += len(ev)
	}
	// out holds the updates in first-seen order; index finds a
	// destination's update in out and the event that last set it. A
	// destination repeated within one event moves to the end (its slot is
	// left dead and compacted away at the end).
	type slot struct {
		i     int
		event int
	}
	out := make([]bgp.Update, 0, n)
	dead := 0
	index := make(map[destKey]slot, n)
	var buf decodeBuf
	for e, ev := range events {
		var cur *bgp.Update
		var curKey destKey
		flush := func() {
			if cur == nil {
				return
			}
			if sl, ok := index[curKey]; ok && sl.event != e {
				out[sl.i] = *cur
				index[curKey] = slot{i: sl.i, event: e}
			} else {
				// New, or (dead slot) repeated in this event.
				index[curKey] = slot{i: len(out), event: e}
				out = append(out, *cur)
			}
			cur = nil
		}
		var u bgp.Update
		for _, ap := range ev {
			var d decoded
			var err error
			if len(ap.NlriBinary) == 0 && len(ap.PattrsBinary) == 0 {
				err = decodeWire(ap, &d, &buf)
			} else {
				d, err = decodePathNative(ap)
			}
			if errors.Is(err, errSkip) {
				continue
			}
			if err != nil {
				warn(err)
				continue
			}
			k := d.key()
			var vrf string
			if d.VPN {
				var ok bool
				if vrf, ok = rdToVRF[d.RD]; !ok {
					continue
				}
			}
			if cur == nil || k != curKey {
				flush()
				if sl, ok := index[k]; ok && sl.event == e {
					// The same destination twice in one event: the
					// later set replaces the earlier one.
					out[sl.i] = bgp.Update{}
					dead++
				}
				u = bgp.Update{Family: d.Family, Prefix: d.Prefix, VRF: vrf}
				if d.Family == bgp.EVPN && !d.VPN {
					u.RD = d.RD
				}
				cur, curKey = &u, k
			}
			if !d.Withdraw {
				cur.Paths = append(cur.Paths, toPath(d, *cur, peers))
			}
		}
		flush()
	}
	if dead > 0 {
		out = slices.DeleteFunc(out, func(u bgp.Update) bool { return u.Family == "" })
	}
	return out
}

// toPath converts a decoded path of update u.
func toPath(d decoded, u bgp.Update, peers map[netip.Addr]peerInfo) bgp.Path {
	p := bgp.Path{
		Family:  u.Family,
		VRF:     u.VRF,
		Prefix:  d.Prefix,
		NextHop: d.NextHop,
		ASPath:  d.ASPath,
		Local:   d.Local,
	}
	if pi, ok := peers[d.Neighbor]; ok && !d.Local {
		p.Peer = pi.Key
		// Over an unnumbered session the next hop is the neighbour's
		// link-local address on that link (whatever global or
		// link-local form the neighbour put in MP_REACH_NLRI).
		if pi.Interface != "" && u.Family != bgp.EVPN && !d.NextHop.Is4() {
			p.NextHop = d.Neighbor.WithZone("")
			p.Interface = pi.Interface
		}
	}
	if u.Family == bgp.EVPN {
		p.RD = d.RD
		p.RouteTargets = d.RTs
		p.RouterMAC = d.MAC
		p.VNI = d.VNI
	}
	return p
}
