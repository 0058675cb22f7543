package bgp

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// firewall is leaf() turned into a firewall: red is a tenant VRF that gets
// the default route, blue the internet VRF that gets an SNAT address; no
// machine sessions.
func firewall() Desired {
	d := leaf()
	d.VRFs = slices.Clone(d.VRFs)
	for i := range d.VRFs {
		d.VRFs[i].Machines = nil
	}
	d.VRFs[0].Originate = []netip.Prefix{pfx("198.51.100.7/32")} // blue
	d.VRFs[1].Originate = []netip.Prefix{pfx("0.0.0.0/0")}       // red
	return d
}

func TestOriginateExportsType5(t *testing.T) {
	h := newHarness(t, withoutVRF(withoutVRF(firewall(), "red"), "blue"))
	if err := h.r.Apply(t.Context(), firewall()); err != nil {
		t.Fatal(err)
	}
	var got []Path
	for _, p := range h.sp.originated() {
		if p.Family == EVPN {
			got = append(got, p)
		}
	}
	want := []Path{
		{Family: EVPN, Prefix: pfx("0.0.0.0/0"), NextHop: ourVTEP, RD: RD(routerID, 10), RouteTargets: []string{RT(testASN, 10)}, RouterMAC: macRed, VNI: 10},
		{Family: EVPN, Prefix: pfx("198.51.100.7/32"), NextHop: ourVTEP, RD: RD(routerID, 20), RouteTargets: []string{RT(testASN, 20)}, RouterMAC: macBlue, VNI: 20},
	}
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("EVPN originations (-want +got):\n%s", diff)
	}
	if o := h.fib.takeOps(); len(o) != 0 {
		t.Errorf("originations touched the FIB: %q", o)
	}
}

// A type-5 route of an originated prefix (another firewall's default) is
// neither installed nor handed on: the device routes its originations
// itself. Other imports of the VRF still are.
func TestOriginateIgnoresImportsOfIt(t *testing.T) {
	h := newHarness(t, firewall())
	h.sp.push(t,
		type5("0.0.0.0/0", vtepA, macA, 10, "65001:10"),
		type5("192.0.2.9/32", vtepA, macA, 10, "65001:10"),
	)
	want := []string{
		"+remote vx10 10.254.0.2 02:00:00:00:00:0a",
		"+route 10 192.0.2.9/32 [10.254.0.2@l3vni10 onlink]",
	}
	if diff := cmp.Diff(want, h.fib.takeOps()); diff != "" {
		t.Errorf("FIB ops (-want +got):\n%s", diff)
	}
	for _, p := range h.sp.originated() {
		if p.Family == EVPN && p.Prefix == pfx("0.0.0.0/0") && p.NextHop != ourVTEP {
			t.Errorf("re-originated another VTEP's default: %+v", p)
		}
	}
}

// Changing only a VRF's originations withdraws the old ones and exports
// the new ones; the rest stays.
func TestOriginateChange(t *testing.T) {
	h := newHarness(t, firewall())
	d := firewall()
	d.VRFs[0].Originate = []netip.Prefix{pfx("198.51.100.8/32")}
	if err := h.r.Apply(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Advertise l2vpn-evpn [10.255.0.1:20]198.51.100.8/32",
		"Withdraw l2vpn-evpn [10.255.0.1:20]198.51.100.7/32",
	}
	if diff := cmp.Diff(want, h.sp.takeCalls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	// Dropping them all withdraws them.
	d.VRFs[0].Originate, d.VRFs[1].Originate = nil, nil
	if err := h.r.Apply(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	for _, p := range h.sp.originated() {
		if p.Family == EVPN {
			t.Errorf("still originated: %+v", p)
		}
	}
}

func TestOriginateValidate(t *testing.T) {
	d := firewall()
	d.VRFs[1].Originate = []netip.Prefix{pfx("10.0.0.1/8")}
	if err := d.Validate(); err == nil {
		t.Error("a non-canonical originated prefix passed validation")
	}
}
