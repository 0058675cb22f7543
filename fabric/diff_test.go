package fabric_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalfabric/fabric/fabric"
	ft "github.com/metalfabric/fabric/fabric/fabrictest"
)

func actual(links ...fabric.Link) fabric.Actual { return fabric.Actual{Links: links} }

func strs(cs []fabric.Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}

func TestChangeString(t *testing.T) {
	tests := []struct {
		c    fabric.Change
		want string
	}{
		{fabric.Change{Op: fabric.OpAddLink, Kind: fabric.KindVRF, Link: "vrf10010", Table: 10010}, "add vrf vrf10010 table 10010"},
		{fabric.Change{Op: fabric.OpSetUp, Link: "vrf10010"}, "set vrf10010 up"},
		{fabric.Change{Op: fabric.OpSetMaster, Link: "swp1", Master: "vrf10010"}, "set swp1 master vrf10010"},
		{fabric.Change{Op: fabric.OpSetNoMaster, Link: "swp1", Master: "vrf10010"}, "set swp1 nomaster"},
		{fabric.Change{Op: fabric.OpDeleteLink, Kind: fabric.KindVRF, Link: "vrf10010"}, "delete vrf vrf10010"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name    string
		desired fabric.Desired
		actual  fabric.Actual
		want    []string
	}{
		{
			name:   "nothing desired, nothing there",
			actual: actual(ft.Loopback(), ft.Port("swp1")),
		},
		{
			name:    "new vrf with ports",
			desired: fabric.Desired{VRFs: []fabric.VRF{{Name: "vrf10010", Table: 10010, Ports: []string{"swp2", "swp1"}}}},
			actual:  actual(ft.Loopback(), ft.Port("swp1"), ft.Port("swp2"), ft.Port("swp3")),
			want: []string{
				"add vrf vrf10010 table 10010",
				"set vrf10010 up",
				"set swp1 master vrf10010",
				"set swp2 master vrf10010",
			},
		},
		{
			name:    "converged",
			desired: fabric.Desired{VRFs: []fabric.VRF{{Name: "vrf10010", Table: 10010, Ports: []string{"swp1"}}}},
			actual:  actual(ft.VRF("vrf10010", 10010, true), ft.In(ft.Port("swp1"), "vrf10010"), ft.Port("swp2")),
		},
		{
			name:    "marked vrf down is set up, ports kept",
			desired: fabric.Desired{VRFs: []fabric.VRF{{Name: "vrf10010", Table: 10010, Ports: []string{"swp1"}}}},
			actual: actual(
				fabric.Link{Name: "vrf10010", Kind: fabric.KindVRF, Alias: fabric.Marker, VRFTable: 10010},
				ft.In(ft.Port("swp1"), "vrf10010"),
			),
			want: []string{"set vrf10010 up"},
		},
		{
			name:    "port removed from vrf is released",
			desired: fabric.Desired{VRFs: []fabric.VRF{{Name: "vrf10010", Table: 10010, Ports: []string{"swp1"}}}},
			actual: actual(ft.VRF("vrf10010", 10010, true),
				ft.In(ft.Port("swp1"), "vrf10010"), ft.In(ft.Port("swp2"), "vrf10010")),
			want: []string{"set swp2 nomaster"},
		},
		{
			name: "vrf removed: ports released before the vrf is deleted",
			actual: actual(ft.VRF("vrf10010", 10010, true),
				ft.In(ft.Port("swp2"), "vrf10010"), ft.In(ft.Port("swp1"), "vrf10010")),
			want: []string{
				"set swp1 nomaster",
				"set swp2 nomaster",
				"delete vrf vrf10010",
			},
		},
		{
			name:    "port moves between vrfs directly, new vrf added before the old one is deleted",
			desired: fabric.Desired{VRFs: []fabric.VRF{{Name: "vrf20", Table: 20, Ports: []string{"swp1"}}}},
			actual:  actual(ft.VRF("vrf10", 10, true), ft.In(ft.Port("swp1"), "vrf10"), ft.In(ft.Port("swp2"), "vrf10")),
			want: []string{
				"add vrf vrf20 table 20",
				"set vrf20 up",
				"set swp1 master vrf20",
				"set swp2 nomaster",
				"delete vrf vrf10",
			},
		},
		{
			name: "all phases in order",
			desired: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "vrf30", Table: 30, Ports: []string{"swp3"}},
				{Name: "vrf20", Table: 20, Ports: []string{"swp2"}},
				{Name: "vrf10", Table: 10, Ports: []string{"swp1"}},
			}},
			actual: actual(
				ft.VRF("vrf10", 10, true), ft.In(ft.Port("swp1"), "vrf10"),
				ft.VRF("vrf40", 40, true), ft.In(ft.Port("swp4"), "vrf40"),
				ft.Port("swp2"), ft.Port("swp3"),
			),
			want: []string{
				"add vrf vrf20 table 20",
				"add vrf vrf30 table 30",
				"set vrf20 up",
				"set vrf30 up",
				"set swp2 master vrf20",
				"set swp3 master vrf30",
				"set swp4 nomaster",
				"delete vrf vrf40",
			},
		},
		{
			name:    "table change re-creates the vrf",
			desired: fabric.Desired{VRFs: []fabric.VRF{{Name: "vrf10", Table: 11, Ports: []string{"swp1"}}}},
			actual:  actual(ft.VRF("vrf10", 10, true), ft.In(ft.Port("swp1"), "vrf10"), ft.In(ft.Port("swp2"), "vrf10")),
			want: []string{
				"set swp1 nomaster",
				"set swp2 nomaster",
				"delete vrf vrf10",
				"add vrf vrf10 table 11",
				"set vrf10 up",
				"set swp1 master vrf10",
			},
		},
		{
			name: "unmarked vrf, its ports and other links are never touched",
			actual: actual(
				ft.VRF("mgmt", 1000, false), ft.In(ft.Port("eth0"), "mgmt"),
				fabric.Link{Name: "br0", Kind: fabric.KindBridge, AdminUp: true}, ft.In(ft.Port("swp9"), "br0"),
				fabric.Link{Name: "vrf10", Kind: fabric.KindVRF, VRFTable: 10, Alias: "someone else"},
			),
		},
		{
			name:    "a desired port is taken from a foreign master",
			desired: fabric.Desired{VRFs: []fabric.VRF{{Name: "vrf10", Table: 10, Ports: []string{"swp9"}}}},
			actual: actual(fabric.Link{Name: "br0", Kind: fabric.KindBridge, AdminUp: true},
				ft.In(ft.Port("swp9"), "br0"), ft.VRF("vrf10", 10, true)),
			want: []string{"set swp9 master vrf10"},
		},
		{
			name: "invalid input: foreign name and missing port are left out",
			desired: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "mgmt", Table: 1000, Ports: []string{"swp1"}},
				{Name: "vrf10", Table: 10, Ports: []string{"nope"}},
			}},
			actual: actual(ft.VRF("mgmt", 999, false), ft.Port("swp1")),
			want: []string{
				"add vrf vrf10 table 10",
				"set vrf10 up",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strs(fabric.Diff(tt.desired, tt.actual))
			if diff := cmp.Diff(tt.want, got, ft.CmpOpts); diff != "" {
				t.Errorf("Diff() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDiffConverges applies each diff to a fake kernel and checks that a
// second diff is empty and the kernel holds exactly the desired VRFs.
func TestDiffConverges(t *testing.T) {
	ports := []fabric.Link{ft.Loopback(), ft.Port("swp1"), ft.Port("swp2"), ft.Port("swp3"), ft.Port("swp4")}
	desireds := []fabric.Desired{
		{},
		{VRFs: []fabric.VRF{{Name: "vrf10", Table: 10, Ports: []string{"swp1", "swp2"}}}},
		{VRFs: []fabric.VRF{{Name: "vrf10", Table: 10, Ports: []string{"swp2"}}, {Name: "vrf20", Table: 20, Ports: []string{"swp1"}}}},
		{VRFs: []fabric.VRF{{Name: "vrf10", Table: 12, Ports: []string{"swp3"}}, {Name: "vrf20", Table: 20}}},
		{VRFs: []fabric.VRF{{Name: "vrf30", Table: 30, Ports: []string{"swp1", "swp2", "swp3", "swp4"}}}},
		{},
	}
	k := ft.New(ports...)
	r := fabric.NewReconciler(k)
	for i, d := range desireds {
		if _, err := r.Apply(t.Context(), d); err != nil {
			t.Fatalf("step %d: Apply: %v", i, err)
		}
		if got := fabric.Diff(d, k.State()); len(got) != 0 {
			t.Errorf("step %d: second Diff = %q, want none", i, strs(got))
		}
		want := d
		for j := range want.VRFs {
			if len(want.VRFs[j].Ports) == 0 {
				want.VRFs[j].Ports = nil
			}
		}
		if diff := cmp.Diff(want, k.State().Owned(), ft.CmpOpts); diff != "" {
			t.Errorf("step %d: owned state (-want +got):\n%s", i, diff)
		}
	}
}
