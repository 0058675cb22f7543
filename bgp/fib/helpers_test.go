package fib

import (
	"net/netip"

	"github.com/google/go-cmp/cmp/cmpopts"
)

// netipCmp makes go-cmp compare netip values with ==.
var netipCmp = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})
