package gobgp

import (
	"fmt"
	"testing"
	"time"

	"github.com/metalfabric/fabric/bgp"
)

// TestGracefulStop: with graceful restart, Stop closes the session without a
// NOTIFICATION, so the peer keeps our route (stale) after the session is
// gone, instead of withdrawing it.
func TestGracefulStop(t *testing.T) {
	requireRoot(t)
	nsA, nsB := newNetns(t), newNetns(t)
	veth(t, nsA, "eth-a", nsB, "eth-b")
	nsRun(t, nsA, "ip", "addr", "add", "10.0.0.0/31", "dev", "eth-a")
	nsRun(t, nsB, "ip", "addr", "add", "10.0.0.1/31", "dev", "eth-b")
	a, b := startRemote(t, "a", nsA), startRemote(t, "b", nsB)
	a.must(helperReq{Op: "start", Global: bgp.Global{ASN: 65001, RouterID: addr("10.255.0.1"), GracefulRestart: 60 * time.Second}})
	b.must(helperReq{Op: "start", Global: bgp.Global{ASN: 65002, RouterID: addr("10.255.0.2"), GracefulRestart: 60 * time.Second}})
	a.must(helperReq{Op: "addpeer", Peer: bgp.Peer{Address: addr("10.0.0.1"), ASN: 65002, GracefulRestart: true}})
	kb := bgp.PeerKey{Name: "10.0.0.0"}
	b.must(helperReq{Op: "addpeer", Peer: bgp.Peer{Address: addr("10.0.0.0"), ASN: 65001, GracefulRestart: true}})
	a.must(helperReq{Op: "advertise", Paths: []bgp.Path{{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.1/32")}}})
	route := upd(bgp.IPv4Unicast, "10.1.0.1/32", bgp.Path{Family: bgp.IPv4Unicast, Prefix: pfx("10.1.0.1/32"), NextHop: addr("10.0.0.0"), ASPath: []uint32{65001}, Peer: kb})
	b.waitEstablished(kb, 20*time.Second)
	waitFor(t, 15*time.Second, "route on b", diffTable(withUpdates(route), b))

	a.must(helperReq{Op: "stop"})
	waitFor(t, 15*time.Second, "b's session down", func() (bool, string) {
		st, _ := b.peer(kb)
		return st.State != bgp.StateEstablished, fmt.Sprintf("%+v", st)
	})
	// The route stays (the GR helper keeps it for the restart time). A
	// negative check needs an observation window: a withdrawal reaches
	// WatchBest within milliseconds, so 2 s of polling is ample.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if ok, msg := diffTable(withUpdates(route), b)(); !ok {
			t.Fatalf("b dropped our route after a graceful stop: %s", msg)
		}
	}
}
