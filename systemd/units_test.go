package systemd

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// directives parses a unit file into "Section.Key" -> values, in order.
func directives(t *testing.T, unit []byte) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("unit line %q is not Key=Value", line)
			}
			got[section+"."+k] = append(got[section+"."+k], v)
		}
	}
	return got
}

// TestUnitDirectives pins the directives the issue asks for; the rest of the
// hardening is checked by systemd-analyze in TestUnitsVerify.
func TestUnitDirectives(t *testing.T) {
	common := map[string][]string{
		"Service.Type":                     {"notify"},
		"Service.NotifyAccess":             {"main"},
		"Service.Restart":                  {"on-failure"},
		"Service.WatchdogSec":              {"30s"},
		"Service.NoNewPrivileges":          {"yes"},
		"Service.ProtectSystem":            {"strict"},
		"Service.ProtectHome":              {"yes"},
		"Service.PrivateTmp":               {"yes"},
		"Install.WantedBy":                 {"multi-user.target"},
		"Service.RestartPreventExitStatus": {"2"},
	}
	tests := []struct {
		unit string
		want map[string][]string
	}{
		{AgentUnit, map[string][]string{
			"Service.ExecStart":               {"/usr/bin/fabric-agent --config /etc/fabric/agent.yaml"},
			"Service.ExecReload":              {"/bin/kill -HUP $MAINPID"},
			"Service.StateDirectory":          {"fabric-agent"},
			"Service.CapabilityBoundingSet":   {"CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE"},
			"Service.AmbientCapabilities":     {"CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE"},
			"Service.RestrictAddressFamilies": {"AF_NETLINK AF_PACKET AF_INET AF_INET6 AF_UNIX"},
			"Service.User":                    nil,
		}},
		{ControllerUnit, map[string][]string{
			"Service.ExecStart":               {"/usr/bin/fabric-controller --config /etc/fabric/controller.yaml"},
			"Service.ExecReload":              nil,
			"Service.StateDirectory":          {"fabric-controller"},
			"Service.User":                    {"fabric"},
			"Service.Group":                   {"fabric"},
			"Service.CapabilityBoundingSet":   {"CAP_NET_BIND_SERVICE"},
			"Service.AmbientCapabilities":     {"CAP_NET_BIND_SERVICE"},
			"Service.RestrictAddressFamilies": {"AF_INET AF_INET6 AF_UNIX"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.unit, func(t *testing.T) {
			b, err := Unit(tt.unit)
			if err != nil {
				t.Fatal(err)
			}
			d := directives(t, b)
			want, got := map[string][]string{}, map[string][]string{}
			for _, m := range []map[string][]string{common, tt.want} {
				for k, v := range m {
					want[k], got[k] = v, d[k]
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s directives (-want +got):\n%s", tt.unit, diff)
			}
		})
	}
}

func TestUnitUnknown(t *testing.T) {
	if _, err := Unit("fabricctl.service"); err == nil {
		t.Error(`Unit("fabricctl.service") = nil error, want one`)
	}
}

// TestUnitsVerify runs `systemd-analyze verify` on each unit. verify insists
// that ExecStart= names an existing executable, so it checks a copy whose
// /usr/bin/fabric-* is rewritten to a stub in a temp dir; everything else is
// verbatim. Any output (warnings included) fails the test.
func TestUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (Debian package systemd): cannot verify the unit files")
	}
	dir := t.TempDir()
	for _, name := range UnitNames() {
		t.Run(name, func(t *testing.T) {
			bin := strings.TrimSuffix(name, ".service")
			stub := filepath.Join(dir, bin)
			if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			b, err := Unit(name)
			if err != nil {
				t.Fatal(err)
			}
			orig := "ExecStart=/usr/bin/" + bin + " "
			if !bytes.Contains(b, []byte(orig)) {
				t.Fatalf("%s has no %q", name, orig)
			}
			b = bytes.Replace(b, []byte(orig), []byte("ExecStart="+stub+" "), 1)
			unit := filepath.Join(dir, name)
			if err := os.WriteFile(unit, b, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(analyze, "verify", "--man=no", unit).CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, out)
			}
		})
	}
}
