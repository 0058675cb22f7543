package lab

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// mgmtBridge is the bridge of the management network inside the mgmt namespace.
const mgmtBridge = "br-mgmt"

// NetNSName is the namespace of a node: "clab-<lab>-<node>", the name
// containerlab gives the node's container.
func NetNSName(lab, node string) string { return "clab-" + lab + "-" + node }

// MgmtNetNSName is the namespace holding the lab's management bridge.
func MgmtNetNSName(lab string) string { return NetNSName(lab, reservedNodeName) }

// mgmtPeer is the bridge-side name of node i's eth0 veth (node names can be
// longer than an interface name).
func mgmtPeer(i int) string { return "mg-" + strconv.Itoa(i) }

// DefaultLabDir is the lab directory containerlab would use: "clab-<lab>"
// next to the topology file.
func DefaultLabDir(t *Topology) string { return filepath.Join(t.Dir, "clab-"+t.Name) }

// step is one "ip" invocation of the plan; desc names it in errors and logs.
type step struct {
	desc string
	args []string // arguments to ip
}

// namespaces returns every namespace the lab uses, mgmt first.
func namespaces(t *Topology) []string {
	ns := []string{MgmtNetNSName(t.Name)}
	for _, n := range t.Nodes {
		ns = append(ns, NetNSName(t.Name, n.Name))
	}
	return ns
}

// planUp returns the kernel steps that realise t's namespaces, management
// network and links. Order: namespaces and the mgmt bridge first (everything
// else lives in them), then eth0 per node, then the links (both ends need
// their namespace).
func planUp(t *Topology) []step {
	var s []step
	add := func(desc string, args ...string) { s = append(s, step{desc: desc, args: args}) }
	mgmtNS := MgmtNetNSName(t.Name)
	prefixLen := strconv.Itoa(t.Mgmt.IPv4Subnet.Bits())

	add("creating namespace "+mgmtNS, "netns", "add", mgmtNS)
	add("setting lo up in "+mgmtNS, "-n", mgmtNS, "link", "set", "lo", "up")
	add("creating mgmt bridge "+mgmtBridge, "-n", mgmtNS, "link", "add", mgmtBridge, "type", "bridge")
	add("addressing mgmt bridge "+mgmtBridge, "-n", mgmtNS, "addr", "add", t.Mgmt.IPv4Gateway.String()+"/"+prefixLen, "dev", mgmtBridge)
	add("setting mgmt bridge "+mgmtBridge+" up", "-n", mgmtNS, "link", "set", mgmtBridge, "up")

	for _, n := range t.Nodes {
		ns := NetNSName(t.Name, n.Name)
		add("creating namespace "+ns, "netns", "add", ns)
		add("setting lo up in "+ns, "-n", ns, "link", "set", "lo", "up")
	}
	for i, n := range t.Nodes {
		ns := NetNSName(t.Name, n.Name)
		ep := n.Name + ":" + mgmtInterface
		peer := mgmtPeer(i)
		add("creating veth "+ep, "-n", ns, "link", "add", mgmtInterface, "type", "veth", "peer", "name", peer, "netns", mgmtNS)
		add("attaching "+ep+" to "+mgmtBridge, "-n", mgmtNS, "link", "set", peer, "master", mgmtBridge, "up")
		add("addressing "+ep, "-n", ns, "addr", "add", n.MgmtIPv4.String()+"/"+prefixLen, "dev", mgmtInterface)
		add("setting "+ep+" up", "-n", ns, "link", "set", mgmtInterface, "up")
	}
	for _, l := range t.Links {
		nsA, nsB := NetNSName(t.Name, l.A.Node), NetNSName(t.Name, l.B.Node)
		mtu := strconv.Itoa(l.MTU)
		add("creating veth "+l.String(), "-n", nsA, "link", "add", l.A.Interface, "mtu", mtu,
			"type", "veth", "peer", "name", l.B.Interface, "mtu", mtu, "netns", nsB)
		add("setting "+l.A.String()+" up", "-n", nsA, "link", "set", l.A.Interface, "up")
		add("setting "+l.B.String()+" up", "-n", nsB, "link", "set", l.B.Interface, "up")
	}
	return s
}

// resolveBinds expands containerlab's placeholders and "~" in a node's bind
// sources. Sources without them were made absolute by Parse already.
func resolveBinds(t *Topology, n Node, labDir, home string) []Bind {
	out := make([]Bind, 0, len(n.Binds))
	for _, b := range n.Binds {
		if b.deferred() {
			src := b.Src
			if src == "~" || strings.HasPrefix(src, "~/") {
				src = home + src[1:]
			}
			src = strings.ReplaceAll(src, placeholderNodeDir, filepath.Join(labDir, n.Name))
			src = strings.ReplaceAll(src, placeholderLabDir, labDir)
			if !filepath.IsAbs(src) {
				src = filepath.Join(t.Dir, src)
			}
			b.Src = filepath.Clean(src)
		}
		out = append(out, b)
	}
	return out
}

// nodeArgv returns the argv that runs argv inside namespace ns with binds
// applied. "ip netns exec" already enters a private (slave) mount namespace,
// so the bind mounts never show on the host. A missing destination is
// created first (a directory, or an empty file when the source is a file).
func nodeArgv(ns string, binds []Bind, argv []string) []string {
	out := []string{"ip", "netns", "exec", ns}
	if len(binds) == 0 {
		return append(out, argv...)
	}
	var sc strings.Builder
	sc.WriteString("set -e\n")
	for _, b := range binds {
		src, dst := shellQuote(b.Src), shellQuote(b.Dst)
		fmt.Fprintf(&sc, "if [ ! -e %s ]; then if [ -d %s ]; then mkdir -p %s; else mkdir -p %s; : >%s; fi; fi\n",
			dst, src, dst, shellQuote(filepath.Dir(b.Dst)), dst)
		fmt.Fprintf(&sc, "mount --bind %s %s\n", src, dst)
		if b.ReadOnly {
			fmt.Fprintf(&sc, "mount -o remount,bind,ro %s\n", dst)
		}
	}
	sc.WriteString(`exec "$@"`)
	out = append(out, "sh", "-c", sc.String(), "sh")
	return append(out, argv...)
}

// nodeEnv returns base with the node's env appended (later entries win in
// os/exec), in a stable order.
func nodeEnv(base []string, env map[string]string) []string {
	out := slices.Clone(base)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}
