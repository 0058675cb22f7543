//go:build linux

package fabric_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/metalfabric/fabric/fabric"
)

var benchFlag = flag.Bool("fabric.bench", false, "run TestBenchDataplane (flags reach the VM; environment variables do not)")

// peerScripts returns the iproute2 batch files equivalent to applying
// benchDesired (ip, then bridge) and to removing it again (ip), with the
// same VLAN assignment and the same marker.
func peerScripts(d fabric.Desired, vlanOf map[uint32]uint16) (ipAdd, bridgeAdd, ipDel string) {
	var a, b, x strings.Builder
	fmt.Fprintf(&a, "link add bridge type bridge vlan_filtering 1 vlan_default_pvid 0\n")
	fmt.Fprintf(&a, "link set dev bridge alias %s up\n", fabric.Marker)
	fmt.Fprintf(&b, "vlan add vid 1-%d dev bridge self\n", benchVLANs)
	for _, v := range d.VRFs {
		vl := vlanOf[v.L3VNI.VNI]
		vx, svi := fabric.VXLANName(v.L3VNI.VNI), fabric.SVIName(vl)
		fmt.Fprintf(&a, "link add %s type vrf table %d\n", v.Name, v.Table)
		fmt.Fprintf(&a, "link set dev %s alias %s up\n", v.Name, fabric.Marker)
		fmt.Fprintf(&a, "link add %s type vxlan id %d local %s dstport 4789 nolearning\n", vx, v.L3VNI.VNI, d.VTEP)
		fmt.Fprintf(&a, "link set dev %s alias %s master bridge up\n", vx, fabric.Marker)
		fmt.Fprintf(&a, "link add link bridge name %s address %s type vlan id %d\n", svi, v.L3VNI.RouterMAC, vl)
		fmt.Fprintf(&a, "link set dev %s alias %s master %s up\n", svi, fabric.Marker, v.Name)
		fmt.Fprintf(&b, "vlan add vid %d dev bridge self\n", vl)
		fmt.Fprintf(&b, "vlan add vid %d dev %s pvid untagged\n", vl, vx)
		fmt.Fprintf(&x, "link del %s\n", svi)
	}
	for _, p := range d.Ports {
		fmt.Fprintf(&a, "link set dev %s master %s\n", p.Name, p.VRF)
		fmt.Fprintf(&x, "link set dev %s nomaster\n", p.Name)
	}
	for _, v := range d.VRFs {
		fmt.Fprintf(&x, "link del %s\n", fabric.VXLANName(v.L3VNI.VNI))
	}
	for _, v := range d.VRFs {
		fmt.Fprintf(&x, "link del %s\n", v.Name)
	}
	fmt.Fprintf(&x, "link del bridge\n")
	// Ports before SVIs in the removal, as the reconciler does.
	lines := strings.Split(strings.TrimSpace(x.String()), "\n")
	var ports, rest []string
	for _, l := range lines {
		if strings.Contains(l, "nomaster") {
			ports = append(ports, l)
		} else {
			rest = append(rest, l)
		}
	}
	return a.String(), b.String(), strings.Join(append(ports, rest...), "\n") + "\n"
}

func batch(t *testing.T, dir, tool, name, script string) {
	t.Helper()
	f := filepath.Join(dir, name)
	if err := os.WriteFile(f, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "-batch", f).CombinedOutput(); err != nil {
		t.Fatalf("%s -batch %s: %v\n%s", tool, name, err, out)
	}
}

func benchLine(name string, project, peer time.Duration) {
	fmt.Printf("bench: %s project=%s peer=%s ratio=%.2f\n", name, project.Round(time.Microsecond), peer.Round(time.Microsecond), float64(project)/float64(peer))
}

// TestBenchDataplane compares the reconciler with an equivalent ip/bridge
// -batch script on the full kernel: apply benchDesired to an empty switch
// and remove it again; and a no-op reconcile (read + validate + diff) at
// that size with dumping the same state with ip and bridge. It runs only
// with -fabric.bench (see the Makefile's bench target) and needs the VM.
func TestBenchDataplane(t *testing.T) {
	if !*benchFlag {
		t.Skip("benchmark: run with -args -fabric.bench (make bench)")
	}
	h := newTestNetns(t)
	requireDataplane(t, h)
	ctx := t.Context()
	for i := range benchPorts {
		addVeth(t, h, fmt.Sprintf("swp%d", i+1), fmt.Sprintf("peer%d", i+1))
	}
	d := benchDesired()
	dir := t.TempDir()
	// Under TCG the first run of a kernel path is slow (translation), so
	// round 0 warms both sides up and is not counted; the order of project
	// and peer alternates.
	const rounds = 3
	var projAdd, projDel, peerAdd, peerDel, noop, dump time.Duration
	project := func(count bool) map[uint32]uint16 {
		k, err := fabric.OpenKernelAt(netns.None()) // a fresh reconciler, as after a start
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		r := fabric.NewReconciler(k, fabric.WithLogger(discardLogger()))
		start := time.Now()
		res, err := r.Apply(ctx, d)
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		add := time.Since(start)
		vlanOf := fabric.AssignVLANs(d, res.State)

		start = time.Now()
		plan, err := r.Plan(ctx, d)
		if err != nil || len(plan) != 0 {
			t.Fatalf("no-op Plan: %d changes, %v", len(plan), err)
		}
		nop := time.Since(start)
		start = time.Now()
		for _, c := range [][]string{{"ip", "-d", "link", "show"}, {"ip", "addr", "show"}, {"bridge", "vlan", "show"}} {
			if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", c, err, out)
			}
		}
		dmp := time.Since(start)

		start = time.Now()
		if _, err := r.Apply(ctx, fabric.Desired{}); err != nil {
			t.Fatalf("removing Apply: %v", err)
		}
		del := time.Since(start)
		t.Logf("reconciler: %d changes applied in %v, removed in %v; no-op %v (ip/bridge show %v)", len(res.Applied), add, del, nop, dmp)
		if count {
			projAdd, projDel, noop, dump = projAdd+add, projDel+del, noop+nop, dump+dmp
		}
		return vlanOf
	}
	peerRun := func(vlanOf map[uint32]uint16, count bool) {
		ipAdd, brAdd, ipDel := peerScripts(d, vlanOf)
		start := time.Now()
		batch(t, dir, "ip", "add.ip", ipAdd)
		batch(t, dir, "bridge", "add.bridge", brAdd)
		add := time.Since(start)
		if got := fabric.Diff(d, mustRead(t, fabric.NewReconciler(fabric.NewNetlink(h), fabric.WithLogger(discardLogger())))); len(got) != 0 {
			t.Fatalf("the peer script does not reach the same state: %d changes left, first %q", len(got), got[0].String())
		}
		start = time.Now()
		batch(t, dir, "ip", "del.ip", ipDel)
		del := time.Since(start)
		t.Logf("ip/bridge -batch: added in %v, removed in %v", add, del)
		if count {
			peerAdd, peerDel = peerAdd+add, peerDel+del
		}
	}
	for round := range rounds {
		count := round > 0
		if round%2 == 0 {
			peerRun(project(count), count)
		} else {
			vlanOf := fabric.AssignVLANs(d, fabric.Actual{})
			peerRun(vlanOf, count)
			project(count)
		}
	}
	n := time.Duration(rounds - 1)
	benchLine("dataplane_apply_remove", (projAdd+projDel)/n, (peerAdd+peerDel)/n)
	t.Logf("apply: project %v peer %v; remove: project %v peer %v", projAdd/n, peerAdd/n, projDel/n, peerDel/n)
	benchLine("dataplane_noop_reconcile", noop/n, dump/n)
}

func mustRead(t *testing.T, r *fabric.Reconciler) fabric.Actual {
	t.Helper()
	a, err := r.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return a
}
