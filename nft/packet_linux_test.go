//go:build linux

package nft

import (
	"bufio"
	"context"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netns"
)

// lab is three namespaces: a tenant host (client, 10.1.0.2 and 10.1.0.3),
// the firewall (fw: 10.1.0.1 on the tenant side, 203.0.113.1 on the
// uplink) and an internet host (inet: 203.0.113.2 and .99). inet routes
// the tenant prefix back through the firewall, so ingress works; whether
// egress was translated shows in the source address inet's servers see.
type lab struct {
	client, fw, inet netns.NsHandle
}

func newLab(t *testing.T) lab {
	t.Helper()
	l := lab{client: newNS(t), fw: newNS(t), inet: newNS(t)}
	fwPath, inetPath := nsPath(l.fw), nsPath(l.inet)
	shLines(t, l.client,
		"ip link set lo up",
		"ip link add c0 type veth peer name f0 netns "+fwPath,
		"ip addr add 10.1.0.2/24 dev c0",
		"ip addr add 10.1.0.3/24 dev c0",
		"ip link set c0 up",
		"ip route add default via 10.1.0.1",
	)
	shLines(t, l.fw,
		"ip link set lo up",
		"ip link add f1 type veth peer name i0 netns "+inetPath,
		"ip addr add 10.1.0.1/24 dev f0",
		"ip addr add 203.0.113.1/24 dev f1",
		"ip link set f0 up",
		"ip link set f1 up",
		"sysctl -qw net.ipv4.ip_forward=1",
	)
	shLines(t, l.inet,
		"ip link set lo up",
		"ip addr add 203.0.113.2/24 dev i0",
		"ip addr add 203.0.113.99/24 dev i0",
		"ip link set i0 up",
		"ip route add 10.1.0.0/24 via 203.0.113.1",
	)
	return l
}

// serve listens on addr in ns and answers every connection with the
// remote address it sees.
func serve(t *testing.T, ns netns.NsHandle, addr string) {
	t.Helper()
	var ln net.Listener
	if err := inNetns(ns, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(c.RemoteAddr().(*net.TCPAddr).IP.String() + "\n"))
			c.Close()
		}
	}()
}

// dial connects from ns (bound to local, if not empty) to addr and
// returns what the server says: the source address it saw. An error
// means the connection was not established within the timeout.
func dial(ns netns.NsHandle, local, addr string) (string, error) {
	d := net.Dialer{Timeout: 700 * time.Millisecond}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	var c net.Conn
	if err := inNetns(ns, func() (err error) { c, err = d.Dial("tcp", addr); return err }); err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// settledCounters reads the counters once they stand still for 100 ms (the
// teardown of the last connection may still be on its way), or after 2 s.
func settledCounters(t *testing.T, f *Firewall) map[string]uint64 {
	t.Helper()
	cur := counters(t, f)
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		now := counters(t, f)
		if maps.Equal(now, cur) {
			break
		}
		cur = now
	}
	return cur
}

func counters(t *testing.T, f *Firewall) map[string]uint64 {
	t.Helper()
	cs, err := f.Counters(context.Background())
	if err != nil {
		t.Fatalf("Counters: %v", err)
	}
	out := make(map[string]uint64, len(cs))
	for _, c := range cs {
		out[c.Name] = c.Packets
	}
	return out
}

// moved returns the counters that grew between two readings.
func moved(before, after map[string]uint64) []string {
	var out []string
	for k, v := range after {
		if v > before[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func labPolicy() Policy {
	return Policy{Tenants: []Tenant{{
		Name:       "t1",
		Interfaces: []string{"f0"},
		Prefixes:   pfx("10.1.0.0/24"),
		Egress: []Rule{
			{Action: Drop, CIDRs: pfx("203.0.113.99/32", "198.51.100.0/24"), Comment: "blocked hosts"},
			{Action: Accept, Protocol: ProtoTCP, Ports: []PortRange{{80, 80}, {8000, 8100}}},
			{Action: Accept, Protocol: ProtoICMP},
		},
		Ingress: []Rule{
			{Action: Accept, Protocol: ProtoTCP, CIDRs: pfx("203.0.113.0/24"), Ports: []PortRange{{22, 22}}},
		},
		NAT: NAT{Mode: NATMasquerade, Interfaces: []string{"f1"}},
	}}}
}

func TestPackets(t *testing.T) {
	l := newLab(t)
	for _, a := range []string{"203.0.113.2:80", "203.0.113.2:81", "203.0.113.99:80", "203.0.113.2:8050"} {
		serve(t, l.inet, a)
	}
	serve(t, l.client, "10.1.0.2:22")
	serve(t, l.client, "10.1.0.2:23")
	f := newFirewall(t, l.fw)
	res := mustApply(t, f, labPolicy())
	if !res.Full {
		t.Errorf("first Apply: Full = false, want a full replace")
	}

	type flow struct {
		name     string
		from     netns.NsHandle
		local    string
		to       string
		wantSeen string // empty: the flow must not get through
		counters []string
	}
	flows := []flow{
		{"egress allowed port, masqueraded", l.client, "", "203.0.113.2:80", "203.0.113.1",
			[]string{"t1/egress/accepted", "t1/egress/rule/1", "t1/ingress/accepted", "t1/nat/translated"}},
		{"egress allowed range", l.client, "", "203.0.113.2:8050", "203.0.113.1",
			[]string{"t1/egress/accepted", "t1/egress/rule/1", "t1/ingress/accepted", "t1/nat/translated"}},
		{"egress port not allowed", l.client, "", "203.0.113.2:81", "",
			[]string{"t1/egress/dropped"}},
		{"egress to a blocked host", l.client, "", "203.0.113.99:80", "",
			[]string{"t1/egress/dropped", "t1/egress/rule/0"}},
		{"ingress allowed", l.inet, "", "10.1.0.2:22", "203.0.113.2",
			[]string{"t1/egress/accepted", "t1/ingress/accepted", "t1/ingress/rule/0"}},
		{"ingress denied", l.inet, "", "10.1.0.2:23", "",
			[]string{"t1/ingress/dropped"}},
	}
	for _, fl := range flows {
		before := settledCounters(t, f)
		seen, err := dial(fl.from, fl.local, fl.to)
		after := counters(t, f)
		switch {
		case fl.wantSeen == "" && err == nil:
			t.Errorf("%s: connection to %s got through (server saw %s), want it dropped", fl.name, fl.to, seen)
		case fl.wantSeen != "" && err != nil:
			t.Errorf("%s: connection to %s: %v, want it to pass", fl.name, fl.to, err)
		case seen != fl.wantSeen:
			t.Errorf("%s: server saw source %s, want %s", fl.name, seen, fl.wantSeen)
		}
		if diff := cmp.Diff(fl.counters, moved(before, after)); diff != "" {
			t.Errorf("%s: counters that moved (-want +got):\n%s", fl.name, diff)
		}
	}

	// One entry changes: the blocked host is unblocked by a set element
	// delete, no table replace.
	p := labPolicy()
	p.Tenants[0].Egress[0].CIDRs = pfx("198.51.100.0/24")
	res = mustApply(t, f, p)
	if diff := cmp.Diff(ApplyResult{Full: false, Rules: res.Rules, Sets: res.Sets, Elements: res.Elements, Deleted: 2}, res); diff != "" {
		t.Errorf("Apply of a one-entry change (-want +got):\n%s", diff)
	}
	if seen, err := dial(l.client, "", "203.0.113.99:80"); err != nil || seen != "203.0.113.1" {
		t.Errorf("after unblocking 203.0.113.99: saw %q, %v; want 203.0.113.1", seen, err)
	}
	// Counters survive a full replace (a new rule changes the shape). The
	// last connection's teardown may still be on its way: read them once
	// they stand still.
	before := settledCounters(t, f)
	p.Tenants[0].Egress = append(p.Tenants[0].Egress, Rule{Action: Accept, Protocol: ProtoUDP, Ports: []PortRange{{53, 53}}})
	if res := mustApply(t, f, p); !res.Full {
		t.Errorf("Apply with a new rule: Full = false, want a full replace")
	}
	after := counters(t, f)
	if after["t1/egress/accepted"] != before["t1/egress/accepted"] || before["t1/egress/accepted"] == 0 {
		t.Errorf("t1/egress/accepted = %d after the replace, want %d kept", after["t1/egress/accepted"], before["t1/egress/accepted"])
	}
}

// TestSNAT: with egress IPs, the internet host sees one of them, the same
// one for every connection of one tenant host.
func TestSNAT(t *testing.T) {
	l := newLab(t)
	serve(t, l.inet, "203.0.113.2:80")
	// The firewall answers ARP for its egress IPs.
	shLines(t, l.fw, "ip addr add 203.0.113.10/32 dev f1", "ip addr add 203.0.113.11/32 dev f1")
	f := newFirewall(t, l.fw)
	p := labPolicy()
	p.Tenants[0].NAT = NAT{Mode: NATSNAT, EgressIPs: addrs("203.0.113.10", "203.0.113.11")}
	mustApply(t, f, p)
	for _, src := range []string{"10.1.0.2", "10.1.0.3"} {
		var first string
		for i := range 3 {
			seen, err := dial(l.client, src, "203.0.113.2:80")
			if err != nil {
				t.Fatalf("from %s: %v", src, err)
			}
			if seen != "203.0.113.10" && seen != "203.0.113.11" {
				t.Fatalf("from %s: server saw %s, want one of the egress IPs", src, seen)
			}
			if i == 0 {
				first = seen
			} else if seen != first {
				t.Errorf("from %s: connection %d translated to %s, first to %s; want the same egress IP", src, i, seen, first)
			}
		}
		t.Logf("%s -> %s", src, first)
	}
}

// TestRateLimit: a ping flood over the tenant's packet rate is cut off.
func TestRateLimit(t *testing.T) {
	l := newLab(t)
	f := newFirewall(t, l.fw)
	p := labPolicy()
	p.Tenants[0].RateLimit = RateLimit{PacketsPerSecond: 5, Burst: 5}
	mustApply(t, f, p)
	out, _ := shErr(l.client, "ping", "-c", "40", "-i", "0.005", "-W", "1", "-q", "203.0.113.2")
	c := counters(t, f)
	if c["t1/egress/ratelimited"] == 0 || c["t1/egress/accepted"] == 0 {
		t.Errorf("after a ping flood: ratelimited %d, accepted %d; want both > 0\n%s", c["t1/egress/ratelimited"], c["t1/egress/accepted"], out)
	}
}

// TestBrokenApplyKeepsRuleset: a batch the kernel refuses (a rule jumping
// to a chain that does not exist, after every other object of a new
// policy) leaves the previous ruleset in place in full, and traffic keeps
// flowing by it.
func TestBrokenApplyKeepsRuleset(t *testing.T) {
	l := newLab(t)
	serve(t, l.inet, "203.0.113.2:80")
	f := newFirewall(t, l.fw)
	mustApply(t, f, labPolicy())
	want := sh(t, l.fw, "nft", "list", "ruleset")

	p := labPolicy()
	p.Tenants[0].Egress = []Rule{{Action: Drop}} // would cut everything
	rs := translate(p)
	rs.rule(chainForward, "", cat(jumpTo("no-such-chain")))
	if _, err := f.applyFull(rs); err == nil {
		t.Fatal("applying a ruleset with a jump to a missing chain succeeded")
	} else {
		t.Logf("kernel refused the batch as expected: %v", err)
	}
	if diff := cmp.Diff(want, sh(t, l.fw, "nft", "list", "ruleset")); diff != "" {
		t.Errorf("ruleset after the refused batch (-want +got):\n%s", diff)
	}
	if seen, err := dial(l.client, "", "203.0.113.2:80"); err != nil || seen != "203.0.113.1" {
		t.Errorf("after the refused batch: saw %q, %v; want the old policy to pass and masquerade", seen, err)
	}
	// The same for the incremental path: one bad element (overlapping an
	// existing interval) among good ones.
	want = sh(t, l.fw, "nft", "list", "ruleset")
	spec := f.last.sets[0]
	bad := append(slices.Clone(spec.items), prefixItem(pfx("203.0.113.0/24")[0]), prefixItem(pfx("203.0.113.96/28")[0]))
	if _, err := f.applyChanges(appendChange(nil, spec, bad)); err == nil {
		t.Error("adding overlapping interval elements succeeded")
	}
	if diff := cmp.Diff(want, sh(t, l.fw, "nft", "list", "ruleset")); diff != "" {
		t.Errorf("ruleset after the refused element batch (-want +got):\n%s", diff)
	}
}
