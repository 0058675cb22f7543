package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/fabric"
	"github.com/metalfabric/fabric/nft"
)

func fwConfig() *apiv1.DeviceConfig {
	return &apiv1.DeviceConfig{
		Hostname: "fw01", Role: apiv1.Role_ROLE_FIREWALL, Asn: 65009, Loopback: "10.255.0.9/32", Vtep: "10.255.0.9",
		Underlay: []*apiv1.UnderlayPeer{{Port: "swp2", Peer: "leaf02"}, {Port: "swp1", Peer: "leaf01"}},
		Vrfs: []*apiv1.Vrf{
			{Name: "vrf10", Vni: 10, Table: 10, Network: "tenant-a", L3Vni: true},
			{Name: "vrf12", Vni: 12, Table: 12, Network: "internet", L3Vni: true, External: true},
		},
		Firewall: []*apiv1.FirewallTenant{{
			Prefix: "10.0.1.0/24", Vni: 10, Vrf: "vrf10",
			Policy: &apiv1.FirewallPolicy{
				Network: "tenant-a", Nat: true, EgressIps: []string{"203.0.113.200"},
				Egress: []*apiv1.FirewallRule{
					{Action: "drop", Protocol: "tcp", Ports: []*apiv1.PortRange{{From: 8080, To: 8080}}},
					{Action: "accept"},
				},
			},
		}},
	}
}

// fwState is the kernel with the internet VRF's L3VNI (VNI 12) on VLAN 1001.
func fwState() fabric.Actual {
	return fabric.Actual{
		Links: []fabric.Link{{Name: "vxlan12", Kind: fabric.KindVXLAN, Alias: fabric.Marker}},
		VLANs: []fabric.BridgeVLAN{{Link: "vxlan12", VID: 1001, PVID: true, Untagged: true}},
	}
}

func TestPlanFirewall(t *testing.T) {
	plan, err := planFirewall(fwConfig(), fwState())
	if err != nil {
		t.Fatal(err)
	}
	wantLeaks := []LeakRoute{
		{Table: 10, Prefix: netip.MustParsePrefix("0.0.0.0/0"), Dev: "vrf12"},
		{Table: 12, Prefix: netip.MustParsePrefix("10.0.1.0/24"), Dev: "vrf10"},
	}
	if diff := cmp.Diff(wantLeaks, plan.leaks, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("leaks (-want +got):\n%s", diff)
	}
	// Default into the tenant VNI, the egress IP into the internet VNI;
	// never the tenant's prefix into the internet.
	wantOrig := map[string][]netip.Prefix{
		"vrf10": {netip.MustParsePrefix("0.0.0.0/0")},
		"vrf12": {netip.MustParsePrefix("203.0.113.200/32")},
	}
	if diff := cmp.Diff(wantOrig, plan.originate, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("originations (-want +got):\n%s", diff)
	}
	if err := nft.Validate(plan.policy); err != nil {
		t.Fatalf("policy does not validate: %v", err)
	}
	if len(plan.policy.Tenants) != 2 || plan.policy.Tenants[0].Name != underlayTenant || plan.policy.Tenants[1].Name != "tenant-a" {
		t.Fatalf("tenants %+v, want the underlay transit and tenant-a", plan.policy.Tenants)
	}
	if got := plan.policy.Tenants[0].Interfaces; !cmp.Equal(got, []string{"swp1", "swp2"}) {
		t.Errorf("underlay transit interfaces %v", got)
	}
	ta := plan.policy.Tenants[1]
	wantNAT := nft.NAT{Mode: nft.NATSNAT, EgressIPs: []netip.Addr{netip.MustParseAddr("203.0.113.200")}, Interfaces: []string{"vrf12", "vlan1001"}}
	if diff := cmp.Diff(wantNAT, ta.NAT, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("NAT (-want +got):\n%s", diff)
	}
	if !cmp.Equal(ta.Interfaces, []string{"vrf10"}) || len(ta.Egress) != 2 || ta.Egress[0].Ports[0] != (nft.PortRange{From: 8080, To: 8080}) {
		t.Errorf("tenant-a %+v", ta)
	}
	if len(plan.problems) != 0 {
		t.Errorf("problems %v", plan.problems)
	}
	// Without the external L3VNI in the kernel yet: NAT on the VRF only,
	// and said so.
	if p2, err := planFirewall(fwConfig(), fabric.Actual{}); err != nil || len(p2.problems) != 1 || len(p2.policy.Tenants[1].NAT.Interfaces) != 1 {
		t.Errorf("without the external SVI: problems %v, NAT %+v, err %v", p2.problems, p2.policy.Tenants[1].NAT, err)
	}
	// The routing conversion carries the originations.
	d, err := routingFromProto(fwConfig(), fwState())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range d.VRFs {
		if !cmp.Equal(v.Originate, wantOrig[v.Name], cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) {
			t.Errorf("routing VRF %s originates %v, want %v", v.Name, v.Originate, wantOrig[v.Name])
		}
	}
}

func TestPlanFirewallNATWithoutEgressIPs(t *testing.T) {
	cfg := fwConfig()
	cfg.Firewall[0].Policy.EgressIps = nil
	plan, err := planFirewall(cfg, fwState())
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.problems) != 1 {
		t.Errorf("problems %v, want one about the missing egress IPs", plan.problems)
	}
	if _, ok := plan.originate["vrf12"]; ok {
		t.Errorf("originates into the internet without egress IPs: %v", plan.originate)
	}
}

func TestPlanFirewallNoExternal(t *testing.T) {
	cfg := fwConfig()
	cfg.Vrfs = cfg.Vrfs[:1]
	plan, err := planFirewall(cfg, fwState())
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.leaks) != 0 || len(plan.originate) != 0 {
		t.Errorf("without an external VRF: leaks %v, originations %v", plan.leaks, plan.originate)
	}
}

type fakePolicy struct {
	got *nft.Policy
	err error
}

func (f *fakePolicy) Apply(_ context.Context, p nft.Policy) (nft.ApplyResult, error) {
	f.got = &p
	return nft.ApplyResult{}, f.err
}

type fakeLeaker struct {
	got []LeakRoute
	err error
}

func (f *fakeLeaker) Sync(_ context.Context, rs []LeakRoute) error { f.got = rs; return f.err }

func TestApplyFirewallSteps(t *testing.T) {
	fp, fl := &fakePolicy{err: errors.New("netlink: boom")}, &fakeLeaker{err: errors.Join(errors.New("a"), errors.New("b"))}
	a := &Agent{log: slog.New(slog.DiscardHandler)}
	WithFirewall(fp, fl)(a)
	errs := a.applyFirewall(t.Context(), fwConfig(), fwState())
	var steps []string
	for _, e := range errs {
		steps = append(steps, e.Step)
	}
	if diff := cmp.Diff([]string{"nft: apply policy", "leak: sync routes", "leak: sync routes"}, steps); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	if fp.got == nil || len(fl.got) != 2 {
		t.Errorf("policy %v, leaks %v: the leaks must be synced although nft failed", fp.got, fl.got)
	}
}

// A public prefix is leaked from the internet VRF into the tenant VRF and
// announced into the internet VNI with the egress IP.
func TestPlanFirewallPublic(t *testing.T) {
	cfg := fwConfig()
	cfg.Firewall[0].Policy.PublicPrefixes = []string{"203.0.113.50/32"}
	plan, err := planFirewall(cfg, fwState())
	if err != nil {
		t.Fatal(err)
	}
	pfx := cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
	wantLeaks := []LeakRoute{
		{Table: 10, Prefix: netip.MustParsePrefix("0.0.0.0/0"), Dev: "vrf12"},
		{Table: 12, Prefix: netip.MustParsePrefix("10.0.1.0/24"), Dev: "vrf10"},
		{Table: 12, Prefix: netip.MustParsePrefix("203.0.113.50/32"), Dev: "vrf10"},
	}
	if diff := cmp.Diff(wantLeaks, plan.leaks, pfx); diff != "" {
		t.Errorf("leaks (-want +got):\n%s", diff)
	}
	want := []netip.Prefix{netip.MustParsePrefix("203.0.113.50/32"), netip.MustParsePrefix("203.0.113.200/32")}
	if diff := cmp.Diff(want, plan.originate["vrf12"], pfx); diff != "" {
		t.Errorf("originated into the internet VNI (-want +got):\n%s", diff)
	}
	cfg.Firewall[0].Policy.PublicPrefixes = []string{"nope"}
	if _, err := planFirewall(cfg, fwState()); err == nil {
		t.Error("a malformed public prefix planned fine")
	}
}
