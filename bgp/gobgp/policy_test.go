package gobgp

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	api "github.com/osrg/gobgp/v3/api"
)

// TestExportPolicy: without upstream peers only the EVPN next-hop
// statement (an empty set would match every peer); with some, a
// valley-free reject first, matching the upstream neighbours as
// destination and their ASes right after ours (GoBGP prepends before the
// export policy).
func TestExportPolicy(t *testing.T) {
	sets, pol := exportPolicy(nil)
	if len(sets) != 0 || len(pol.Statements) != 1 || pol.Statements[0].Name != "evpn-nexthop-unchanged" {
		t.Fatalf("no upstream: sets %v, statements %v", sets, pol.Statements)
	}
	sets, pol = exportPolicy([]upstream{
		{Neighbor: netip.MustParseAddr("fe80::2%swp32"), ASN: 65002},
		{Neighbor: netip.MustParseAddr("fe80::1%swp31"), ASN: 65001},
	})
	var got []string
	for _, s := range sets {
		got = append(got, fmt.Sprintf("%s %v", s.Name, s.List))
	}
	want := []string{"fabric-upstream [fe80::1/128 fe80::2/128]", "fabric-from-upstream [^[0-9]+_65001_ ^[0-9]+_65002_]"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sets (-want +got):\n%s", diff)
	}
	if len(pol.Statements) != 2 || pol.Statements[0].Name != "valley-free" ||
		pol.Statements[0].Actions.RouteAction != api.RouteAction_REJECT || pol.Statements[1].Name != "evpn-nexthop-unchanged" {
		t.Errorf("statements %v", pol.Statements)
	}
}
