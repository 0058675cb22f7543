package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"

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
        "revision": "7",
        "announce": []
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
        announce: []
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

// TestRenderDeviceShow: device show ends with the BGP sessions and FIB
// counters when the agent reported routing, and has no such section
// otherwise.
func TestRenderDeviceShow(t *testing.T) {
	device := func(r *apiv1.Routing) *apiv1.Device {
		return &apiv1.Device{Hostname: "leaf01", Role: apiv1.Role_ROLE_LEAF, Loopback: "10.255.0.1/32",
			DesiredVersion: 5, AppliedVersion: 5, Connected: true, Asn: 4210000001,
			Ports:     []*apiv1.Port{{Name: "swp1", OperUp: true}, {Name: "swp51", OperUp: true}},
			Neighbors: []*apiv1.Neighbor{{Port: "swp51", ChassisId: "c-spine1", PortId: "swp1", SystemName: "spine1"}},
			Routing:   r}
	}
	const head = "" +
		"FIELD      VALUE\n" +
		"hostname   leaf01\n" +
		"role       leaf\n" +
		"loopback   10.255.0.1/32\n" +
		"ports      2\n" +
		"desired    5\n" +
		"applied    5\n" +
		"sync       in sync\n" +
		"connected  true\n" +
		"drift      0 repaired, 0 unmanaged\n" +
		"last seen  -\n" +
		"errors     -\n" +
		"asn        4210000001\n" +
		"\n" +
		"PORT   UP    NEIGHBOUR  NEIGHBOUR PORT  CHASSIS ID  LAST SEEN\n" +
		"swp1   true  -          -               -           -\n" +
		"swp51  true  spine1     swp1            c-spine1    -\n"
	tests := []struct {
		name string
		d    *apiv1.Device
		want string
	}{
		{"no routing reported", device(nil), head},
		{"sessions and FIB", device(&apiv1.Routing{
			Sessions: []*apiv1.BgpSession{
				{Peer: "swp51", Description: "spine1", Address: "fe80::1", Asn: 4210000002, State: "established",
					Uptime: durationpb.New(90*time.Minute + 1500*time.Millisecond), Received: 12, Accepted: 12, Installed: 11},
				{Peer: "swp1", Vrf: "vrf10000", Description: "machine01", Asn: 4259999999, State: "active", Received: 3, Accepted: 1, Rejected: 2},
			},
			RoutesInstalled: 40, InstallFailures: 1, FailedRoutes: []string{"10.9.0.0/16: no such device"},
			EvpnExported: 2, EvpnImported: 5,
		}), head +
			"\n" +
			"BGP PEER  VRF       NEIGHBOUR  ASN         STATE        UPTIME   RECEIVED  ACCEPTED  REJECTED  INSTALLED\n" +
			"swp51     -         spine1     4210000002  established  1h30m2s  12        12        0         11\n" +
			"swp1      vrf10000  machine01  4259999999  active       0s       3         1         2         0\n" +
			"\n" +
			"FIB                   VALUE\n" +
			"routes installed      40\n" +
			"install failures      1\n" +
			"evpn type-5 exported  2\n" +
			"evpn type-5 imported  5\n" +
			"failed                10.9.0.0/16: no such device\n"},
		{"routing without sessions", device(&apiv1.Routing{}), head +
			"\n" +
			"BGP PEER  VRF  NEIGHBOUR  ASN  STATE  UPTIME  RECEIVED  ACCEPTED  REJECTED  INSTALLED\n" +
			"\n" +
			"FIB                   VALUE\n" +
			"routes installed      0\n" +
			"install failures      0\n" +
			"evpn type-5 exported  0\n" +
			"evpn type-5 imported  0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := render(&buf, "table", tt.d, deviceShowTable(tt.d)); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, buf.String()); diff != "" {
				t.Errorf("device show (-want +got):\n%s", diff)
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
