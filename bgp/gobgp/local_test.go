package gobgp

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/metalfabric/fabric/bgp"
)

// recorder collects WatchBest batches into the current table.
type recorder struct {
	mu      sync.Mutex
	table   map[string]bgp.Update
	batches int
}

func updateKey(u bgp.Update) string {
	return string(u.Family) + "|" + u.VRF + "|" + u.RD + "|" + u.Prefix.String()
}

func (r *recorder) add(ups []bgp.Update) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.table == nil {
		r.table = map[string]bgp.Update{}
	}
	r.batches++
	for _, u := range ups {
		if len(u.Paths) == 0 {
			delete(r.table, updateKey(u))
		} else {
			r.table[updateKey(u)] = u
		}
	}
}

func (r *recorder) snapshot() map[string]bgp.Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]bgp.Update, len(r.table))
	for k, v := range r.table {
		m[k] = v
	}
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", d, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var pathOpts = cmp.Options{
	cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}),
	cmpopts.EquateEmpty(),
}

// TestLocalRIB checks origination and WatchBest of one speaker without a
// network (no listener): global, VRF and EVPN type-5 paths round-trip.
func TestLocalRIB(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := New()
	if err := s.Start(ctx, bgp.Global{ASN: 65001, RouterID: netip.MustParseAddr("10.255.0.1"), ListenPort: -1, Multipath: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	if err := s.AddVRF(ctx, bgp.VRF{Name: "red", RD: "10.255.0.1:100", ImportRTs: []string{"65001:100"}, ExportRTs: []string{"65001:100"}, ID: 100}); err != nil {
		t.Fatal(err)
	}
	var rec recorder
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go s.WatchBest(wctx, rec.add)

	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	paths := []bgp.Path{
		{Family: bgp.IPv4Unicast, Prefix: netip.MustParsePrefix("10.0.0.1/32")},
		{Family: bgp.IPv6Unicast, Prefix: netip.MustParsePrefix("2001:db8::/64")},
		{Family: bgp.IPv4Unicast, VRF: "red", Prefix: netip.MustParsePrefix("192.168.1.0/24")},
		{Family: bgp.EVPN, Prefix: netip.MustParsePrefix("192.168.1.0/24"), NextHop: netip.MustParseAddr("10.255.0.1"),
			RD: "10.255.0.1:100", RouteTargets: []string{"65001:100"}, RouterMAC: mac, VNI: 100},
	}
	if err := s.Advertise(ctx, paths); err != nil {
		t.Fatal(err)
	}
	want := map[string]bgp.Update{}
	for _, p := range paths {
		u := bgp.Update{Family: p.Family, VRF: p.VRF, RD: p.RD, Prefix: p.Prefix}
		lp := p
		lp.Local = true
		switch p.Family {
		case bgp.IPv4Unicast:
			lp.NextHop = netip.MustParseAddr("0.0.0.0")
		case bgp.IPv6Unicast:
			lp.NextHop = netip.MustParseAddr("::")
		}
		u.Paths = []bgp.Path{lp}
		want[updateKey(u)] = u
	}
	waitFor(t, 10*time.Second, "local paths", func() (bool, string) {
		d := cmp.Diff(want, rec.snapshot(), pathOpts)
		return d == "", "(-want +got)\n" + d
	})
	if err := s.Withdraw(ctx, paths[2:]); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths[2:] {
		delete(want, updateKey(bgp.Update{Family: p.Family, VRF: p.VRF, RD: p.RD, Prefix: p.Prefix}))
	}
	waitFor(t, 10*time.Second, "withdrawals", func() (bool, string) {
		d := cmp.Diff(want, rec.snapshot(), pathOpts)
		return d == "", "(-want +got)\n" + d
	})

	// A second watcher gets the current table first.
	var rec2 recorder
	go s.WatchBest(wctx, rec2.add)
	waitFor(t, 10*time.Second, "initial table", func() (bool, string) {
		d := cmp.Diff(want, rec2.snapshot(), pathOpts)
		return d == "", "(-want +got)\n" + d
	})
}
