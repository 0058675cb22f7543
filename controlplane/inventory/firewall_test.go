package inventory_test

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalfabric/fabric/controlplane/inventory"
	"github.com/metalfabric/fabric/controlplane/model"
)

func TestFirewallPolicy(t *testing.T) {
	ctx := context.Background()
	inv, rec := newInv(t)
	must(inv.Register(ctx, model.Device{Hostname: "fw1", Role: model.RoleFirewall}))(t)
	must(inv.Register(ctx, leaf("leaf1", "swp1")))(t)
	n := must(inv.CreateNetwork(ctx, "tenant-a", "10.1.0.0/24"))(t)
	rec.take()

	p := model.FirewallPolicy{
		Network: "tenant-a",
		Egress: []model.FirewallRule{
			{Action: "drop", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Comment: "no private"},
			{Action: "accept", Protocol: "tcp", Ports: []model.PortRange{{From: 443, To: 443}}},
		},
		Ingress:   []model.FirewallRule{{Action: "accept", Protocol: "icmp"}},
		NAT:       true,
		EgressIPs: []netip.Addr{netip.MustParseAddr("203.0.113.10")},
	}
	got := must(inv.SetFirewallPolicy(ctx, p))(t)
	if diff := cmp.Diff(p, got, netipEqual); diff != "" {
		t.Errorf("SetFirewallPolicy (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(p, must(inv.FirewallPolicy(ctx, "tenant-a"))(t), netipEqual); diff != "" {
		t.Errorf("FirewallPolicy (-want +got):\n%s", diff)
	}
	// Only the firewall's config changes, and it carries the policy.
	pub := rec.take()
	if len(pub) != 1 || pub[0].Hostname != "fw1" {
		t.Fatalf("published %d configs (%v), want fw1's only", len(pub), pub)
	}
	want := []model.FirewallTenant{{FirewallPolicy: p, Prefix: n.Prefix, VNI: n.VNI, VRF: "vrf" + itoa(n.VNI)}}
	if diff := cmp.Diff(want, pub[0].Firewall, netipEqual); diff != "" {
		t.Errorf("fw1 config firewall (-want +got):\n%s", diff)
	}
	// Setting the same policy again changes no config.
	must(inv.SetFirewallPolicy(ctx, p))(t)
	if pub := rec.take(); len(pub) != 0 {
		t.Errorf("the same policy again published %d configs, want none", len(pub))
	}
	// Deleting the network removes its policy from the firewall.
	if err := inv.DeleteNetwork(ctx, "tenant-a"); err != nil {
		t.Fatal(err)
	}
	pub = rec.take()
	if len(pub) != 1 || len(pub[0].Firewall) != 0 {
		t.Errorf("after deleting the network: published %+v, want fw1 without firewall tenants", pub)
	}
	if _, err := inv.FirewallPolicy(ctx, "tenant-a"); !errors.Is(err, inventory.ErrNotFound) {
		t.Errorf("FirewallPolicy of a deleted network: %v, want ErrNotFound", err)
	}
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func TestFirewallPolicyInvalid(t *testing.T) {
	ctx := context.Background()
	inv, _ := newInv(t)
	must(inv.CreateNetwork(ctx, "tenant-a", "10.1.0.0/24"))(t)
	pf := netip.MustParsePrefix
	for _, tc := range []struct {
		name string
		p    model.FirewallPolicy
		kind error
		msg  string
	}{
		{"unknown network", model.FirewallPolicy{Network: "nope", NAT: true}, inventory.ErrNotFound, "network nope not found"},
		{"bad network name", model.FirewallPolicy{Network: "Bad Name"}, inventory.ErrInvalid, "network name"},
		{"mixed families", model.FirewallPolicy{Network: "tenant-a", Egress: []model.FirewallRule{
			{Action: "accept", CIDRs: []netip.Prefix{pf("10.0.0.0/8"), pf("2001:db8::/32")}}}},
			inventory.ErrInvalid, "egress rule 0: mixes IPv4 and IPv6 CIDRs (10.0.0.0/8 and 2001:db8::/32): use one rule per address family"},
		{"reversed ports", model.FirewallPolicy{Network: "tenant-a", Ingress: []model.FirewallRule{
			{Action: "accept", Protocol: "tcp", Ports: []model.PortRange{{From: 90, To: 80}}}}},
			inventory.ErrInvalid, "ingress rule 0: port range 90-80 is invalid"},
		{"ports without protocol", model.FirewallPolicy{Network: "tenant-a", Ingress: []model.FirewallRule{
			{Action: "accept", Ports: []model.PortRange{{From: 80, To: 80}}}}},
			inventory.ErrInvalid, "ports need protocol tcp or udp, not any"},
		{"long comment", model.FirewallPolicy{Network: "tenant-a", Egress: []model.FirewallRule{
			{Action: "accept", Comment: strings.Repeat("x", 200)}}},
			inventory.ErrInvalid, "comment is 200 bytes long: at most 128"},
		{"host bits", model.FirewallPolicy{Network: "tenant-a", Egress: []model.FirewallRule{
			{Action: "drop", CIDRs: []netip.Prefix{pf("10.0.0.1/8")}}}},
			inventory.ErrInvalid, "CIDR 10.0.0.1/8 has host bits set (did you mean 10.0.0.0/8?)"},
		{"no action", model.FirewallPolicy{Network: "tenant-a", Egress: []model.FirewallRule{{}}},
			inventory.ErrInvalid, "action is missing"},
		{"egress ips without nat", model.FirewallPolicy{Network: "tenant-a", EgressIPs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}},
			inventory.ErrInvalid, "egress IPs are given but NAT is off"},
		{"egress ip of the other family", model.FirewallPolicy{Network: "tenant-a", NAT: true, EgressIPs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}},
			inventory.ErrInvalid, "egress IP 2001:db8::1 is not of the address family of the network's prefix 10.1.0.0/24"},
	} {
		_, err := inv.SetFirewallPolicy(ctx, tc.p)
		if !errors.Is(err, tc.kind) || err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: SetFirewallPolicy: %v; want %v containing %q", tc.name, err, tc.kind, tc.msg)
		}
	}
}

// An external network puts its VRF on every firewall (and only there), and
// takes it away again when deleted; a tenant network with a policy gets one
// too.
func TestExternalNetworkOnFirewalls(t *testing.T) {
	ctx := context.Background()
	inv, rec := newInv(t)
	must(inv.Register(ctx, model.Device{Hostname: "fw1", Role: model.RoleFirewall}))(t)
	must(inv.Register(ctx, leaf("leaf1", "swp1")))(t)
	rec.take()
	inet := must(inv.CreateNetwork(ctx, "internet", "203.0.113.0/24", inventory.External()))(t)
	if !inet.External {
		t.Fatalf("CreateNetwork(External()) = %+v, not external", inet)
	}
	pub := rec.take()
	if len(pub) != 1 || pub[0].Hostname != "fw1" || len(pub[0].VRFs) != 1 || !pub[0].VRFs[0].External || pub[0].VRFs[0].VNI != inet.VNI {
		t.Fatalf("after creating the external network: published %+v, want fw1 with its VRF", pub)
	}
	if pub[0].VTEP != must(inv.Device(ctx, "fw1"))(t).Loopback {
		t.Errorf("fw1's VTEP %v is not its loopback", pub[0].VTEP)
	}
	a := must(inv.CreateNetwork(ctx, "tenant-a", "10.1.0.0/24"))(t)
	if pub := rec.take(); len(pub) != 0 {
		t.Errorf("a tenant network without policy published %d configs", len(pub))
	}
	must(inv.SetFirewallPolicy(ctx, model.FirewallPolicy{Network: "tenant-a", NAT: true}))(t)
	pub = rec.take()
	if len(pub) != 1 || len(pub[0].VRFs) != 2 || pub[0].VRFs[0].VNI != a.VNI && pub[0].VRFs[1].VNI != a.VNI {
		t.Fatalf("after tenant-a's policy: published %+v, want fw1 with two VRFs", pub)
	}
	if err := inv.DeleteNetwork(ctx, "internet"); err != nil {
		t.Fatal(err)
	}
	pub = rec.take()
	if len(pub) != 1 || len(pub[0].VRFs) != 1 || pub[0].VRFs[0].VNI != a.VNI {
		t.Errorf("after deleting the external network: published %+v, want fw1 with tenant-a's VRF only", pub)
	}
}
