package lab

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// cmpAddrs compares netip values by value (they have unexported fields).
var cmpAddrs = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func defaultMgmt() Mgmt {
	return Mgmt{Network: "clab", IPv4Subnet: DefaultMgmtSubnet, IPv4Gateway: ip("172.20.20.1")}
}

func TestParse(t *testing.T) {
	const dir = "/labs/topo"
	tests := []struct {
		name string
		yaml string
		want *Topology
	}{
		{
			name: "minimal",
			yaml: `
name: m
topology:
  nodes:
    n1: {kind: linux}
`,
			want: &Topology{Name: "m", Dir: dir, Mgmt: defaultMgmt(), Nodes: []Node{
				{Name: "n1", Kind: "linux", MgmtIPv4: ip("172.20.20.2")},
			}},
		},
		{
			name: "defaults, kinds and node merge like containerlab",
			yaml: `
name: merge
topology:
  defaults:
    kind: linux
    image: default-image
    cmd: default-cmd
    env: {A: default, B: default, N: 3}
    binds: [/d/shared:/shared, /d/only:/only-default]
    exec: [echo default]
  kinds:
    linux:
      image: kind-image
      env: {B: kind, C: kind}
      binds: [/k/shared:/shared:ro, rel/k:/kind]
      exec: [echo kind]
  nodes:
    n1:
      cmd: sleep 1000
      env: {C: node}
      binds: ["__clabNodeDir__/conf:/conf", "/n/shared:/shared"]
      exec: ["echo 'node one'"]
    n2:
      image: own-image
`,
			want: &Topology{Name: "merge", Dir: dir, Mgmt: defaultMgmt(), Nodes: []Node{
				{
					Name: "n1", Kind: "linux", Image: "kind-image", Cmd: "sleep 1000",
					Exec: []string{"echo default", "echo kind", "echo 'node one'"},
					Binds: []Bind{
						{Src: "__clabNodeDir__/conf", Dst: "/conf"},
						{Src: "/n/shared", Dst: "/shared"},
						{Src: "/labs/topo/rel/k", Dst: "/kind"},
						{Src: "/d/only", Dst: "/only-default"},
					},
					Env:      map[string]string{"A": "default", "B": "kind", "C": "node", "N": "3"},
					MgmtIPv4: ip("172.20.20.2"),
				},
				{
					Name: "n2", Kind: "linux", Image: "own-image", Cmd: "default-cmd",
					Exec: []string{"echo default", "echo kind"},
					Binds: []Bind{
						{Src: "/k/shared", Dst: "/shared", ReadOnly: true},
						{Src: "/labs/topo/rel/k", Dst: "/kind"},
						{Src: "/d/only", Dst: "/only-default"},
					},
					Env:      map[string]string{"A": "default", "B": "kind", "C": "kind", "N": "3"},
					MgmtIPv4: ip("172.20.20.3"),
				},
			}},
		},
		{
			name: "mgmt subnet, explicit and auto addresses in node order",
			yaml: `
name: mg
mgmt:
  network: fabric
  ipv4-subnet: 10.9.0.0/29
topology:
  defaults: {kind: linux}
  nodes:
    z: {}
    y: {mgmt-ipv4: 10.9.0.2}
    x: {}
`,
			want: &Topology{Name: "mg", Dir: dir,
				Mgmt: Mgmt{Network: "fabric", IPv4Subnet: netip.MustParsePrefix("10.9.0.0/29"), IPv4Gateway: ip("10.9.0.1")},
				Nodes: []Node{
					{Name: "z", Kind: "linux", MgmtIPv4: ip("10.9.0.3")},
					{Name: "y", Kind: "linux", MgmtIPv4: ip("10.9.0.2")},
					{Name: "x", Kind: "linux", MgmtIPv4: ip("10.9.0.4")},
				}},
		},
		{
			name: "custom gateway frees .1",
			yaml: `
name: gw
mgmt: {ipv4-subnet: 10.9.0.0/30, ipv4-gw: 10.9.0.2}
topology:
  nodes:
    a: {kind: linux}
`,
			want: &Topology{Name: "gw", Dir: dir,
				Mgmt:  Mgmt{Network: "clab", IPv4Subnet: netip.MustParsePrefix("10.9.0.0/30"), IPv4Gateway: ip("10.9.0.2")},
				Nodes: []Node{{Name: "a", Kind: "linux", MgmtIPv4: ip("10.9.0.1")}}},
		},
		{
			name: "links brief and extended, null node, file order kept",
			yaml: `
name: links
topology:
  defaults: {kind: linux}
  nodes:
    spine1:
    leaf1:
  links:
    - endpoints: ["leaf1:swp1", "spine1:swp1"]
    - type: veth
      mtu: 1500
      endpoints:
        - {node: leaf1, interface: swp2}
        - {node: spine1, interface: swp2}
    - endpoints: ["leaf1:a", "leaf1:b"]
`,
			want: &Topology{Name: "links", Dir: dir, Mgmt: defaultMgmt(),
				Nodes: []Node{
					{Name: "spine1", Kind: "linux", MgmtIPv4: ip("172.20.20.2")},
					{Name: "leaf1", Kind: "linux", MgmtIPv4: ip("172.20.20.3")},
				},
				Links: []Link{
					{A: Endpoint{"leaf1", "swp1"}, B: Endpoint{"spine1", "swp1"}, MTU: 9500},
					{A: Endpoint{"leaf1", "swp2"}, B: Endpoint{"spine1", "swp2"}, MTU: 1500},
					{A: Endpoint{"leaf1", "a"}, B: Endpoint{"leaf1", "b"}, MTU: 9500},
				}},
		},
		{
			name: "unknown fields of real containerlab files are ignored",
			yaml: `
name: real
prefix: clab
topology:
  nodes:
    n:
      kind: linux
      image: frr:8
      ports: ["80:8080"]
      startup-config: x.cfg
      labels: {a: b}
  links:
    - endpoints: ["n:e1", "n:e2"]
      labels: {x: y}
`,
			want: &Topology{Name: "real", Dir: dir, Mgmt: defaultMgmt(),
				Nodes: []Node{{Name: "n", Kind: "linux", Image: "frr:8", MgmtIPv4: ip("172.20.20.2")}},
				Links: []Link{{A: Endpoint{"n", "e1"}, B: Endpoint{"n", "e2"}, MTU: 9500}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.yaml), dir)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tc.want, got, cmpAddrs); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	const ok2 = `
name: e
topology:
  defaults: {kind: linux}
  nodes:
    a:
    b:
`
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"not yaml", "name: [", []string{"parsing YAML"}},
		{"no name", "topology: {nodes: {a: {kind: linux}}}", []string{"name is missing"}},
		{"bad lab name", "name: a/b\ntopology: {nodes: {a: {kind: linux}}}", []string{`lab name "a/b"`}},
		{"no nodes", "name: x\ntopology: {}", []string{"no nodes"}},
		{"nodes not a map", "name: x\ntopology: {nodes: [a, b]}", []string{"topology.nodes must be a mapping"}},
		{"duplicate node", "name: x\ntopology:\n  nodes:\n    a: {kind: linux}\n    a: {kind: linux}\n", []string{`node "a" defined twice`}},
		{"no kind", "name: x\ntopology: {nodes: {a: {}}}", []string{"node a: no kind"}},
		{"unsupported kind", "name: x\ntopology: {nodes: {a: {kind: nokia_srlinux}}}", []string{`node a: kind "nokia_srlinux" is not supported`}},
		{"reserved node name", "name: x\ntopology: {nodes: {mgmt: {kind: linux}}}", []string{"node mgmt:", "reserved"}},
		{"bad node name", "name: x\ntopology: {nodes: {'a b': {kind: linux}}}", []string{"node a b: invalid name"}},
		{"prefix", "name: x\nprefix: ''\ntopology: {nodes: {a: {kind: linux}}}", []string{`prefix "" is not supported`}},
		{"cmd quote", "name: x\ntopology: {nodes: {a: {kind: linux, cmd: \"echo 'x\"}}}", []string{"node a: cmd: unterminated single quote"}},
		{"empty exec", "name: x\ntopology: {nodes: {a: {kind: linux, exec: ['  ']}}}", []string{"empty command"}},
		{"bind relative dst", "name: x\ntopology: {nodes: {a: {kind: linux, binds: ['/a:b']}}}", []string{`bind "/a:b": destination "b" is not absolute`}},
		{"bind option", "name: x\ntopology: {nodes: {a: {kind: linux, binds: ['/a:/b:z']}}}", []string{`unsupported option "z"`}},
		{"anonymous volume", "name: x\ntopology: {nodes: {a: {kind: linux, binds: ['/a']}}}", []string{"anonymous volumes"}},
		{"bind too many colons", "name: x\ntopology: {nodes: {a: {kind: linux, binds: ['/a:/b:ro:x']}}}", []string{"want src:dst[:ro]"}},
		{"env key", "name: x\ntopology: {nodes: {a: {kind: linux, env: {'A=B': x}}}}", []string{`invalid env "A=B"`}},
		{"subnet host bits", "name: x\nmgmt: {ipv4-subnet: 10.0.0.5/24}\n" + ok2[len("\nname: e\n"):], []string{"did you mean 10.0.0.0/24"}},
		{"subnet v6", "name: x\nmgmt: {ipv4-subnet: 'fd00::/64'}\ntopology: {nodes: {a: {kind: linux}}}", []string{"is not IPv4"}},
		{"subnet too small", "name: x\nmgmt: {ipv4-subnet: 10.0.0.0/31}\ntopology: {nodes: {a: {kind: linux}}}", []string{"too small"}},
		{"gateway outside", "name: x\nmgmt: {ipv4-gw: 10.0.0.1}\ntopology: {nodes: {a: {kind: linux}}}", []string{"mgmt ipv4-gw 10.0.0.1 is not a host address"}},
		{"mgmt ip outside subnet", "name: x\ntopology: {nodes: {a: {kind: linux, mgmt-ipv4: 10.0.0.2}}}", []string{"node a: mgmt-ipv4 10.0.0.2 is not a host address"}},
		{"mgmt ip is gateway", "name: x\ntopology: {nodes: {a: {kind: linux, mgmt-ipv4: 172.20.20.1}}}", []string{"already used by the mgmt gateway"}},
		{"mgmt ip broadcast", "name: x\ntopology: {nodes: {a: {kind: linux, mgmt-ipv4: 172.20.20.255}}}", []string{"is not a host address"}},
		{"mgmt ip twice", "name: x\ntopology:\n  defaults: {kind: linux}\n  nodes:\n    a: {mgmt-ipv4: 172.20.20.9}\n    b: {mgmt-ipv4: 172.20.20.9}\n", []string{"node b: mgmt-ipv4 172.20.20.9 is already used by node a"}},
		{"mgmt ip not v4", "name: x\ntopology: {nodes: {a: {kind: linux, mgmt-ipv4: 'fd00::1'}}}", []string{"is not an IPv4 address"}},
		{"subnet full", "name: x\nmgmt: {ipv4-subnet: 10.0.0.0/30}\n" + ok2[len("\nname: e\n"):], []string{"node b: mgmt subnet 10.0.0.0/30 has no free address left"}},
		{"unknown node in link", ok2 + "  links:\n    - endpoints: [a:e1, c:e1]\n", []string{`link 1: endpoint c:e1: unknown node "c"`}},
		{"duplicate interface", ok2 + "  links:\n    - endpoints: [a:e1, b:e1]\n    - endpoints: [a:e1, b:e2]\n", []string{"link 2: interface a:e1 is already used by link 1"}},
		{"same endpoint twice", ok2 + "  links:\n    - endpoints: [a:e1, a:e1]\n", []string{"link 1: interface a:e1 is already used by link 1"}},
		{"long interface", ok2 + "  links:\n    - endpoints: [a:ethernet-1-1-1-1, b:e1]\n", []string{`interface name "ethernet-1-1-1-1" is longer than 15`}},
		{"slash interface", ok2 + "  links:\n    - endpoints: [a:ethernet-1/1, b:e1]\n", []string{`contains '/'`}},
		{"eth0 reserved", ok2 + "  links:\n    - endpoints: [a:eth0, b:e1]\n", []string{`interface name "eth0" is reserved`}},
		{"host endpoint", ok2 + "  links:\n    - endpoints: [a:e1, host:a-e1]\n", []string{`"host" endpoints are not supported`}},
		{"no colon", ok2 + "  links:\n    - endpoints: [a, b:e1]\n", []string{`endpoint "a" is not node:interface`}},
		{"three endpoints", ok2 + "  links:\n    - endpoints: [a:e1, b:e1, a:e2]\n", []string{"want exactly 2 endpoints, got 3"}},
		{"link type", ok2 + "  links:\n    - type: macvlan\n      endpoints: [a:e1, b:e1]\n", []string{`type "macvlan" is not supported`}},
		{"bad mtu", ok2 + "  links:\n    - endpoints: [a:e1, b:e1]\n      mtu: 10\n", []string{"mtu 10 out of range"}},
		{"all problems at once", "name: x\ntopology:\n  nodes:\n    a: {kind: srl}\n    b: {}\n  links:\n    - endpoints: [a:e1, z:e1]\n",
			[]string{"node a: kind", "node b: no kind", `unknown node "z"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.yaml), "/labs")
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q; got %+v", tc.want, got)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.clab.yml")
	data := "name: loaded\ntopology:\n  nodes:\n    a:\n      kind: linux\n      binds: [cfg/a:/etc/a:ro]\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &Topology{Name: "loaded", Path: path, Dir: dir, Mgmt: defaultMgmt(), Nodes: []Node{{
		Name: "a", Kind: "linux", MgmtIPv4: ip("172.20.20.2"),
		Binds: []Bind{{Src: filepath.Join(dir, "cfg/a"), Dst: "/etc/a", ReadOnly: true}},
	}}}
	if diff := cmp.Diff(want, got, cmpAddrs); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
	if _, err := Load(filepath.Join(dir, "missing.yml")); err == nil || !strings.Contains(err.Error(), "reading topology") {
		t.Errorf("Load(missing) error = %v, want a reading error", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	in := `
name: rt
mgmt: {ipv4-subnet: 10.1.0.0/24}
topology:
  defaults: {kind: linux, env: {X: "1"}}
  nodes:
    b: {cmd: "sh -c 'echo a; sleep 9'", binds: ["__clabDir__/f:/f:ro", "rel:/rel"], exec: [true]}
    a: {mgmt-ipv4: 10.1.0.50, image: i}
  links:
    - endpoints: [a:e1, b:e1]
    - {type: veth, mtu: 1400, endpoints: [a:e2, b:e2]}
`
	t1, err := Parse([]byte(in), "/d")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	out, err := t1.Marshal()
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	t2, err := Parse(out, "/elsewhere")
	if err != nil {
		t.Fatalf("Parse(Marshal): %v\n%s", err, out)
	}
	t2.Dir = t1.Dir
	if diff := cmp.Diff(t1, t2, cmpAddrs); diff != "" {
		t.Errorf("round trip (-want +got):\n%s\n%s", diff, out)
	}
}

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "  sleep   1000 ", want: []string{"sleep", "1000"}},
		{in: `sh -c 'echo a; exec b'`, want: []string{"sh", "-c", "echo a; exec b"}},
		{in: `echo "a \"b\" \$c \x" d\ e`, want: []string{"echo", `a "b" $c \x`, "d e"}},
		{in: `a''b "" ''`, want: []string{"ab", "", ""}},
		{in: "a # comment\nb", want: []string{"a", "b"}},
		{in: "a#b", want: []string{"a#b"}},
		{in: "a \\\nb", want: []string{"a", "b"}},
		{in: `'x`, wantErr: true},
		{in: `"x`, wantErr: true},
		{in: `x\`, wantErr: true},
	}
	for _, tc := range tests {
		got, err := splitWords(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("splitWords(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("splitWords(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestShellQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "a b", "it's", `"q"`, "$x `y`", "a\nb", `\`} {
		got, err := splitWords(shellQuote(s))
		if err != nil || len(got) != 1 || got[0] != s {
			t.Errorf("splitWords(shellQuote(%q)) = %q, %v", s, got, err)
		}
	}
}

// TestRepositoryTopologies loads every topology file under containerlab/
// (what make lab runs): Load validates them (unique mgmt addresses, link
// endpoints naming nodes, binds, commands), and each survives a Marshal
// round trip.
func TestRepositoryTopologies(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "containerlab", "*.clab.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no containerlab/*.clab.yml found")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			topo, err := Load(f)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if len(topo.Nodes) == 0 || len(topo.Links) == 0 {
				t.Errorf("%d nodes, %d links; want some of each", len(topo.Nodes), len(topo.Links))
			}
			// The round trip through Marshal (topology-data.json's YAML twin)
			// must parse again to the same nodes.
			data, err := topo.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			again, err := Parse(data, topo.Dir)
			if err != nil {
				t.Fatalf("Parse(Marshal): %v", err)
			}
			if diff := cmp.Diff(topo.Nodes, again.Nodes, cmpAddrs); diff != "" {
				t.Errorf("nodes after a Marshal round trip (-want +got):\n%s", diff)
			}
		})
	}
}
