package lab

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPlanUp(t *testing.T) {
	topo, err := Parse([]byte(`
name: p
mgmt: {ipv4-subnet: 10.0.0.0/28}
topology:
  defaults: {kind: linux}
  nodes:
    leaf01: {}
    spine01: {mgmt-ipv4: 10.0.0.9}
  links:
    - endpoints: [leaf01:swp1, spine01:swp1]
`), "/d")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range planUp(topo) {
		got = append(got, s.desc+": ip "+strings.Join(s.args, " "))
	}
	want := []string{
		"creating namespace clab-p-mgmt: ip netns add clab-p-mgmt",
		"setting lo up in clab-p-mgmt: ip -n clab-p-mgmt link set lo up",
		"creating mgmt bridge br-mgmt: ip -n clab-p-mgmt link add br-mgmt type bridge",
		"addressing mgmt bridge br-mgmt: ip -n clab-p-mgmt addr add 10.0.0.1/28 dev br-mgmt",
		"setting mgmt bridge br-mgmt up: ip -n clab-p-mgmt link set br-mgmt up",
		"creating namespace clab-p-leaf01: ip netns add clab-p-leaf01",
		"setting lo up in clab-p-leaf01: ip -n clab-p-leaf01 link set lo up",
		"creating namespace clab-p-spine01: ip netns add clab-p-spine01",
		"setting lo up in clab-p-spine01: ip -n clab-p-spine01 link set lo up",
		"creating veth leaf01:eth0: ip -n clab-p-leaf01 link add eth0 type veth peer name mg-0 netns clab-p-mgmt",
		"attaching leaf01:eth0 to br-mgmt: ip -n clab-p-mgmt link set mg-0 master br-mgmt up",
		"addressing leaf01:eth0: ip -n clab-p-leaf01 addr add 10.0.0.2/28 dev eth0",
		"setting leaf01:eth0 up: ip -n clab-p-leaf01 link set eth0 up",
		"creating veth spine01:eth0: ip -n clab-p-spine01 link add eth0 type veth peer name mg-1 netns clab-p-mgmt",
		"attaching spine01:eth0 to br-mgmt: ip -n clab-p-mgmt link set mg-1 master br-mgmt up",
		"addressing spine01:eth0: ip -n clab-p-spine01 addr add 10.0.0.9/28 dev eth0",
		"setting spine01:eth0 up: ip -n clab-p-spine01 link set eth0 up",
		"creating veth leaf01:swp1 <-> spine01:swp1: ip -n clab-p-leaf01 link add swp1 mtu 9500 type veth peer name swp1 mtu 9500 netns clab-p-spine01",
		"setting leaf01:swp1 up: ip -n clab-p-leaf01 link set swp1 up",
		"setting spine01:swp1 up: ip -n clab-p-spine01 link set swp1 up",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("planUp (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"clab-p-mgmt", "clab-p-leaf01", "clab-p-spine01"}, namespaces(topo)); diff != "" {
		t.Errorf("namespaces (-want +got):\n%s", diff)
	}
}

func TestResolveBinds(t *testing.T) {
	topo := &Topology{Name: "r", Dir: "/topo"}
	n := Node{Name: "n1", Binds: []Bind{
		{Src: "__clabNodeDir__/conf", Dst: "/conf"},
		{Src: "__clabDir__/topology-data.json", Dst: "/data.json", ReadOnly: true},
		{Src: "~/.ssh", Dst: "/root/.ssh"},
		{Src: "/abs", Dst: "/abs"},
	}}
	got := resolveBinds(topo, n, "/topo/clab-r", "/home/u")
	want := []Bind{
		{Src: "/topo/clab-r/n1/conf", Dst: "/conf"},
		{Src: "/topo/clab-r/topology-data.json", Dst: "/data.json", ReadOnly: true},
		{Src: "/home/u/.ssh", Dst: "/root/.ssh"},
		{Src: "/abs", Dst: "/abs"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("resolveBinds (-want +got):\n%s", diff)
	}
}

func TestNodeArgv(t *testing.T) {
	got := nodeArgv("clab-x-a", nil, []string{"sleep", "1"})
	if diff := cmp.Diff([]string{"ip", "netns", "exec", "clab-x-a", "sleep", "1"}, got); diff != "" {
		t.Errorf("nodeArgv without binds (-want +got):\n%s", diff)
	}
	got = nodeArgv("clab-x-a", []Bind{{Src: "/s p", Dst: "/d", ReadOnly: true}, {Src: "/s2", Dst: "/x/d2"}}, []string{"echo", "a b"})
	want := []string{"ip", "netns", "exec", "clab-x-a", "sh", "-c", `set -e
if [ ! -e /d ]; then if [ -d '/s p' ]; then mkdir -p /d; else mkdir -p /; : >/d; fi; fi
mount --bind '/s p' /d
mount -o remount,bind,ro /d
if [ ! -e /x/d2 ]; then if [ -d /s2 ]; then mkdir -p /x/d2; else mkdir -p /x; : >/x/d2; fi; fi
mount --bind /s2 /x/d2
exec "$@"`, "sh", "echo", "a b"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nodeArgv (-want +got):\n%s", diff)
	}
}

func TestNodeEnv(t *testing.T) {
	got := nodeEnv([]string{"PATH=/bin", "B=host"}, map[string]string{"B": "node", "A": "1"})
	if diff := cmp.Diff([]string{"PATH=/bin", "B=host", "A=1", "B=node"}, got); diff != "" {
		t.Errorf("nodeEnv (-want +got):\n%s", diff)
	}
}
