package fabric_test

import (
	"net/netip"
	"testing"

	"github.com/metalfabric/fabric/fabric"
)

func TestEventString(t *testing.T) {
	tests := []struct {
		e    fabric.Event
		want string
	}{
		{fabric.Event{Kind: fabric.EventLink, Op: fabric.EventAdd, Link: "veth0", Index: 3}, "link add veth0"},
		{fabric.Event{Kind: fabric.EventLink, Op: fabric.EventDelete, Index: 3}, "link delete if3"},
		{fabric.Event{Kind: fabric.EventAddr, Op: fabric.EventDelete, Link: "swp1", Prefix: netip.MustParsePrefix("10.0.0.1/24")}, "addr delete 10.0.0.1/24 on swp1"},
		{fabric.Event{Kind: fabric.EventRoute, Op: fabric.EventChange, Prefix: netip.MustParsePrefix("0.0.0.0/0"), Table: 10}, "route change 0.0.0.0/0 table 10 on -"},
		{fabric.Event{Kind: fabric.EventRoute, Op: fabric.EventAdd, Link: "vrf10", Prefix: netip.MustParsePrefix("ff00::/8"), Table: 10, KernelRoute: true}, "route add ff00::/8 table 10 proto kernel on vrf10"},
		{fabric.Event{Kind: fabric.EventResync}, "resync"},
	}
	for _, tt := range tests {
		if got := tt.e.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.e, got, tt.want)
		}
	}
}
