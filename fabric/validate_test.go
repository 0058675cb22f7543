package fabric_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/metalfabric/fabric/fabric"
	ft "github.com/metalfabric/fabric/fabric/fabrictest"
)

func TestValidate(t *testing.T) {
	kernel := actual(
		ft.Loopback(), ft.Port("swp1"), ft.Port("swp2"), ft.Port("swp3"),
		ft.VRF("mgmt", 1000, false), ft.In(ft.Port("eth0"), "mgmt"),
		ft.VRF("vrf10", 10, true),
		fabric.Link{Name: "br0", Kind: fabric.KindBridge},
	)
	tests := []struct {
		name    string
		desired fabric.Desired
		want    []string // problems; nil = valid
	}{
		{name: "empty"},
		{
			name: "valid: marked vrf kept, new vrf, port from foreign vrf",
			desired: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "vrf10", Table: 10, Ports: []string{"swp1"}},
				{Name: "vrf20", Table: 20, Ports: []string{"swp2", "eth0"}},
			}},
		},
		{
			name: "duplicate names and tables",
			desired: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "vrf20", Table: 20},
				{Name: "vrf20", Table: 21},
				{Name: "vrf30", Table: 20},
			}},
			want: []string{
				"vrf vrf20 is listed more than once",
				"table 20 is used by vrf vrf20 and vrf vrf30",
			},
		},
		{
			name: "port in two vrfs, twice in one",
			desired: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "vrf20", Table: 20, Ports: []string{"swp1", "swp1"}},
				{Name: "vrf30", Table: 30, Ports: []string{"swp1"}},
			}},
			want: []string{
				"port swp1 is listed twice in vrf vrf20",
				"port swp1 is in vrf vrf20 and vrf vrf30",
			},
		},
		{
			name: "bad ports",
			desired: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "vrf20", Table: 20, Ports: []string{"swp9", "mgmt", "lo", "vrf30", ""}},
				{Name: "vrf30", Table: 30},
			}},
			want: []string{
				"port swp9 of vrf vrf20 does not exist",
				"port mgmt of vrf vrf20 is a vrf",
				"port lo of vrf vrf20 is a loopback",
				"port vrf30 of vrf vrf20 is a desired vrf",
				"vrf vrf20: empty port name",
			},
		},
		{
			name: "clash with foreign links",
			desired: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "mgmt", Table: 1000},
				{Name: "br0", Table: 40},
				{Name: "vrf50", Table: 1000},
			}},
			want: []string{
				`vrf mgmt: the name is taken by an unmarked vrf (alias ""), which is never changed`,
				"vrf br0: the name is taken by an existing bridge device",
				"table 1000 is used by vrf mgmt and vrf vrf50",
				"vrf vrf50: table 1000 is used by unmarked vrf mgmt",
			},
		},
		{
			name: "bad names and reserved tables",
			desired: fabric.Desired{VRFs: []fabric.VRF{
				{Name: "", Table: 20},
				{Name: "vrf-with-a-long-name", Table: 21},
				{Name: "a/b", Table: 22},
				{Name: "vrf0", Table: 0},
				{Name: "vrf254", Table: 254},
			}},
			want: []string{
				"vrf #0: empty name",
				`vrf #1: name "vrf-with-a-long-name" is longer than 15 bytes`,
				`vrf #2: name "a/b" contains '/', ':' or whitespace`,
				"vrf vrf0: table 0 is reserved (unspec)",
				"vrf vrf254: table 254 is reserved (main)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := fabric.Validate(tt.desired, kernel)
			var got []string
			if err != nil {
				var verr *fabric.ValidationError
				if !errors.As(err, &verr) {
					t.Fatalf("Validate() = %v, want a *ValidationError", err)
				}
				got = verr.Problems
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() problems (-want +got):\n%s", diff)
			}
		})
	}
}
