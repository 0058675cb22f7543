package gobgp

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metalfabric/fabric/bgp"
)

// ourSpeakerAndFRR starts our speaker (AS 65001) in one namespace and FRR
// (AS 65002) in another, joined by veth "eth-a" (ours) / "eth-f" (FRR).
func ourSpeakerAndFRR(t *testing.T, frrConfig string) (*remote, *frr, string, string) {
	t.Helper()
	requireFRR(t)
	nsA, nsF := newNetns(t), newNetns(t)
	veth(t, nsA, "eth-a", nsF, "eth-f")
	a := startRemote(t, "a", nsA)
	a.must(helperReq{Op: "start", Global: bgp.Global{ASN: 65001, RouterID: addr("10.255.0.1"), Multipath: true}})
	return a, nil, nsA, nsF
}

// TestFRRNumbered: our speaker against FRR bgpd over a numbered /31, IPv4
// unicast routes in both directions.
func TestFRRNumbered(t *testing.T) {
	a, _, nsA, nsF := ourSpeakerAndFRR(t, "")
	nsRun(t, nsA, "ip", "addr", "add", "10.0.0.0/31", "dev", "eth-a")
	nsRun(t, nsF, "ip", "addr", "add", "10.0.0.1/31", "dev", "eth-f")
	f := startFRR(t, nsF, `frr defaults datacenter
router bgp 65002
 bgp router-id 10.255.0.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.0 remote-as external
 neighbor 10.0.0.0 timers connect 1
 address-family ipv4 unicast
  network 10.2.0.0/24
 exit-address-family
`)
	k := bgp.PeerKey{Name: "10.0.0.1"}
	a.must(helperReq{Op: "addpeer", Peer: bgp.Peer{Address: addr("10.0.0.1"), ASN: 65002}})
	a.must(helperReq{Op: "advertise", Paths: []bgp.Path{{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.1/32")}}})
	a.waitEstablished(k, 30*time.Second)
	waitFor(t, 15*time.Second, "FRR established", func() (bool, string) {
		s := f.peerState("10.0.0.0")
		return s == "Established", s
	})
	waitFor(t, 15*time.Second, "FRR's route on our speaker", diffTable(withUpdates(
		upd(bgp.IPv4Unicast, "10.1.0.1/32", bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.1/32"), NextHop: addr("0.0.0.0"), Local: true}),
		upd(bgp.IPv4Unicast, "10.2.0.0/24", bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx("10.2.0.0/24"), NextHop: addr("10.0.0.1"), ASPath: []uint32{65002}, Peer: k}),
	), a))
	waitFor(t, 15*time.Second, "our route in FRR", func() (bool, string) {
		r, err := f.ipv4Routes()
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(r["10.1.0.1/32"], []string{"10.0.0.0"}), fmt.Sprint(r)
	})
}

// TestFRRUnnumbered: our speaker against FRR's "neighbor eth-f interface
// remote-as external": IPv4 routes with IPv6 link-local next hops both ways,
// and an EVPN type-5 route that FRR must decode (RD, RT, router MAC, VXLAN
// encapsulation, VNI label, VTEP next hop).
func TestFRRUnnumbered(t *testing.T) {
	a, _, nsA, nsF := ourSpeakerAndFRR(t, "")
	f := startFRR(t, nsF, `frr defaults datacenter
router bgp 65002
 bgp router-id 10.255.0.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor eth-f interface remote-as external
 neighbor eth-f timers connect 1
 address-family ipv4 unicast
  network 10.2.0.0/24
 exit-address-family
 address-family l2vpn evpn
  neighbor eth-f activate
 exit-address-family
`)
	k := bgp.PeerKey{Name: "eth-a"}
	a.must(helperReq{Op: "addpeer", Peer: bgp.Peer{Interface: "eth-a", Families: []bgp.Family{bgp.IPv4Unicast, bgp.EVPN}}})
	mac, _ := net.ParseMAC("02:aa:bb:cc:dd:01")
	a.must(helperReq{Op: "advertise", Paths: []bgp.Path{
		{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.1/32")},
		{Family: bgp.EVPN, Prefix: pfx("192.168.10.0/24"), NextHop: addr("10.255.0.1"), RD: "10.255.0.1:10",
			RouteTargets: []string{bgp.RT(4200000001, 100010)}, RouterMAC: mac, VNI: 100010},
	}})
	llF := linkLocal(t, nsF, "eth-f")
	llA := linkLocal(t, nsA, "eth-a")
	a.waitEstablished(k, 40*time.Second)
	waitFor(t, 15*time.Second, "FRR's route on our speaker", func() (bool, string) {
		u, ok := a.table()[updateKey(upd(bgp.IPv4Unicast, "10.2.0.0/24"))]
		want := bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx("10.2.0.0/24"), NextHop: llF, Interface: "eth-a", ASPath: []uint32{65002}, Peer: k}
		return ok && len(u.Paths) == 1 && fmt.Sprint(u.Paths[0]) == fmt.Sprint(want), fmt.Sprintf("got %+v want %+v", u, want)
	})
	waitFor(t, 15*time.Second, "our IPv4 route in FRR via our link-local", func() (bool, string) {
		r, err := f.ipv4Routes()
		if err != nil {
			return false, err.Error()
		}
		var raw any
		f.json("show bgp ipv4 unicast 10.1.0.1/32 json", &raw)
		return slices.Contains(r["10.1.0.1/32"], llA.String()), fmt.Sprintf("%v\n10.1.0.1/32: %v", r, raw)
	})
	// FRR's view of our type-5 route.
	waitFor(t, 15*time.Second, "our type-5 route in FRR", func() (bool, string) {
		var r map[string]any
		if err := f.json("show bgp l2vpn evpn route type prefix json", &r); err != nil {
			return false, err.Error()
		}
		s := fmt.Sprint(r)
		for _, want := range []string{"10.255.0.1:10", "192.168.10.0", "RT:59905:100010", "ET:8", "Rmac:02:aa:bb:cc:dd:01", "10.255.0.1"} {
			if !strings.Contains(s, want) {
				return false, fmt.Sprintf("missing %q in %s", want, s)
			}
		}
		return true, ""
	})
}
