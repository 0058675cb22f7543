package nft

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// DefaultTable is the name of the inet table the package owns unless
// WithTable says otherwise.
const DefaultTable = "fabric"

// Action is what a rule does with matching packets.
type Action string

// Rule actions.
const (
	Accept Action = "accept"
	Drop   Action = "drop"
)

// Protocol is a rule's transport protocol.
type Protocol string

// Protocols. ProtoAny (also the empty string) matches every protocol.
const (
	ProtoAny  Protocol = "any"
	ProtoTCP  Protocol = "tcp"
	ProtoUDP  Protocol = "udp"
	ProtoICMP Protocol = "icmp" // ICMP for IPv4, ICMPv6 for IPv6
)

// PortRange is an inclusive range of destination ports; From == To for a
// single port.
type PortRange struct {
	From uint16 `json:"from"`
	To   uint16 `json:"to"`
}

// String returns "80" or "8000-8100".
func (r PortRange) String() string {
	if r.From == r.To {
		return fmt.Sprint(r.From)
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// Rule matches packets by the remote side's address (destination for
// egress, source for ingress and input), protocol and destination ports.
// Empty CIDRs match every address (both families); empty Ports every port.
type Rule struct {
	Action   Action         `json:"action"`
	Protocol Protocol       `json:"protocol,omitempty"`
	CIDRs    []netip.Prefix `json:"cidrs,omitempty"`
	Ports    []PortRange    `json:"ports,omitempty"`
	Comment  string         `json:"comment,omitempty"`
}

// NATMode is how a tenant's egress traffic is source-translated.
type NATMode string

// NAT modes. NATNone (also the empty string) translates nothing.
const (
	NATNone       NATMode = "none"
	NATMasquerade NATMode = "masquerade"
	// NATSNAT translates to EgressIPs, picking one per source address by
	// a hash of it (so a tenant host keeps its public address).
	NATSNAT NATMode = "snat"
)

// NAT is a tenant's source NAT. It applies to packets from the tenant's
// Prefixes leaving through Interfaces (any interface when empty).
type NAT struct {
	Mode       NATMode      `json:"mode,omitempty"`
	EgressIPs  []netip.Addr `json:"egressIPs,omitempty"`
	Interfaces []string     `json:"interfaces,omitempty"`
}

// RateLimit limits a tenant's traffic per direction; packets over the rate
// are dropped (and counted). Zero values mean no limit. At most one of the
// two rates may be set.
type RateLimit struct {
	PacketsPerSecond uint64 `json:"packetsPerSecond,omitempty"`
	BytesPerSecond   uint64 `json:"bytesPerSecond,omitempty"`
	// Burst in packets or bytes (with the rate's unit); 0 for the kernel's
	// default.
	Burst uint32 `json:"burst,omitempty"`
}

// Tenant is one tenant's firewall policy. Its traffic is identified by the
// interfaces it arrives on or leaves through (e.g. its VRF's devices) and
// by its prefixes: packets from the tenant go through Egress, packets to it
// through Ingress, both first-match in order, then dropped.
type Tenant struct {
	// Name identifies the tenant in chain, set and counter names:
	// 1-63 characters of letters, digits, '-', '.', '_'.
	Name       string         `json:"name"`
	Interfaces []string       `json:"interfaces,omitempty"`
	Prefixes   []netip.Prefix `json:"prefixes,omitempty"`
	Egress     []Rule         `json:"egress,omitempty"`
	Ingress    []Rule         `json:"ingress,omitempty"`
	NAT        NAT            `json:"nat,omitzero"`
	RateLimit  RateLimit      `json:"rateLimit,omitzero"`
}

// Policy is the whole firewall: the tenants, and the rules for traffic to
// the firewall itself (Input; loopback, established/related and ICMPv6 are
// always accepted). Everything else is dropped: the input and forward
// chains have policy drop.
type Policy struct {
	Tenants []Tenant `json:"tenants,omitempty"`
	Input   []Rule   `json:"input,omitempty"`
}

// Limits checked by Validate.
const (
	MaxNameLen    = 63
	MaxCommentLen = 128 // nft's own limit for comments
	maxIfNameLen  = 15
	maxEgressIPs  = 256
)

// ValidationError is a policy the package refuses before touching the
// kernel. Path names the offending part, e.g. "tenant a: egress rule 3".
type ValidationError struct {
	Path string
	Msg  string
}

func (e *ValidationError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

func verr(path, format string, args ...any) error {
	return &ValidationError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks a policy: names, interface names, canonical CIDRs of one
// address family per rule, port ranges (From <= To, not 0, only with tcp or
// udp), comment length, NAT settings, rate limits, and that no prefix or
// interface identifies two tenants. It returns every problem it finds,
// joined; each is a *ValidationError.
func Validate(p Policy) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for i, r := range p.Input {
		add(ValidateRule(fmt.Sprintf("input rule %d", i), r))
	}
	names := make(map[string]bool)
	ifOwner := make(map[string]string)
	type owned struct {
		p      netip.Prefix
		tenant string
	}
	var prefixes []owned
	for ti, t := range p.Tenants {
		path := fmt.Sprintf("tenant %d", ti)
		if err := ValidateName(t.Name); err != nil {
			add(verr(path, "%v", err))
			continue
		}
		path = "tenant " + t.Name
		if names[t.Name] {
			add(verr(path, "listed twice"))
			continue
		}
		names[t.Name] = true
		if len(t.Interfaces) == 0 && len(t.Prefixes) == 0 {
			add(verr(path, "neither interfaces nor prefixes identify the tenant's traffic"))
		}
		for _, ifn := range t.Interfaces {
			if err := validIfName(ifn); err != nil {
				add(verr(path, "interface: %v", err))
				continue
			}
			if o, ok := ifOwner[ifn]; ok {
				add(verr(path, "interface %s is also tenant %s's", ifn, o))
				continue
			}
			ifOwner[ifn] = t.Name
		}
		for _, pf := range t.Prefixes {
			if err := validPrefix(pf); err != nil {
				add(verr(path, "prefix: %v", err))
				continue
			}
			for _, o := range prefixes {
				if o.p.Overlaps(pf) && o.tenant != t.Name {
					add(verr(path, "prefix %s overlaps tenant %s's %s", pf, o.tenant, o.p))
				}
			}
			prefixes = append(prefixes, owned{pf, t.Name})
		}
		for i, r := range t.Egress {
			add(ValidateRule(fmt.Sprintf("%s: egress rule %d", path, i), r))
		}
		for i, r := range t.Ingress {
			add(ValidateRule(fmt.Sprintf("%s: ingress rule %d", path, i), r))
		}
		add(validNAT(path+": nat", t))
		add(validRate(path+": rate limit", t.RateLimit))
	}
	return errors.Join(errs...)
}

// ValidateName checks a tenant name.
func ValidateName(s string) error {
	if s == "" {
		return errors.New("name is empty")
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("name %q is longer than %d characters", s, MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' {
			continue
		}
		return fmt.Errorf("name %q contains %q: use letters, digits, '-', '.', '_'", s, c)
	}
	return nil
}

// ValidateRule checks one rule; path prefixes the error.
func ValidateRule(path string, r Rule) error {
	switch r.Action {
	case Accept, Drop:
	case "":
		return verr(path, "action is missing: want accept or drop")
	default:
		return verr(path, "action %q is not accept or drop", r.Action)
	}
	switch r.Protocol {
	case "", ProtoAny, ProtoTCP, ProtoUDP, ProtoICMP:
	default:
		return verr(path, "protocol %q is not one of tcp, udp, icmp, any", r.Protocol)
	}
	if len(r.Comment) > MaxCommentLen {
		return verr(path, "comment is %d bytes long: at most %d", len(r.Comment), MaxCommentLen)
	}
	if strings.ContainsAny(r.Comment, "\"\x00\n") {
		return verr(path, "comment contains a double quote, NUL or newline")
	}
	fam := 0
	for _, p := range r.CIDRs {
		if err := validPrefix(p); err != nil {
			return verr(path, "%v", err)
		}
		f := 4
		if p.Addr().Is6() {
			f = 6
		}
		if fam != 0 && f != fam {
			return verr(path, "mixes IPv4 and IPv6 CIDRs (%s): use one rule per address family", p)
		}
		fam = f
	}
	if len(r.Ports) > 0 && r.Protocol != ProtoTCP && r.Protocol != ProtoUDP {
		return verr(path, "ports need protocol tcp or udp, not %q", cmp.Or(r.Protocol, ProtoAny))
	}
	for _, pr := range r.Ports {
		if pr.From == 0 {
			return verr(path, "port range %s starts at port 0", pr)
		}
		if pr.From > pr.To {
			return verr(path, "port range %d-%d is reversed", pr.From, pr.To)
		}
	}
	return nil
}

func validPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("%q is not a valid CIDR", p)
	}
	if p.Addr().Is4In6() {
		return fmt.Errorf("%s is an IPv4-mapped IPv6 prefix: write it as IPv4", p)
	}
	if p.Addr().Zone() != "" {
		return fmt.Errorf("%s has a zone", p)
	}
	if p != p.Masked() {
		return fmt.Errorf("%s has host bits set (did you mean %s?)", p, p.Masked())
	}
	return nil
}

func validIfName(s string) error {
	if s == "" {
		return errors.New("interface name is empty")
	}
	if len(s) > maxIfNameLen {
		return fmt.Errorf("interface name %q is longer than %d bytes", s, maxIfNameLen)
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f || r == '"' || r == '*' {
			return fmt.Errorf("interface name %q contains %q", s, r)
		}
	}
	return nil
}

func validNAT(path string, t Tenant) error {
	n := t.NAT
	switch n.Mode {
	case "", NATNone:
		if len(n.EgressIPs) > 0 || len(n.Interfaces) > 0 {
			return verr(path, "egress IPs or interfaces given but NAT is off")
		}
		return nil
	case NATMasquerade:
		if len(n.EgressIPs) > 0 {
			return verr(path, "masquerade takes no egress IPs (it uses the outgoing interface's address); use mode snat")
		}
	case NATSNAT:
		if len(n.EgressIPs) == 0 {
			return verr(path, "snat needs at least one egress IP")
		}
		if len(n.EgressIPs) > maxEgressIPs {
			return verr(path, "%d egress IPs: at most %d", len(n.EgressIPs), maxEgressIPs)
		}
		seen := make(map[netip.Addr]bool)
		for _, a := range n.EgressIPs {
			if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
				return verr(path, "egress IP %q is not a plain IPv4 or IPv6 address", a)
			}
			if seen[a] {
				return verr(path, "egress IP %s is listed twice", a)
			}
			seen[a] = true
		}
	default:
		return verr(path, "mode %q is not one of none, masquerade, snat", n.Mode)
	}
	if len(t.Prefixes) == 0 {
		return verr(path, "NAT needs the tenant's prefixes (it matches on the source address)")
	}
	if n.Mode == NATSNAT {
		for _, f := range []bool{false, true} {
			hasPrefix := slices.ContainsFunc(t.Prefixes, func(p netip.Prefix) bool { return p.Addr().Is6() == f })
			hasIP := slices.ContainsFunc(n.EgressIPs, func(a netip.Addr) bool { return a.Is6() == f })
			if hasIP && !hasPrefix {
				return verr(path, "egress IPs of a family (%s) the tenant has no prefix of", famName(f))
			}
		}
	}
	for _, ifn := range n.Interfaces {
		if err := validIfName(ifn); err != nil {
			return verr(path, "%v", err)
		}
	}
	return nil
}

func famName(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

func validRate(path string, r RateLimit) error {
	if r.PacketsPerSecond > 0 && r.BytesPerSecond > 0 {
		return verr(path, "set packets or bytes per second, not both")
	}
	if r.Burst > 0 && r.PacketsPerSecond == 0 && r.BytesPerSecond == 0 {
		return verr(path, "burst without a rate")
	}
	return nil
}
