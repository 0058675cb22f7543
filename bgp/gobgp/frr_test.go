package gobgp

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FRR peers for tests: zebra and bgpd of the Debian frr package, one pair
// per network namespace, with their pid files and vty sockets under the
// pathspace /var/run/frr/<ns> (-N), configured with vtysh -f and queried
// with vtysh -c ... json.

const frrDir = "/usr/lib/frr"

func requireFRR(t *testing.T) {
	t.Helper()
	requireRoot(t)
	for _, b := range []string{frrDir + "/zebra", frrDir + "/bgpd"} {
		if _, err := os.Stat(b); err != nil {
			t.Skipf("needs FRR (%s): %v", b, err)
		}
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		t.Skip("needs FRR's vtysh")
	}
}

// frr is an FRR instance in a namespace.
type frr struct {
	t  *testing.T
	ns string
}

// startFRR starts zebra and bgpd in ns and applies config (vtysh syntax).
func startFRR(t *testing.T, ns, config string) *frr {
	t.Helper()
	dir := filepath.Join("/var/run/frr", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "chown", "frr:frr", dir)
	f := &frr{t: t, ns: ns}
	t.Cleanup(func() {
		for _, d := range []string{"bgpd", "zebra"} {
			b, err := os.ReadFile(filepath.Join(dir, d+".pid"))
			if err != nil {
				continue
			}
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
				}
			}
		}
		if t.Failed() {
			for _, l := range []string{"bgpd.log", "zebra.log"} {
				if b, err := os.ReadFile(filepath.Join(dir, l)); err == nil {
					t.Logf("FRR %s %s:\n%s", ns, l, b)
				}
			}
		}
		os.RemoveAll(dir)
	})
	nsRun(t, ns, frrDir+"/zebra", "-d", "-N", ns, "-f", "/dev/null", "--log", "file:"+filepath.Join(dir, "zebra.log"))
	nsRun(t, ns, frrDir+"/bgpd", "-d", "-N", ns, "-f", "/dev/null", "--log", "file:"+filepath.Join(dir, "bgpd.log"))
	cfg := filepath.Join(t.TempDir(), "frr.conf")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// vtysh connects to the daemons' sockets; they appear shortly after -d
	// returns.
	waitFor(t, 10*time.Second, "FRR vty of "+ns, func() (bool, string) {
		out, err := exec.Command("vtysh", "-N", ns, "-c", "show version").CombinedOutput()
		return err == nil, string(out)
	})
	if out, err := exec.Command("vtysh", "-N", ns, "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("configuring FRR in %s: %v\n%s", ns, err, out)
	}
	return f
}

// json runs a vtysh show command with "json" output into v.
func (f *frr) json(cmd string, v any) error {
	// stdout only: vtysh warns about its missing config on stderr.
	out, err := exec.Command("vtysh", "-N", f.ns, "-c", cmd).Output()
	if err != nil {
		return fmt.Errorf("vtysh %q: %v: %s", cmd, err, out)
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("vtysh %q: %v: %s", cmd, err, out)
	}
	return nil
}

// peerState returns FRR's state of a neighbour ("Established", ...).
func (f *frr) peerState(neighbor string) string {
	var m map[string]struct {
		BgpState string `json:"bgpState"`
	}
	if err := f.json("show bgp neighbors "+neighbor+" json", &m); err != nil {
		return err.Error()
	}
	for _, n := range m {
		return n.BgpState
	}
	return "no such neighbour"
}

// ipv4Routes returns FRR's IPv4 unicast BGP table: prefix -> next hops of
// the best/multipath entries.
func (f *frr) ipv4Routes() (map[string][]string, error) {
	var r struct {
		Routes map[string][]struct {
			Valid    bool `json:"valid"`
			Nexthops []struct {
				IP    string `json:"ip"`
				Scope string `json:"scope"`
			} `json:"nexthops"`
		} `json:"routes"`
	}
	if err := f.json("show bgp ipv4 unicast json", &r); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for p, paths := range r.Routes {
		for _, path := range paths {
			if !path.Valid {
				continue
			}
			for _, nh := range path.Nexthops {
				out[p] = append(out[p], nh.IP)
			}
		}
	}
	return out, nil
}
