package lab

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse: Parse never panics, and whatever it accepts survives a round
// trip through Marshal unchanged (the resolved topology is a fixed point).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"name: m\ntopology:\n  nodes:\n    n1: {kind: linux}\n",
		`
name: full
mgmt: {network: x, ipv4-subnet: 10.0.0.0/29, ipv4-gw: 10.0.0.6}
topology:
  defaults: {kind: linux, env: {A: 1}, binds: ["rel:/r"], exec: ["echo d"]}
  kinds: {linux: {image: img, cmd: "sleep 1"}}
  nodes:
    a: {mgmt-ipv4: 10.0.0.2, binds: ["__clabNodeDir__/c:/c:ro"], exec: ["sh -c 'x \"y\"'"]}
    b:
  links:
    - endpoints: ["a:e1", "b:e1"]
    - {type: veth, mtu: 1500, endpoints: [{node: a, interface: e2}, {node: b, interface: e2}]}
`,
		"name: x\ntopology: {nodes: [a]}",
		"name: &a x\ntopology: {nodes: {*a : {kind: linux}}}",
		"name: x\ntopology:\n  nodes:\n    <<: {a: {kind: linux}}\n",
		"{",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		t1, err := Parse(data, "/fuzz")
		if err != nil {
			return
		}
		// The plan and argv builders must not panic on anything Parse accepts.
		_ = planUp(t1)
		for _, n := range t1.Nodes {
			_ = nodeArgv(NetNSName(t1.Name, n.Name), resolveBinds(t1, n, "/fuzz/lab", "/home"), []string{"true"})
		}
		out, err := t1.Marshal()
		if err != nil {
			t.Fatalf("Marshal of an accepted topology: %v", err)
		}
		t2, err := Parse(out, "/fuzz")
		if err != nil {
			t.Fatalf("Parse(Marshal(t)): %v\ninput:\n%s\nmarshalled:\n%s", err, data, out)
		}
		if diff := cmp.Diff(t1, t2, cmpAddrs); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s\ninput:\n%s\nmarshalled:\n%s", diff, data, out)
		}
	})
}
