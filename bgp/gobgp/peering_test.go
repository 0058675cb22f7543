package gobgp

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/metalfabric/fabric/bgp"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// twoSpeakers starts speakers a (AS 65001) and b (AS 65002) in two
// namespaces joined by a veth (a: "eth-a", b: "eth-b").
func twoSpeakers(t *testing.T, multipath bool) (a, b *remote, nsA, nsB string) {
	t.Helper()
	requireRoot(t)
	nsA, nsB = newNetns(t), newNetns(t)
	veth(t, nsA, "eth-a", nsB, "eth-b")
	a, b = startRemote(t, "a", nsA), startRemote(t, "b", nsB)
	a.must(helperReq{Op: "start", Global: bgp.Global{ASN: 65001, RouterID: addr("10.255.0.1"), Multipath: multipath, GracefulRestart: 30 * time.Second}})
	b.must(helperReq{Op: "start", Global: bgp.Global{ASN: 65002, RouterID: addr("10.255.0.2"), Multipath: multipath}})
	return a, b, nsA, nsB
}

func diffTable(want map[string]bgp.Update, r *remote) func() (bool, string) {
	return func() (bool, string) {
		d := cmp.Diff(want, r.table(), pathOpts)
		return d == "", fmt.Sprintf("%s table (-want +got):\n%s", r.name, d)
	}
}

func upd(f bgp.Family, p string, paths ...bgp.Path) bgp.Update {
	return bgp.Update{Family: f, Prefix: pfx(p), Paths: paths}
}

func withUpdates(us ...bgp.Update) map[string]bgp.Update {
	m := map[string]bgp.Update{}
	for _, u := range us {
		m[updateKey(u)] = u
	}
	return m
}

// TestNumberedTwoSpeakers: two of our speakers over a numbered /31, routes in
// both directions, then a withdrawal.
func TestNumberedTwoSpeakers(t *testing.T) {
	a, b, nsA, nsB := twoSpeakers(t, true)
	nsRun(t, nsA, "ip", "addr", "add", "10.0.0.0/31", "dev", "eth-a")
	nsRun(t, nsB, "ip", "addr", "add", "10.0.0.1/31", "dev", "eth-b")
	a.must(helperReq{Op: "addpeer", Peer: bgp.Peer{Address: addr("10.0.0.1"), ASN: 65002}})
	b.must(helperReq{Op: "addpeer", Peer: bgp.Peer{Address: addr("10.0.0.0")}}) // any external AS
	a.must(helperReq{Op: "advertise", Paths: []bgp.Path{{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.1/32")}}})
	b.must(helperReq{Op: "advertise", Paths: []bgp.Path{{Family: bgp.IPv4Unicast, Prefix: pfx("10.2.0.0/24")}}})

	st := a.waitEstablished(bgp.PeerKey{Name: "10.0.0.1"}, 20*time.Second)
	if st.ASN != 65002 || st.Address != "10.0.0.1" {
		t.Errorf("peer state of a: %+v", st)
	}
	if st := b.waitEstablished(bgp.PeerKey{Name: "10.0.0.0"}, 10*time.Second); st.ASN != 65001 {
		t.Errorf("b learnt peer AS %d, want 65001 (remote-as external)", st.ASN)
	}
	localA := bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.1/32"), NextHop: addr("0.0.0.0"), Local: true}
	localB := bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx("10.2.0.0/24"), NextHop: addr("0.0.0.0"), Local: true}
	waitFor(t, 15*time.Second, "routes on a", diffTable(withUpdates(
		upd(bgp.IPv4Unicast, "10.1.0.1/32", localA),
		upd(bgp.IPv4Unicast, "10.2.0.0/24", bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx("10.2.0.0/24"), NextHop: addr("10.0.0.1"), ASPath: []uint32{65002}, Peer: bgp.PeerKey{Name: "10.0.0.1"}}),
	), a))
	waitFor(t, 15*time.Second, "routes on b", diffTable(withUpdates(
		upd(bgp.IPv4Unicast, "10.2.0.0/24", localB),
		upd(bgp.IPv4Unicast, "10.1.0.1/32", bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.1/32"), NextHop: addr("10.0.0.0"), ASPath: []uint32{65001}, Peer: bgp.PeerKey{Name: "10.0.0.0"}}),
	), b))

	a.must(helperReq{Op: "withdraw", Paths: []bgp.Path{{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.1/32")}}})
	waitFor(t, 15*time.Second, "withdrawal on b", diffTable(withUpdates(upd(bgp.IPv4Unicast, "10.2.0.0/24", localB)), b))
	if st, _ := b.peer(bgp.PeerKey{Name: "10.0.0.0"}); st.Families[0].Received != 0 {
		t.Errorf("b counters after withdrawal: %+v", st.Families)
	}
}

// TestUnnumberedTwoSpeakers: two of our speakers over IPv6 link-local only
// (no IPv4 address on the link), IPv4 routes with IPv6 next hops (RFC 5549).
func TestUnnumberedTwoSpeakers(t *testing.T) {
	a, b, nsA, nsB := twoSpeakers(t, true)
	a.must(helperReq{Op: "addpeer", Peer: bgp.Peer{Interface: "eth-a"}})
	// b listens, as a spine does towards its leaves: a dials.
	b.must(helperReq{Op: "addpeer", Peer: bgp.Peer{Interface: "eth-b", Passive: true}})
	a.must(helperReq{Op: "advertise", Paths: []bgp.Path{{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.1/32")}}})
	b.must(helperReq{Op: "advertise", Paths: []bgp.Path{{Family: bgp.IPv4Unicast, Prefix: pfx("10.2.0.1/32")}}})

	llA, llB := linkLocal(t, nsA, "eth-a"), linkLocal(t, nsB, "eth-b")
	st := a.waitEstablished(bgp.PeerKey{Name: "eth-a"}, 20*time.Second)
	if st.Address != llB.String() || st.ASN != 65002 {
		t.Errorf("a's peer: %+v, want address %s AS 65002", st, llB)
	}
	b.waitEstablished(bgp.PeerKey{Name: "eth-b"}, 10*time.Second)
	waitFor(t, 15*time.Second, "route on a", diffTable(withUpdates(
		upd(bgp.IPv4Unicast, "10.1.0.1/32", bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.1/32"), NextHop: addr("0.0.0.0"), Local: true}),
		upd(bgp.IPv4Unicast, "10.2.0.1/32", bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx("10.2.0.1/32"), NextHop: llB, Interface: "eth-a", ASPath: []uint32{65002}, Peer: bgp.PeerKey{Name: "eth-a"}}),
	), a))
	waitFor(t, 15*time.Second, "route on b", diffTable(withUpdates(
		upd(bgp.IPv4Unicast, "10.2.0.1/32", bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx("10.2.0.1/32"), NextHop: addr("0.0.0.0"), Local: true}),
		upd(bgp.IPv4Unicast, "10.1.0.1/32", bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.1/32"), NextHop: llA, Interface: "eth-b", ASPath: []uint32{65001}, Peer: bgp.PeerKey{Name: "eth-b"}}),
	), b))
}

// linkLocal returns the IPv6 link-local address of dev in ns.
func linkLocal(t *testing.T, ns, dev string) netip.Addr {
	t.Helper()
	var ll netip.Addr
	waitFor(t, 5*time.Second, "link-local address of "+dev, func() (bool, string) {
		out := nsRun(t, ns, "ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "link")
		for _, f := range splitFields(out) {
			if p, err := netip.ParsePrefix(f); err == nil && p.Addr().IsLinkLocalUnicast() {
				ll = p.Addr()
				return true, ""
			}
		}
		return false, out
	})
	return ll
}

func splitFields(s string) []string {
	var out []string
	f := ""
	for _, r := range s {
		if r == ' ' || r == '\n' || r == '\t' {
			if f != "" {
				out = append(out, f)
			}
			f = ""
			continue
		}
		f += string(r)
	}
	if f != "" {
		out = append(out, f)
	}
	return out
}

// TestAllowance: b may only send prefixes inside 10.2.0.0/24 (equal or
// longer) and 2001:db8:2::/48. A default route, a prefix outside the
// allowance and a more specific of another prefix are rejected and counted;
// widening the allowance with UpdatePeer accepts them without a reset.
func TestAllowance(t *testing.T) {
	a, b, nsA, nsB := twoSpeakers(t, true)
	nsRun(t, nsA, "ip", "addr", "add", "10.0.0.0/31", "dev", "eth-a")
	nsRun(t, nsB, "ip", "addr", "add", "10.0.0.1/31", "dev", "eth-b")
	peer := bgp.Peer{Address: addr("10.0.0.1"), ASN: 65002, Allowed: []netip.Prefix{pfx("10.2.0.0/24"), pfx("2001:db8:2::/48")}, MaxPrefixes: 100}
	a.must(helperReq{Op: "addpeer", Peer: peer})
	b.must(helperReq{Op: "addpeer", Peer: bgp.Peer{Address: addr("10.0.0.0"), ASN: 65001}})
	var sent []bgp.Path
	for _, p := range []string{"10.2.0.0/24", "10.2.0.7/32", "0.0.0.0/0", "10.3.0.0/24", "10.9.9.0/25", "10.2.0.0/23"} {
		sent = append(sent, bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx(p)})
	}
	b.must(helperReq{Op: "advertise", Paths: sent})
	k := bgp.PeerKey{Name: "10.0.0.1"}
	a.waitEstablished(k, 20*time.Second)
	got := func(p string) bgp.Path {
		return bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx(p), NextHop: addr("10.0.0.1"), ASPath: []uint32{65002}, Peer: k}
	}
	waitFor(t, 15*time.Second, "allowed routes only", diffTable(withUpdates(
		upd(bgp.IPv4Unicast, "10.2.0.0/24", got("10.2.0.0/24")),
		upd(bgp.IPv4Unicast, "10.2.0.7/32", got("10.2.0.7/32")),
	), a))
	wantFam := []bgp.FamilyState{{Family: bgp.IPv4Unicast, Received: 6, Accepted: 2, Rejected: 4}}
	waitFor(t, 10*time.Second, "counters", func() (bool, string) {
		st, _ := a.peer(k)
		d := cmp.Diff(wantFam, st.Families)
		return d == "", "(-want +got)\n" + d
	})

	// Widen the allowance: no session reset, the rejected paths come in.
	before, _ := a.peer(k)
	peer.Allowed = append(peer.Allowed, pfx("10.0.0.0/8"))
	a.must(helperReq{Op: "updatepeer", Peer: peer})
	waitFor(t, 15*time.Second, "widened allowance", diffTable(withUpdates(
		upd(bgp.IPv4Unicast, "10.2.0.0/24", got("10.2.0.0/24")),
		upd(bgp.IPv4Unicast, "10.2.0.7/32", got("10.2.0.7/32")),
		upd(bgp.IPv4Unicast, "10.3.0.0/24", got("10.3.0.0/24")),
		upd(bgp.IPv4Unicast, "10.9.9.0/25", got("10.9.9.0/25")),
		upd(bgp.IPv4Unicast, "10.2.0.0/23", got("10.2.0.0/23")),
	), a))
	after, _ := a.peer(k)
	if after.State != bgp.StateEstablished || after.Uptime < before.Uptime {
		t.Errorf("session was reset by UpdatePeer: before %+v after %+v", before, after)
	}
	if d := cmp.Diff([]bgp.FamilyState{{Family: bgp.IPv4Unicast, Received: 6, Accepted: 5, Rejected: 1}}, after.Families); d != "" {
		t.Errorf("counters after widening (-want +got):\n%s", d)
	}
}

// TestEVPNType5TwoSpeakers: a originates a type-5 route; b receives it with
// RD, route target, router MAC, VNI and the VTEP as next hop. The session
// is unnumbered with l2vpn-evpn next to ipv4-unicast.
func TestEVPNType5TwoSpeakers(t *testing.T) {
	a, b, _, _ := twoSpeakers(t, true)
	fams := []bgp.Family{bgp.IPv4Unicast, bgp.EVPN}
	a.must(helperReq{Op: "addpeer", Peer: bgp.Peer{Interface: "eth-a", Families: fams}})
	b.must(helperReq{Op: "addpeer", Peer: bgp.Peer{Interface: "eth-b", Families: fams}})
	mac, _ := net.ParseMAC("02:aa:bb:cc:dd:01")
	t5 := bgp.Path{
		Family:  bgp.EVPN,
		Prefix:  pfx("192.168.10.0/24"),
		NextHop: addr("10.255.0.1"),
		// bgp.RD(router ID, 100010) would not fit a type-1 RD (16-bit
		// assigned number): see TestParseRD.
		RD:           "10.255.0.1:10",
		RouteTargets: []string{bgp.RT(4200000001, 100010)},
		RouterMAC:    mac,
		VNI:          100010,
	}
	a.must(helperReq{Op: "advertise", Paths: []bgp.Path{t5}})
	b.waitEstablished(bgp.PeerKey{Name: "eth-b"}, 20*time.Second)
	want := t5
	want.ASPath = []uint32{65001}
	want.Peer = bgp.PeerKey{Name: "eth-b"}
	waitFor(t, 15*time.Second, "type-5 on b", diffTable(withUpdates(
		bgp.Update{Family: bgp.EVPN, RD: t5.RD, Prefix: t5.Prefix, Paths: []bgp.Path{want}},
	), b))
	a.must(helperReq{Op: "withdraw", Paths: []bgp.Path{t5}})
	waitFor(t, 15*time.Second, "type-5 withdrawn on b", diffTable(withUpdates(), b))
}
