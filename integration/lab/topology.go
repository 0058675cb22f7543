package lab

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Defaults taken from containerlab.
const (
	// DefaultMgmtNetwork is containerlab's default management network name.
	DefaultMgmtNetwork = "clab"
	// DefaultLinkMTU is the MTU containerlab gives veth links.
	DefaultLinkMTU = 9500
	// KindLinux is the only node kind the runner supports.
	KindLinux = "linux"
)

// DefaultMgmtSubnet is containerlab's default IPv4 management subnet.
var DefaultMgmtSubnet = netip.MustParsePrefix("172.20.20.0/24")

// Placeholders containerlab expands in bind sources.
const (
	placeholderNodeDir = "__clabNodeDir__"
	placeholderLabDir  = "__clabDir__"
)

// mgmtInterface is the node's management interface, as in containerlab.
const mgmtInterface = "eth0"

// reservedNodeName would clash with the mgmt namespace "clab-<lab>-mgmt".
const reservedNodeName = "mgmt"

// Topology is a parsed and validated containerlab topology with defaults and
// kinds merged into each node and every node's mgmt address resolved.
type Topology struct {
	Name string
	// Path is the absolute path of the topology file ("" when parsed from bytes).
	Path string
	// Dir is the directory relative bind sources and the lab dir are relative to.
	Dir   string
	Mgmt  Mgmt
	Nodes []Node // in file order
	Links []Link // in file order
}

// Mgmt is the management network.
type Mgmt struct {
	Network     string
	IPv4Subnet  netip.Prefix
	IPv4Gateway netip.Addr // address of the mgmt bridge inside the mgmt namespace
}

// Node is one node with defaults and kind settings merged in.
type Node struct {
	Name  string
	Kind  string
	Image string // recorded, not used
	Cmd   string // long-running main process, "" for none
	Exec  []string
	Binds []Bind
	Env   map[string]string
	// MgmtIPv4 is the node's eth0 address: mgmt-ipv4 from the file or, when
	// absent, the next free address of the mgmt subnet in node order.
	MgmtIPv4 netip.Addr
}

// Bind is a bind mount "src:dst[:ro]".
type Bind struct {
	// Src is absolute, or still holds a containerlab placeholder or a leading
	// "~" that is resolved when the lab is brought up.
	Src      string
	Dst      string
	ReadOnly bool
}

func (b Bind) String() string {
	s := b.Src + ":" + b.Dst
	if b.ReadOnly {
		s += ":ro"
	}
	return s
}

// deferred reports whether Src can only be resolved once the lab dir is known.
func (b Bind) deferred() bool {
	return strings.Contains(b.Src, placeholderNodeDir) || strings.Contains(b.Src, placeholderLabDir) ||
		b.Src == "~" || strings.HasPrefix(b.Src, "~/")
}

// Link is a veth pair between two node interfaces.
type Link struct {
	A, B Endpoint
	MTU  int
}

func (l Link) String() string { return l.A.String() + " <-> " + l.B.String() }

// Endpoint is one end of a link.
type Endpoint struct {
	Node      string
	Interface string
}

func (e Endpoint) String() string { return e.Node + ":" + e.Interface }

// Node returns the node called name.
func (t *Topology) Node(name string) (Node, bool) {
	for _, n := range t.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Load reads, parses and validates the topology file at path. Relative bind
// sources are relative to the file's directory.
func Load(path string) (*Topology, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolving topology path %s: %w", path, err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("reading topology: %w", err)
	}
	t, err := Parse(data, filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("topology %s: %w", path, err)
	}
	t.Path = abs
	return t, nil
}

// raw* mirror the containerlab file format; unknown fields are ignored so
// real containerlab files load.
type rawFile struct {
	Name     string   `yaml:"name"`
	Prefix   *string  `yaml:"prefix"`
	Mgmt     rawMgmt  `yaml:"mgmt"`
	Topology rawTopol `yaml:"topology"`
}

type rawMgmt struct {
	Network    string `yaml:"network"`
	IPv4Subnet string `yaml:"ipv4-subnet"`
	IPv4Gw     string `yaml:"ipv4-gw"`
}

type rawTopol struct {
	Defaults rawNode            `yaml:"defaults"`
	Kinds    map[string]rawNode `yaml:"kinds"`
	Nodes    yaml.Node          `yaml:"nodes"` // a node to keep file order
	Links    []rawLink          `yaml:"links"`
}

type rawNode struct {
	Kind     string            `yaml:"kind"`
	Image    string            `yaml:"image"`
	Cmd      string            `yaml:"cmd"`
	Exec     []string          `yaml:"exec"`
	Binds    []string          `yaml:"binds"`
	Env      map[string]string `yaml:"env"`
	MgmtIPv4 string            `yaml:"mgmt-ipv4"`
}

type rawLink struct {
	Type      string        `yaml:"type"`
	MTU       int           `yaml:"mtu"`
	Endpoints []rawEndpoint `yaml:"endpoints"`
}

// rawEndpoint accepts both the brief "node:iface" and the extended
// {node: n, interface: i} form.
type rawEndpoint struct {
	Node      string `yaml:"node"`
	Interface string `yaml:"interface"`
	brief     string
}

func (e *rawEndpoint) UnmarshalYAML(v *yaml.Node) error {
	if v.Kind == yaml.ScalarNode {
		e.brief = v.Value
		node, iface, ok := strings.Cut(v.Value, ":")
		if !ok {
			return fmt.Errorf("line %d: endpoint %q is not node:interface", v.Line, v.Value)
		}
		e.Node, e.Interface = node, iface
		return nil
	}
	type plain rawEndpoint
	var p plain
	if err := v.Decode(&p); err != nil {
		return err
	}
	*e = rawEndpoint(p)
	return nil
}

// Parse parses and validates a topology. dir is the directory relative bind
// sources are resolved against (normally the topology file's directory).
func Parse(data []byte, dir string) (*Topology, error) {
	var raw rawFile
	if err := unmarshalYAML(data, &raw); err != nil {
		return nil, fmt.Errorf("parsing YAML: %w", err)
	}
	return build(&raw, dir)
}

// unmarshalYAML turns a panic inside the YAML library into an error: a
// malformed file must never crash the caller.
func unmarshalYAML(data []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("YAML decoder failed: %v", r)
		}
	}()
	return yaml.Unmarshal(data, v)
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// build validates raw and merges defaults/kinds into nodes. All problems are
// reported together.
func build(raw *rawFile, dir string) (*Topology, error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	t := &Topology{Name: raw.Name, Dir: dir}
	switch {
	case raw.Name == "":
		fail("name is missing")
	case !nameRE.MatchString(raw.Name) || len(raw.Name) > 64:
		fail("lab name %q: use up to 64 letters, digits, '_', '.', '-' (it names namespaces and the lab dir)", raw.Name)
	}
	if raw.Prefix != nil && *raw.Prefix != "clab" {
		fail("prefix %q is not supported: namespaces are always named clab-<lab>-<node>", *raw.Prefix)
	}

	mgmt, err := buildMgmt(raw.Mgmt)
	if err != nil {
		errs = append(errs, err)
	}
	t.Mgmt = mgmt

	names, rawNodes, err := nodeEntries(&raw.Topology.Nodes)
	if err != nil {
		errs = append(errs, err)
	}
	if err == nil && len(names) == 0 {
		fail("topology has no nodes")
	}
	for i, name := range names {
		n, nerrs := buildNode(name, rawNodes[i], &raw.Topology, dir)
		errs = append(errs, nerrs...)
		t.Nodes = append(t.Nodes, n)
	}
	if mgmt.IPv4Subnet.IsValid() {
		errs = append(errs, assignMgmt(t)...)
	}
	links, lerrs := buildLinks(raw.Topology.Links, t.Nodes)
	errs = append(errs, lerrs...)
	t.Links = links

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

func buildMgmt(raw rawMgmt) (Mgmt, error) {
	m := Mgmt{Network: raw.Network, IPv4Subnet: DefaultMgmtSubnet}
	if m.Network == "" {
		m.Network = DefaultMgmtNetwork
	}
	if raw.IPv4Subnet != "" {
		p, err := netip.ParsePrefix(raw.IPv4Subnet)
		switch {
		case err != nil:
			return Mgmt{}, fmt.Errorf("mgmt ipv4-subnet: %w", err)
		case !p.Addr().Is4():
			return Mgmt{}, fmt.Errorf("mgmt ipv4-subnet %s is not IPv4", p)
		case p.Bits() > 30:
			return Mgmt{}, fmt.Errorf("mgmt ipv4-subnet %s is too small (at most /30)", p)
		case p.Masked() != p:
			return Mgmt{}, fmt.Errorf("mgmt ipv4-subnet %s has host bits set (did you mean %s?)", p, p.Masked())
		}
		m.IPv4Subnet = p
	}
	m.IPv4Gateway = m.IPv4Subnet.Addr().Next()
	if raw.IPv4Gw != "" {
		gw, err := netip.ParseAddr(raw.IPv4Gw)
		if err != nil {
			return Mgmt{}, fmt.Errorf("mgmt ipv4-gw: %w", err)
		}
		if !usableHost(m.IPv4Subnet, gw) {
			return Mgmt{}, fmt.Errorf("mgmt ipv4-gw %s is not a host address of %s", gw, m.IPv4Subnet)
		}
		m.IPv4Gateway = gw
	}
	return m, nil
}

// usableHost reports whether a is in p and neither its network nor broadcast address.
func usableHost(p netip.Prefix, a netip.Addr) bool {
	return a.Is4() && !a.Is4In6() && p.Contains(a) && a != p.Addr() && a != broadcast(p)
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	hostBits := 32 - p.Bits()
	for i := 3; i >= 0 && hostBits > 0; i-- {
		n := min(hostBits, 8)
		b[i] |= byte(1<<n - 1)
		hostBits -= n
	}
	return netip.AddrFrom4(b)
}

// nodeEntries returns the node names and definitions in file order.
func nodeEntries(v *yaml.Node) ([]string, []rawNode, error) {
	switch v.Kind {
	case 0:
		return nil, nil, nil
	case yaml.MappingNode:
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return nil, nil, nil
		}
		fallthrough
	default:
		return nil, nil, fmt.Errorf("line %d: topology.nodes must be a mapping of node name to definition", v.Line)
	}
	var (
		names []string
		nodes []rawNode
		errs  []error
		seen  = map[string]bool{}
	)
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Errorf("line %d: node name must be a plain string", k.Line))
			continue
		}
		if seen[k.Value] {
			errs = append(errs, fmt.Errorf("line %d: node %q defined twice", k.Line, k.Value))
			continue
		}
		seen[k.Value] = true
		var n rawNode
		if err := val.Decode(&n); err != nil {
			errs = append(errs, fmt.Errorf("node %q: %w", k.Value, err))
			continue
		}
		names = append(names, k.Value)
		nodes = append(nodes, n)
	}
	return names, nodes, errors.Join(errs...)
}

func buildNode(name string, rn rawNode, top *rawTopol, dir string) (Node, []error) {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("node %s: "+format, append([]any{name}, args...)...))
	}
	n := Node{Name: name}
	if !nameRE.MatchString(name) {
		fail("invalid name: use letters, digits, '_', '.', '-' (it names a namespace and a directory)")
	}
	if name == reservedNodeName {
		fail("the name %q is reserved for the management namespace", reservedNodeName)
	}
	n.Kind = firstNonEmpty(rn.Kind, top.Defaults.Kind)
	switch n.Kind {
	case "":
		fail("no kind: set kind on the node or topology.defaults.kind")
	case KindLinux:
	default:
		fail("kind %q is not supported (only %q)", n.Kind, KindLinux)
	}
	kind := top.Kinds[n.Kind]

	// node overrides kind overrides defaults, as in containerlab.
	n.Image = firstNonEmpty(rn.Image, kind.Image, top.Defaults.Image)
	n.Cmd = firstNonEmpty(rn.Cmd, kind.Cmd, top.Defaults.Cmd)
	if n.Cmd != "" {
		if err := checkCommand(n.Cmd); err != nil {
			fail("cmd: %v", err)
		}
	}
	for _, e := range slices.Concat(top.Defaults.Exec, kind.Exec, rn.Exec) {
		if err := checkCommand(e); err != nil {
			fail("exec %q: %v", e, err)
			continue
		}
		n.Exec = append(n.Exec, e)
	}

	env := map[string]string{}
	for _, m := range []map[string]string{top.Defaults.Env, kind.Env, rn.Env} {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			v := m[k]
			if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
				fail("invalid env %q", k)
				continue
			}
			env[k] = v
		}
	}
	if len(env) > 0 {
		n.Env = env
	}

	// binds: node before kind before defaults; the most specific bind wins
	// for a destination (containerlab's merge).
	dsts := map[string]bool{}
	for _, s := range slices.Concat(rn.Binds, kind.Binds, top.Defaults.Binds) {
		b, err := parseBind(s, dir)
		if err != nil {
			fail("bind %q: %v", s, err)
			continue
		}
		if dsts[b.Dst] {
			continue
		}
		dsts[b.Dst] = true
		n.Binds = append(n.Binds, b)
	}

	if rn.MgmtIPv4 != "" {
		a, err := netip.ParseAddr(rn.MgmtIPv4)
		if err != nil || !a.Is4() {
			fail("mgmt-ipv4 %q is not an IPv4 address", rn.MgmtIPv4)
		} else {
			n.MgmtIPv4 = a
		}
	}
	return n, errs
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// checkCommand checks that a cmd or exec entry splits into at least one word.
func checkCommand(s string) error {
	if strings.ContainsRune(s, 0) {
		return errors.New("contains a NUL byte")
	}
	w, err := splitWords(s)
	if err != nil {
		return err
	}
	if len(w) == 0 {
		return errors.New("empty command")
	}
	return nil
}

// parseBind parses docker's "src:dst[:opts]" with opts ro or rw.
func parseBind(s, dir string) (Bind, error) {
	if strings.ContainsRune(s, 0) {
		return Bind{}, errors.New("contains a NUL byte")
	}
	parts := strings.Split(s, ":")
	var b Bind
	switch len(parts) {
	case 1:
		return Bind{}, errors.New("anonymous volumes are not supported: use src:dst")
	case 3:
		for _, o := range strings.Split(parts[2], ",") {
			switch o {
			case "ro":
				b.ReadOnly = true
			case "rw":
				b.ReadOnly = false
			default:
				return Bind{}, fmt.Errorf("unsupported option %q (only ro, rw)", o)
			}
		}
	case 2:
	default:
		return Bind{}, errors.New("want src:dst[:ro]")
	}
	src, dst := parts[0], parts[1]
	if src == "" || dst == "" {
		return Bind{}, errors.New("empty source or destination")
	}
	if !filepath.IsAbs(dst) {
		return Bind{}, fmt.Errorf("destination %q is not absolute", dst)
	}
	b.Dst = filepath.Clean(dst)
	b.Src = src
	if !b.deferred() {
		if !filepath.IsAbs(src) {
			src = filepath.Join(dir, src)
		}
		b.Src = filepath.Clean(src)
	}
	return b, nil
}

// assignMgmt checks explicit mgmt addresses and gives every other node the
// next free address of the subnet, in node order.
func assignMgmt(t *Topology) []error {
	var errs []error
	p := t.Mgmt.IPv4Subnet
	used := map[netip.Addr]string{t.Mgmt.IPv4Gateway: "the mgmt gateway"}
	for _, n := range t.Nodes {
		if !n.MgmtIPv4.IsValid() {
			continue
		}
		if !usableHost(p, n.MgmtIPv4) {
			errs = append(errs, fmt.Errorf("node %s: mgmt-ipv4 %s is not a host address of the mgmt subnet %s", n.Name, n.MgmtIPv4, p))
			continue
		}
		if other, ok := used[n.MgmtIPv4]; ok {
			errs = append(errs, fmt.Errorf("node %s: mgmt-ipv4 %s is already used by %s", n.Name, n.MgmtIPv4, other))
			continue
		}
		used[n.MgmtIPv4] = "node " + n.Name
	}
	next := p.Addr().Next()
	for i := range t.Nodes {
		if t.Nodes[i].MgmtIPv4.IsValid() {
			continue
		}
		for next.IsValid() && p.Contains(next) && used[next] != "" {
			next = next.Next()
		}
		if !usableHost(p, next) {
			errs = append(errs, fmt.Errorf("node %s: mgmt subnet %s has no free address left", t.Nodes[i].Name, p))
			continue
		}
		t.Nodes[i].MgmtIPv4 = next
		used[next] = "node " + t.Nodes[i].Name
	}
	return errs
}

func buildLinks(raws []rawLink, nodes []Node) ([]Link, []error) {
	var errs []error
	known := map[string]bool{}
	for _, n := range nodes {
		known[n.Name] = true
	}
	used := map[Endpoint]int{}
	var links []Link
	for i, rl := range raws {
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("link %d: "+format, append([]any{i + 1}, args...)...))
		}
		if rl.Type != "" && rl.Type != "veth" {
			fail("type %q is not supported (only veth)", rl.Type)
			continue
		}
		if len(rl.Endpoints) != 2 {
			fail("want exactly 2 endpoints, got %d", len(rl.Endpoints))
			continue
		}
		l := Link{MTU: rl.MTU}
		if l.MTU == 0 {
			l.MTU = DefaultLinkMTU
		}
		if l.MTU < 68 || l.MTU > 65535 {
			fail("mtu %d out of range 68..65535", rl.MTU)
		}
		ok := true
		for j, re := range rl.Endpoints {
			ep := Endpoint{Node: re.Node, Interface: re.Interface}
			if err := checkEndpoint(ep, known); err != nil {
				fail("endpoint %s: %v", ep, err)
				ok = false
				continue
			}
			if prev, dup := used[ep]; dup {
				fail("interface %s is already used by link %d", ep, prev)
				ok = false
				continue
			}
			used[ep] = i + 1
			if j == 0 {
				l.A = ep
			} else {
				l.B = ep
			}
		}
		if ok {
			links = append(links, l)
		}
	}
	return links, errs
}

// specialEndpoints are containerlab pseudo-nodes that would put an interface
// outside the lab's namespaces.
var specialEndpoints = map[string]bool{"host": true, "mgmt-net": true, "macvlan": true, "macvtap": true, "vxlan": true, "vxlan-stitch": true, "dummy": true}

func checkEndpoint(ep Endpoint, known map[string]bool) error {
	switch {
	case ep.Node == "":
		return errors.New("node is missing")
	case specialEndpoints[ep.Node] && !known[ep.Node]:
		return fmt.Errorf("%q endpoints are not supported: every interface of the lab lives in a node namespace", ep.Node)
	case !known[ep.Node]:
		return fmt.Errorf("unknown node %q", ep.Node)
	}
	if err := checkIfName(ep.Interface); err != nil {
		return err
	}
	if ep.Interface == mgmtInterface || ep.Interface == "lo" {
		return fmt.Errorf("interface name %q is reserved (%s is the mgmt interface)", ep.Interface, mgmtInterface)
	}
	return nil
}

// checkIfName applies the kernel's dev_valid_name rules.
func checkIfName(s string) error {
	switch {
	case s == "":
		return errors.New("interface name is missing")
	case len(s) > 15:
		return fmt.Errorf("interface name %q is longer than 15 characters", s)
	case s == "." || s == "..":
		return fmt.Errorf("invalid interface name %q", s)
	case strings.ContainsAny(s, "/: \t\n\v\f\r\x00"):
		return fmt.Errorf("interface name %q contains '/', ':' or whitespace", s)
	}
	return nil
}

// Marshal renders t as a containerlab topology file: every node fully
// specified (merged settings, resolved mgmt address), links in the brief
// form when they use the default MTU. Parse(Marshal(t), t.Dir) gives t back.
func (t *Topology) Marshal() ([]byte, error) {
	type outNode struct {
		Kind     string            `yaml:"kind"`
		Image    string            `yaml:"image,omitempty"`
		Cmd      string            `yaml:"cmd,omitempty"`
		Exec     []string          `yaml:"exec,omitempty"`
		Binds    []string          `yaml:"binds,omitempty"`
		Env      map[string]string `yaml:"env,omitempty"`
		MgmtIPv4 string            `yaml:"mgmt-ipv4,omitempty"`
	}
	type outEndpoint struct {
		Node      string `yaml:"node"`
		Interface string `yaml:"interface"`
	}
	type outLink struct {
		Type      string `yaml:"type,omitempty"`
		MTU       int    `yaml:"mtu,omitempty"`
		Endpoints any    `yaml:"endpoints"`
	}
	nodes := &yaml.Node{Kind: yaml.MappingNode}
	for _, n := range t.Nodes {
		on := outNode{Kind: n.Kind, Image: n.Image, Cmd: n.Cmd, Exec: n.Exec, Env: n.Env}
		if n.MgmtIPv4.IsValid() {
			on.MgmtIPv4 = n.MgmtIPv4.String()
		}
		for _, b := range n.Binds {
			on.Binds = append(on.Binds, b.String())
		}
		var v yaml.Node
		if err := v.Encode(on); err != nil {
			return nil, fmt.Errorf("encoding node %s: %w", n.Name, err)
		}
		nodes.Content = append(nodes.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: n.Name}, &v)
	}
	var links []outLink
	for _, l := range t.Links {
		if l.MTU == DefaultLinkMTU {
			links = append(links, outLink{Endpoints: []string{l.A.String(), l.B.String()}})
			continue
		}
		links = append(links, outLink{Type: "veth", MTU: l.MTU, Endpoints: []outEndpoint{
			{l.A.Node, l.A.Interface}, {l.B.Node, l.B.Interface},
		}})
	}
	out := struct {
		Name string `yaml:"name"`
		Mgmt struct {
			Network    string `yaml:"network"`
			IPv4Subnet string `yaml:"ipv4-subnet"`
			IPv4Gw     string `yaml:"ipv4-gw"`
		} `yaml:"mgmt"`
		Topology struct {
			Nodes *yaml.Node `yaml:"nodes"`
			Links []outLink  `yaml:"links,omitempty"`
		} `yaml:"topology"`
	}{Name: t.Name}
	out.Mgmt.Network = t.Mgmt.Network
	out.Mgmt.IPv4Subnet = t.Mgmt.IPv4Subnet.String()
	out.Mgmt.IPv4Gw = t.Mgmt.IPv4Gateway.String()
	out.Topology.Nodes = nodes
	out.Topology.Links = links
	b, err := yaml.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encoding topology: %w", err)
	}
	return b, nil
}
