package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
)

// render prints msg as JSON or YAML (the API's JSON mapping), or rows as an
// aligned table whose first row is the header.
func render(w io.Writer, format string, msg proto.Message, rows [][]string) error {
	switch format {
	case "json", "yaml":
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}.Marshal(msg)
		if err != nil {
			return fmt.Errorf("encoding json: %w", err)
		}
		if format == "json" {
			_, err = fmt.Fprintf(w, "%s\n", b)
			return err
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("re-reading json for yaml: %w", err)
		}
		out, err := yaml.Marshal(v)
		if err != nil {
			return fmt.Errorf("encoding yaml: %w", err)
		}
		_, err = w.Write(out)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func networkTable(nets ...*apiv1.Network) [][]string {
	rows := [][]string{{"NAME", "PREFIX", "VNI", "PARENT", "USAGE"}}
	for _, n := range nets {
		rows = append(rows, []string{n.GetName(), n.GetPrefix(), strconv.FormatUint(uint64(n.GetVni()), 10), orDash(n.GetParent()),
			strconv.FormatUint(uint64(n.GetAllocated()), 10) + "/" + strconv.FormatUint(n.GetCapacity(), 10)})
	}
	return rows
}

func deviceTable(r *apiv1.ListDevicesResponse) [][]string {
	rows := [][]string{{"HOSTNAME", "ROLE", "LOOPBACK", "PORTS", "DESIRED", "APPLIED", "SYNC", "CONNECTED", "DRIFT", "LAST SEEN", "ERRORS"}}
	for _, d := range r.GetDevices() {
		sync := "in sync"
		switch {
		case len(d.GetErrors()) > 0:
			sync = "error"
		case d.GetAppliedVersion() < d.GetDesiredVersion():
			sync = "pending"
		}
		seen := "-"
		if ts := d.GetLastSeen(); ts != nil {
			seen = ts.AsTime().UTC().Format(time.RFC3339)
		}
		errs := make([]string, 0, len(d.GetErrors()))
		for _, e := range d.GetErrors() {
			errs = append(errs, e.GetStep()+": "+e.GetMessage())
		}
		drift := fmt.Sprintf("%d repaired, %d unmanaged", d.GetDrift().GetRepairs(), d.GetDrift().GetUnmanagedChanges())
		if last := d.GetDrift().GetLastUnmanaged(); last != "" {
			drift += " (last: " + last + ")"
		}
		rows = append(rows, []string{
			d.GetHostname(), roleName(d.GetRole()), orDash(d.GetLoopback()), strconv.Itoa(len(d.GetPorts())),
			strconv.FormatUint(d.GetDesiredVersion(), 10), strconv.FormatUint(d.GetAppliedVersion(), 10),
			sync, strconv.FormatBool(d.GetConnected()), drift, seen, orDash(strings.Join(errs, "; ")),
		})
	}
	return rows
}

func machineTable(ms ...*apiv1.Machine) [][]string {
	rows := [][]string{{"NAME", "CONNECTIONS", "WIRING", "LIVENESS", "NETWORK", "IP"}}
	for _, m := range ms {
		a := m.GetAllocation()
		rows = append(rows, []string{m.GetName(), orDash(connList(m.GetConnections())), wiring(m), liveness(m.GetLiveness()), orDash(a.GetNetwork()), orDash(a.GetIp())})
	}
	return rows
}

func connList(cs []*apiv1.Connection) string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.GetDevice()+":"+c.GetPort())
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func wiring(m *apiv1.Machine) string {
	switch {
	case m.GetManual():
		return "manual"
	case len(m.GetConnections()) > 0:
		return "learned"
	}
	return "unknown"
}

func liveness(l apiv1.Liveness) string {
	if l == apiv1.Liveness_LIVENESS_UNSPECIFIED {
		return "-"
	}
	return strings.ToLower(strings.TrimPrefix(l.String(), "LIVENESS_"))
}

func timeOrDash(ts interface{ AsTime() time.Time }, ok bool) string {
	if !ok {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// machineShowTable is one machine as FIELD VALUE rows.
func machineShowTable(m *apiv1.Machine) [][]string {
	a := m.GetAllocation()
	alloc := "free"
	if a != nil {
		alloc = a.GetNetwork() + " " + a.GetIp() + " (revision " + strconv.FormatUint(a.GetRevision(), 10) + ")"
	}
	return [][]string{
		{"FIELD", "VALUE"},
		{"name", m.GetName()},
		{"connections", orDash(connList(m.GetConnections()))},
		{"wiring", wiring(m)},
		{"learned", orDash(connList(m.GetLearned()))},
		{"chassis id", orDash(m.GetChassisId())},
		{"liveness", liveness(m.GetLiveness())},
		{"last seen", timeOrDash(m.GetLastSeen(), m.GetLastSeen() != nil)},
		{"allocation", alloc},
	}
}

// deviceShowTable is one device: a summary, then its ports with their
// LLDP neighbours.
func deviceShowTable(d *apiv1.Device) [][]string {
	summary := deviceTable(&apiv1.ListDevicesResponse{Devices: []*apiv1.Device{d}})
	rows := [][]string{{"FIELD", "VALUE"}}
	for i, h := range summary[0] {
		rows = append(rows, []string{strings.ToLower(h), summary[1][i]})
	}
	rows = append(rows, []string{"asn", strconv.FormatUint(uint64(d.GetAsn()), 10)}, nil) // an empty line ends the column block
	rows = append(rows, []string{"PORT", "UP", "NEIGHBOUR", "NEIGHBOUR PORT", "CHASSIS ID", "LAST SEEN"})
	byPort := make(map[string][]*apiv1.Neighbor)
	for _, n := range d.GetNeighbors() {
		byPort[n.GetPort()] = append(byPort[n.GetPort()], n)
	}
	seen := make(map[string]bool)
	for _, p := range d.GetPorts() {
		seen[p.GetName()] = true
		nbrs := byPort[p.GetName()]
		if len(nbrs) == 0 {
			rows = append(rows, []string{p.GetName(), strconv.FormatBool(p.GetOperUp()), "-", "-", "-", "-"})
		}
		for _, n := range nbrs {
			rows = append(rows, neighborRow(p.GetName(), strconv.FormatBool(p.GetOperUp()), n))
		}
	}
	for _, n := range d.GetNeighbors() {
		if !seen[n.GetPort()] {
			rows = append(rows, neighborRow(n.GetPort(), "-", n))
		}
	}
	r := d.GetRouting()
	if r == nil {
		return rows
	}
	rows = append(rows, nil, []string{"BGP PEER", "VRF", "NEIGHBOUR", "ASN", "STATE", "UPTIME", "RECEIVED", "ACCEPTED", "REJECTED", "INSTALLED"})
	for _, s := range r.GetSessions() {
		rows = append(rows, []string{
			s.GetPeer(), orDash(s.GetVrf()), orDash(s.GetDescription()), strconv.FormatUint(uint64(s.GetAsn()), 10), s.GetState(),
			s.GetUptime().AsDuration().Round(time.Second).String(),
			strconv.FormatUint(s.GetReceived(), 10), strconv.FormatUint(s.GetAccepted(), 10),
			strconv.FormatUint(s.GetRejected(), 10), strconv.FormatUint(s.GetInstalled(), 10),
		})
	}
	rows = append(rows, nil, []string{"FIB", "VALUE"},
		[]string{"routes installed", strconv.FormatUint(r.GetRoutesInstalled(), 10)},
		[]string{"install failures", strconv.FormatUint(r.GetInstallFailures(), 10)},
		[]string{"evpn type-5 exported", strconv.FormatUint(r.GetEvpnExported(), 10)},
		[]string{"evpn type-5 imported", strconv.FormatUint(r.GetEvpnImported(), 10)})
	for _, f := range r.GetFailedRoutes() {
		rows = append(rows, []string{"failed", f})
	}
	return rows
}

func neighborRow(port, up string, n *apiv1.Neighbor) []string {
	name := n.GetSystemName()
	if name == "" {
		name = n.GetChassisId()
	}
	return []string{port, up, name, orDash(n.GetPortId()), orDash(n.GetChassisId()), timeOrDash(n.GetLastSeen(), n.GetLastSeen() != nil)}
}

func findingsTable(r *apiv1.ListFindingsResponse) [][]string {
	rows := [][]string{{"DEVICE", "PORT", "KIND", "EXPECTED", "ACTUAL"}}
	for _, f := range r.GetFindings() {
		rows = append(rows, []string{f.GetDevice(), f.GetPort(), f.GetKind(), orDash(f.GetExpected()), orDash(f.GetActual())})
	}
	return rows
}

func planTable(p *apiv1.CablingPlan) [][]string {
	rows := [][]string{{"DEVICE", "PORT", "EXPECTED NEIGHBOUR"}}
	for _, pp := range p.GetPorts() {
		rows = append(rows, []string{p.GetDevice(), pp.GetPort(), pp.GetNeighbor()})
	}
	return rows
}

func convergenceTable(c *apiv1.Convergence) [][]string {
	rows := [][]string{{"MACHINE", "REVISION", "DEVICE", "REQUIRED", "APPLIED", "CONVERGED", "ERRORS"}}
	for _, d := range c.GetDevices() {
		errs := make([]string, 0, len(d.GetErrors()))
		for _, e := range d.GetErrors() {
			errs = append(errs, e.GetStep()+": "+e.GetMessage())
		}
		rows = append(rows, []string{
			c.GetMachine(), strconv.FormatUint(c.GetRevision(), 10), d.GetHostname(),
			strconv.FormatUint(d.GetRequiredVersion(), 10), strconv.FormatUint(d.GetAppliedVersion(), 10),
			strconv.FormatBool(d.GetConverged()), orDash(strings.Join(errs, "; ")),
		})
	}
	return rows
}

func roleName(r apiv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
