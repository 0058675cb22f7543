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
	rows := [][]string{{"NAME", "PREFIX", "VNI", "ALLOCATED"}}
	for _, n := range nets {
		rows = append(rows, []string{n.GetName(), n.GetPrefix(), strconv.FormatUint(uint64(n.GetVni()), 10), strconv.FormatUint(uint64(n.GetAllocated()), 10)})
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
	rows := [][]string{{"NAME", "CONNECTIONS", "NETWORK", "IP"}}
	for _, m := range ms {
		conns := make([]string, 0, len(m.GetConnections()))
		for _, c := range m.GetConnections() {
			conns = append(conns, c.GetDevice()+":"+c.GetPort())
		}
		sort.Strings(conns)
		a := m.GetAllocation()
		rows = append(rows, []string{m.GetName(), orDash(strings.Join(conns, ",")), orDash(a.GetNetwork()), orDash(a.GetIp())})
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
