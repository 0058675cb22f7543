package nft

import (
	"fmt"
	"strconv"
	"strings"
)

// Counter kinds.
const (
	KindAccepted    = "accepted"    // packets a chain accepted
	KindDropped     = "dropped"     // packets a chain dropped (by rule or at its end)
	KindRateLimited = "ratelimited" // packets over the tenant's rate limit (also dropped)
	KindRule        = "rule"        // packets one rule matched
	KindTranslated  = "translated"  // new connections source-NATed
)

// Chains named in counters: the tenant's own chains, and the two global
// base chains.
const (
	ChainEgress  = "egress"
	ChainIngress = "ingress"
	ChainNAT     = "nat"
	ChainInput   = "input"
	ChainForward = "forward"
)

// CounterName is the parsed name of one of the table's named counters:
//
//	forward/dropped
//	input/accepted, input/dropped, input/rule/<n>
//	<tenant>/egress/<kind>, <tenant>/ingress/<kind>  (accepted, dropped, ratelimited)
//	<tenant>/egress/rule/<n>, <tenant>/ingress/rule/<n>
//	<tenant>/nat/translated
//
// Tenant names cannot contain '/', so the form is unambiguous.
type CounterName struct {
	Tenant string // empty for forward and input
	Chain  string
	Kind   string
	Rule   int // index of the rule in its list for KindRule, else 0
}

// String returns the counter's object name.
func (c CounterName) String() string {
	var b strings.Builder
	if c.Tenant != "" {
		b.WriteString(c.Tenant)
		b.WriteByte('/')
	}
	b.WriteString(c.Chain)
	b.WriteByte('/')
	b.WriteString(c.Kind)
	if c.Kind == KindRule {
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(c.Rule))
	}
	return b.String()
}

// ParseCounterName parses a counter object name written by this package.
func ParseCounterName(s string) (CounterName, error) {
	parts := strings.Split(s, "/")
	bad := func(why string) (CounterName, error) {
		return CounterName{}, fmt.Errorf("counter name %q: %s", s, why)
	}
	var c CounterName
	switch {
	case len(parts) >= 1 && (parts[0] == ChainForward || parts[0] == ChainInput) && (len(parts) == 2 || len(parts) == 3 && parts[1] == KindRule):
		c.Chain = parts[0]
		parts = parts[1:]
	case len(parts) == 3 || len(parts) == 4:
		if err := ValidateName(parts[0]); err != nil {
			return bad("tenant " + err.Error())
		}
		c.Tenant, c.Chain = parts[0], parts[1]
		parts = parts[2:]
	default:
		return bad("want <chain>/<kind> or <tenant>/<chain>/<kind>")
	}
	c.Kind = parts[0]
	if !validKind(c) {
		return bad(fmt.Sprintf("no %q counter in chain %q", c.Kind, c.Chain))
	}
	if c.Kind == KindRule {
		if len(parts) != 2 {
			return bad("rule counter without a rule number")
		}
		n, err := strconv.Atoi(parts[1])
		if err != nil || n < 0 || strconv.Itoa(n) != parts[1] {
			return bad(fmt.Sprintf("rule number %q is not a canonical non-negative integer", parts[1]))
		}
		c.Rule = n
	} else if len(parts) != 1 {
		return bad("trailing parts")
	}
	return c, nil
}

func validKind(c CounterName) bool {
	switch c.Chain {
	case ChainForward:
		return c.Tenant == "" && c.Kind == KindDropped
	case ChainInput:
		return c.Tenant == "" && (c.Kind == KindAccepted || c.Kind == KindDropped || c.Kind == KindRule)
	case ChainEgress, ChainIngress:
		return c.Tenant != "" && (c.Kind == KindAccepted || c.Kind == KindDropped || c.Kind == KindRateLimited || c.Kind == KindRule)
	case ChainNAT:
		return c.Tenant != "" && c.Kind == KindTranslated
	}
	return false
}

// Counter is one named counter's value.
type Counter struct {
	CounterName
	Name    string
	Packets uint64
	Bytes   uint64
}
