package fabric_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/metalfabric/fabric/fabric"
	ft "github.com/metalfabric/fabric/fabric/fabrictest"
)

// Benchmark size: 1000 VLANs on the bridge, 100 VRFs with L3VNIs, 48
// routed ports bound to them.
const (
	benchVLANs = 1000
	benchVRFs  = 100
	benchPorts = 48
)

func benchDesired() fabric.Desired {
	d := fabric.Desired{
		VTEP:      netip.MustParseAddr("10.0.0.1"),
		Bridge:    &fabric.Bridge{},
		VLANRange: fabric.VLANRange{Min: 2000, Max: 2999},
	}
	for v := uint16(1); v <= benchVLANs; v++ {
		d.Bridge.VLANs = append(d.Bridge.VLANs, v)
	}
	for i := range benchVRFs {
		vni := uint32(10000 + i)
		d.VRFs = append(d.VRFs, fabric.VRF{
			Name: fmt.Sprintf("vrf%d", vni), Table: vni,
			L3VNI: &fabric.L3VNI{VNI: vni, RouterMAC: net.HardwareAddr{2, 0xaa, 0, 0, byte(i >> 8), byte(i)}},
		})
	}
	for i := range benchPorts {
		d.Ports = append(d.Ports, fabric.Port{Name: fmt.Sprintf("swp%d", i+1), AdminUp: true, VRF: d.VRFs[i%benchVRFs].Name})
	}
	return d
}

// benchFake returns a fake kernel holding the benchmark's converged state
// (1000 bridge VLANs, 100 VRFs with L3VNIs, 48 bound ports).
func benchFake(tb testing.TB) (*ft.Kernel, fabric.Desired) {
	tb.Helper()
	links := []fabric.Link{ft.Loopback()}
	for i := range benchPorts {
		links = append(links, ft.Port(fmt.Sprintf("swp%d", i+1)))
	}
	k := ft.New(links...)
	d := benchDesired()
	if _, err := fabric.NewReconciler(k, fabric.WithLogger(discardLogger())).Apply(tb.Context(), d); err != nil {
		tb.Fatalf("Apply: %v", err)
	}
	return k, d
}

// BenchmarkNoopReconcile measures a no-op reconcile (read from the fake
// kernel, validate, diff) at the benchmark's size, on the host.
func BenchmarkNoopReconcile(b *testing.B) {
	k, d := benchFake(b)
	r := fabric.NewReconciler(k, fabric.WithLogger(discardLogger()))
	b.ResetTimer()
	for b.Loop() {
		plan, err := r.Plan(b.Context(), d)
		if err != nil || len(plan) != 0 {
			b.Fatalf("Plan: %d changes, %v", len(plan), err)
		}
	}
}

// BenchmarkDiffFromEmpty measures planning the whole benchmark state from an
// empty switch.
func BenchmarkDiffFromEmpty(b *testing.B) {
	links := []fabric.Link{ft.Loopback()}
	for i := range benchPorts {
		links = append(links, ft.Port(fmt.Sprintf("swp%d", i+1)))
	}
	a := fabric.Actual{Links: links}
	d := benchDesired()
	for b.Loop() {
		if err := fabric.Validate(d, a); err != nil {
			b.Fatal(err)
		}
		_ = fabric.Diff(d, a)
	}
}
