//go:build linux

package nft

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

var benchFlag = flag.Bool("nft.bench", false, "run TestBenchNFT (make bench)")

// The benchmark policy: one tenant (10.1.0.0/24) with benchRules egress
// rules of benchPerRule destination /24s each and one port range, so
// 50k (CIDR, port range) entries: rule i is udp for odd i, tcp for even
// i, ports 1000+10i..1009+10i, every tenth rule drops.
const (
	benchRules   = 100
	benchPerRule = 500
	// The packet test's flow matches rule 51 (udp), CIDR 250: entry
	// 51*500+250 = 25750 of 50000 in the linear chain.
	benchRuleIdx, benchCIDR = 51, 250
)

func benchCIDRAt(rule, j int) netip.Prefix {
	i := rule*benchPerRule + j
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(i >> 8), byte(i), 0}), 24)
}

func benchRuleAt(i int, cidrs []netip.Prefix) Rule {
	r := Rule{Action: Accept, Protocol: ProtoTCP, CIDRs: cidrs,
		Ports: []PortRange{{uint16(1000 + 10*i), uint16(1009 + 10*i)}}}
	if i%2 == 1 {
		r.Protocol = ProtoUDP
	}
	if i%10 == 9 {
		r.Action = Drop
	}
	return r
}

func benchPolicy() Policy {
	t := Tenant{Name: "bench", Prefixes: pfx("10.1.0.0/24")}
	for i := range benchRules {
		cidrs := make([]netip.Prefix, benchPerRule)
		for j := range cidrs {
			cidrs[j] = benchCIDRAt(i, j)
		}
		t.Egress = append(t.Egress, benchRuleAt(i, cidrs))
	}
	return Policy{Tenants: []Tenant{t}}
}

// linearRule is the nft rule of one entry in the linear ruleset.
func linearRule(r Rule, cidr netip.Prefix) string {
	return fmt.Sprintf("ip daddr %s %s dport %d-%d %s", cidr, r.Protocol, r.Ports[0].From, r.Ports[0].To, r.Action)
}

// linearRuleset is the peer: the same policy as an `nft -f` file with
// one rule per entry in the tenant's chain (the template style of
// metal-stack's firewall), same base chains, same drop policy.
func linearRuleset(p Policy) string {
	var b strings.Builder
	t := p.Tenants[0]
	fmt.Fprintf(&b, "table inet linear {\n")
	fmt.Fprintf(&b, "chain egress {\nct state established,related accept\nct state invalid drop\n")
	for _, r := range t.Egress {
		for _, c := range r.CIDRs {
			b.WriteString(linearRule(r, c))
			b.WriteByte('\n')
		}
	}
	fmt.Fprintf(&b, "counter drop\n}\n")
	fmt.Fprintf(&b, "chain ingress {\nct state established,related accept\nct state invalid drop\ncounter drop\n}\n")
	fmt.Fprintf(&b, "chain forward {\ntype filter hook forward priority filter; policy drop;\n")
	fmt.Fprintf(&b, "ip saddr %s jump egress\nip daddr %s jump ingress\nct state established,related accept\ncounter drop\n}\n", t.Prefixes[0], t.Prefixes[0])
	fmt.Fprintf(&b, "}\n")
	return b.String()
}

// nftIn runs nft with args in ns directly (no nsenter in the timing).
func nftIn(ns netns.NsHandle, stdin string, args ...string) (string, error) {
	var out []byte
	err := inNetns(ns, func() error {
		cmd := exec.Command("nft", args...)
		if stdin != "" {
			cmd.Stdin = strings.NewReader(stdin)
		}
		var err error
		out, err = cmd.CombinedOutput()
		return err
	})
	if err != nil {
		return string(out), fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestBenchNFT compares the firewall with `nft -f` of the equivalent
// linear ruleset: loading 50k entries, changing one entry, and the cost of
// a new flow through each. Run with -args -nft.bench (make bench).
func TestBenchNFT(t *testing.T) {
	if !*benchFlag {
		t.Skip("benchmark: run with -args -nft.bench (make bench)")
	}
	p := benchPolicy()
	linear := linearRuleset(p)
	dir := t.TempDir()
	linFile := filepath.Join(dir, "linear.nft")
	if err := os.WriteFile(linFile, []byte(linear), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("policy: %d rules x %d CIDRs = %d entries; linear ruleset %d lines, %d KB",
		benchRules, benchPerRule, benchRules*benchPerRule, strings.Count(linear, "\n"), len(linear)/1024)

	// Load: fresh namespaces, alternating who goes first.
	const rounds = 3
	var projLoad, peerLoad []time.Duration
	var res ApplyResult
	project := func() {
		ns := newNS(t)
		f := newFirewall(t, ns)
		start := time.Now()
		r, err := f.Apply(context.Background(), p)
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		projLoad = append(projLoad, time.Since(start))
		res = r
	}
	peer := func() {
		ns := newNS(t)
		start := time.Now()
		if out, err := nftIn(ns, "", "-f", linFile); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		peerLoad = append(peerLoad, time.Since(start))
	}
	for round := range rounds {
		if round%2 == 0 {
			project()
			peer()
		} else {
			peer()
			project()
		}
		t.Logf("load round %d: firewall %v, nft -f %v", round, projLoad[round].Round(time.Millisecond), peerLoad[round].Round(time.Millisecond))
	}
	t.Logf("firewall table: %d rules, %d sets, %d set elements", res.Rules, res.Sets, res.Elements)
	pl, ql := median(projLoad), median(peerLoad)
	fmt.Printf("bench: nft_load_50k project=%s peer=%s ratio=%.2f\n", pl.Round(time.Millisecond), ql.Round(time.Millisecond), float64(pl)/float64(ql))

	// Change one entry, back and forth, in loaded namespaces: the
	// firewall's Apply of the whole policy with one CIDR changed vs nft -f
	// of a one-line `replace rule` (its handle found once, then echoed).
	nsP, nsQ := newNS(t), newNS(t)
	f := newFirewall(t, nsP)
	if _, err := f.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if out, err := nftIn(nsQ, "", "-f", linFile); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	old, repl := benchCIDRAt(benchRuleIdx, 0), netip.MustParsePrefix("11.250.0.0/24")
	listing, err := nftIn(nsQ, "", "-a", "list", "chain", "inet", "linear", "egress")
	if err != nil {
		t.Fatal(err)
	}
	handleRE := regexp.MustCompile(`# handle (\d+)`)
	var handle string
	for _, line := range strings.Split(listing, "\n") {
		if strings.Contains(line, "ip daddr "+old.String()+" ") {
			handle = handleRE.FindStringSubmatch(line)[1]
		}
	}
	if handle == "" {
		t.Fatalf("no rule for %s in the linear chain", old)
	}
	const changes = 21
	var projChange, peerChange []time.Duration
	rule := p.Tenants[0].Egress[benchRuleIdx]
	for i := range changes {
		to := repl
		if i%2 == 1 {
			to = old
		}
		q := p
		q.Tenants = []Tenant{p.Tenants[0]}
		q.Tenants[0].Egress = slices.Clone(p.Tenants[0].Egress)
		cidrs := slices.Clone(rule.CIDRs)
		cidrs[0] = to
		q.Tenants[0].Egress[benchRuleIdx].CIDRs = cidrs
		start := time.Now()
		r, err := f.Apply(context.Background(), q)
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		projChange = append(projChange, time.Since(start))
		if r.Full || r.Added != 2 || r.Deleted != 2 {
			t.Fatalf("one-entry change: %+v, want an incremental apply of 2 deleted and 2 added elements", r)
		}

		line := fmt.Sprintf("replace rule inet linear egress handle %s %s\n", handle, linearRule(rule, to))
		file := filepath.Join(dir, "change.nft")
		if err := os.WriteFile(file, []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		out, err := nftIn(nsQ, "", "-e", "-a", "-f", file)
		if err != nil {
			t.Fatal(err)
		}
		peerChange = append(peerChange, time.Since(start))
		m := handleRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no handle echoed by nft: %q", out)
		}
		handle = m[1]
	}
	pc, qc := median(projChange), median(peerChange)
	t.Logf("change one: firewall min %v max %v; nft -f min %v max %v", slices.Min(projChange), slices.Max(projChange), slices.Min(peerChange), slices.Max(peerChange))
	fmt.Printf("bench: nft_change_one_50k project=%.3fms peer=%.3fms ratio=%.3f\n", ms(pc), ms(qc), float64(pc)/float64(qc))

	// Where the firewall's change time goes: adding an element vs
	// deleting one (the kernel's commit of an element deletion waits much
	// longer than of an addition).
	var adds, dels []time.Duration
	for i := range 10 {
		q := clonePolicy(p)
		if i%2 == 0 {
			r := &q.Tenants[0].Egress[benchRuleIdx]
			r.CIDRs = append(r.CIDRs, netip.MustParsePrefix("11.251.0.0/24"))
		}
		start := time.Now()
		if _, err := f.Apply(context.Background(), q); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			adds = append(adds, time.Since(start))
		} else {
			dels = append(dels, time.Since(start))
		}
	}
	t.Logf("firewall change split: add one element median %v, delete one element median %v", median(adds), median(dels))

	// Per packet: a new UDP flow per round trip through each ruleset.
	pp := packetRTT(t, func(fw netns.NsHandle) {
		f := newFirewall(t, fw)
		if _, err := f.Apply(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	})
	pq := packetRTT(t, func(fw netns.NsHandle) {
		if out, err := nftIn(fw, "", "-f", linFile); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	})
	pn := packetRTT(t, func(fw netns.NsHandle) {})
	t.Logf("no ruleset at all: %v per round trip", pn)
	fmt.Printf("bench: nft_packet_50k project=%.1fus peer=%.1fus ratio=%.3f\n", us(pp), us(pq), float64(pp)/float64(pq))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// packetRTT builds client -- fw -- server, lets load program the fw, and
// returns the mean round trip of a UDP request from a new source port each
// time (so every request is a new conntrack flow and walks the policy) to
// the server address matching entry 25750 of 50000.
func packetRTT(t *testing.T, load func(fw netns.NsHandle)) time.Duration {
	t.Helper()
	client, fw, server := newNS(t), newNS(t), newNS(t)
	dst := benchCIDRAt(benchRuleIdx, benchCIDR).Addr().Next()
	shLines(t, client, "ip link set lo up", "ip link add c0 type veth peer name f0 netns "+nsPath(fw),
		"ip addr add 10.1.0.2/24 dev c0", "ip link set c0 up", "ip route add default via 10.1.0.1")
	shLines(t, fw, "ip link add f1 type veth peer name s0 netns "+nsPath(server),
		"ip addr add 10.1.0.1/24 dev f0", "ip addr add 192.0.2.1/24 dev f1", "ip link set f0 up", "ip link set f1 up",
		"sysctl -qw net.ipv4.ip_forward=1", "ip route add 11.0.0.0/8 via 192.0.2.2")
	shLines(t, server, "ip addr add 192.0.2.2/24 dev s0", "ip addr add "+dst.String()+"/32 dev s0", "ip link set s0 up",
		"ip route add 10.1.0.0/24 via 192.0.2.1")
	load(fw)

	var srv *net.UDPConn
	if err := inNetns(server, func() (err error) {
		srv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: dst.AsSlice(), Port: 1515})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, a, err := srv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			srv.WriteToUDP(buf[:n], a)
		}
	}()
	const warm, n = 200, 3000
	var total time.Duration
	err := inNetns(client, func() error {
		buf := make([]byte, 64)
		for i := range warm + n {
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 1, 0, 2), Port: 20000 + i},
				&net.UDPAddr{IP: dst.AsSlice(), Port: 1515})
			if err != nil {
				return err
			}
			start := time.Now()
			if _, err := c.Write([]byte("x")); err != nil {
				c.Close()
				return err
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			_, err = c.Read(buf)
			rtt := time.Since(start)
			c.Close()
			if err != nil {
				return fmt.Errorf("round trip %d: %w", i, err)
			}
			if i >= warm {
				total += rtt
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("packet loop: %v", err)
	}
	return total / n
}
