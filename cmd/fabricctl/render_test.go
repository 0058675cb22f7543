package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
)

func TestRender(t *testing.T) {
	m := &apiv1.Machine{
		Name:        "m1",
		Connections: []*apiv1.Connection{{Device: "leaf02", Port: "swp1"}, {Device: "leaf01", Port: "swp1"}},
		Allocation:  &apiv1.Allocation{Network: "tenant-a", Ip: "10.0.1.1", Revision: 7},
	}
	free := &apiv1.Machine{Name: "m2"}
	tests := []struct {
		name   string
		format string
		want   string
	}{
		{"table", "table", "" +
			"NAME  CONNECTIONS              WIRING   LIVENESS  NETWORK   IP\n" +
			"m1    leaf01:swp1,leaf02:swp1  learned  -         tenant-a  10.0.1.1\n" +
			"m2    -                        unknown  -         -         -\n"},
		{"json", "json", `{
  "machines": [
    {
      "name": "m1",
      "connections": [
        {
          "device": "leaf02",
          "port": "swp1"
        },
        {
          "device": "leaf01",
          "port": "swp1"
        }
      ],
      "allocation": {
        "network": "tenant-a",
        "ip": "10.0.1.1",
        "revision": "7"
      },
      "learned": [],
      "manual": false,
      "liveness": "LIVENESS_UNSPECIFIED",
      "lastSeen": null,
      "chassisId": ""
    },
    {
      "name": "m2",
      "connections": [],
      "allocation": null,
      "learned": [],
      "manual": false,
      "liveness": "LIVENESS_UNSPECIFIED",
      "lastSeen": null,
      "chassisId": ""
    }
  ]
}
`},
		{"yaml", "yaml", `machines:
    - allocation:
        ip: 10.0.1.1
        network: tenant-a
        revision: "7"
      chassisId: ""
      connections:
        - device: leaf02
          port: swp1
        - device: leaf01
          port: swp1
      lastSeen: null
      learned: []
      liveness: LIVENESS_UNSPECIFIED
      manual: false
      name: m1
    - allocation: null
      chassisId: ""
      connections: []
      lastSeen: null
      learned: []
      liveness: LIVENESS_UNSPECIFIED
      manual: false
      name: m2
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			resp := &apiv1.ListMachinesResponse{Machines: []*apiv1.Machine{m, free}}
			if err := render(&buf, tt.format, resp, machineTable(resp.GetMachines()...)); err != nil {
				t.Fatal(err)
			}
			got, want := buf.String(), tt.want
			if tt.format == "json" {
				// protojson varies its whitespace on purpose: compare values.
				got, want = canonicalJSON(t, got), canonicalJSON(t, want)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("render %s (-want +got):\n%s", tt.format, diff)
			}
		})
	}
}

func canonicalJSON(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("invalid json %q: %v", s, err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseConnections(t *testing.T) {
	got, err := parseConnections([]string{"leaf01:swp1", "leaf02:swp2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].GetDevice() != "leaf02" || got[1].GetPort() != "swp2" {
		t.Errorf("parseConnections = %v", got)
	}
	for _, bad := range []string{"leaf01", ":swp1", "leaf01:", ""} {
		if _, err := parseConnections([]string{bad}); err == nil {
			t.Errorf("parseConnections(%q): want error", bad)
		}
	}
}

func TestParsePlan(t *testing.T) {
	got, err := parsePlan([]string{"swp1=machine01", "swp2=spine1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].GetPort() != "swp1" || got[0].GetNeighbor() != "machine01" {
		t.Errorf("parsePlan = %v", got)
	}
	for _, bad := range []string{"swp1", "=m", "swp1=", ""} {
		if _, err := parsePlan([]string{bad}); err == nil {
			t.Errorf("parsePlan(%q): want error", bad)
		}
	}
}
