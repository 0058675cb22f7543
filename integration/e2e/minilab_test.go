package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/integration/scenario"
)

// quiet is how long the test watches a kernel to see that nothing changes.
const quiet = 3 * time.Second

// TestMiniLab brings up containerlab/mini-lab.clab.yml and walks one
// allocation from the API into the leaves' kernels, then proves that agent
// and controller restarts leave the kernel alone.
func TestMiniLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the mini-lab needs root (network namespaces, veth, VRFs)")
	}
	repo := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m, err := scenario.Start(ctx, filepath.Join(repo, "containerlab", "mini-lab.clab.yml"), filepath.Join(repo, "bin"), testWriter{t}, log)
	if err != nil {
		t.Fatalf("starting mini-lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"controller", "leaf01", "leaf02", "spine01"} {
				if b, err := os.ReadFile(m.Lab.NodeLog(n)); err == nil {
					t.Logf("=== %s console.log (tail) ===\n%s", n, tail(string(b), 40))
				}
			}
		}
		if err := m.Close(context.Background()); err != nil {
			t.Errorf("tearing the lab down: %v", err)
		}
	})
	api := m.API
	if err := m.WaitRegistered(ctx, 2*time.Minute, m.Switches()...); err != nil {
		t.Fatalf("agents did not register: %v", err)
	}
	if _, err := api.CreateNetwork(ctx, &apiv1.CreateNetworkRequest{Name: "tenant-a", Prefix: "10.0.1.0/24"}); err != nil {
		t.Fatal(err)
	}
	for machine, conns := range scenario.Cabling {
		if _, err := api.CableMachine(ctx, &apiv1.CableMachineRequest{Machine: machine, Connections: conns}); err != nil {
			t.Fatal(err)
		}
	}
	vni, err := m.NetworkVNI(ctx, "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	vrf := fmt.Sprintf("vrf%d", vni)

	for _, machine := range []string{"machine01", "machine02"} {
		lat, err := m.AllocateAndMeasure(ctx, machine, "tenant-a")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("allocate %s -> kernel: %v", machine, lat)
		if err := m.CheckPorts(scenario.Cabling[machine], vrf, vni); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitConverged(ctx, time.Minute, machine); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("leaves hold the L3VNI", func(t *testing.T) {
		for _, leaf := range []string{"leaf01", "leaf02"} {
			if err := m.CheckL3VNI(ctx, leaf, vni, vrf); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("free releases the ports", func(t *testing.T) {
		lat, err := m.FreeAndMeasure(ctx, "machine02")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("free machine02 -> kernel: %v", lat)
		if err := m.CheckPorts(scenario.Cabling["machine02"], "", 0); err != nil {
			t.Fatal(err)
		}
		// machine01 keeps the VRF alive on both leaves.
		if err := m.CheckPorts(scenario.Cabling["machine01"], vrf, vni); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitConverged(ctx, time.Minute, "machine02"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("agent restart leaves the kernel alone", func(t *testing.T) {
		before := portState(t, m, "leaf01", "swp1")
		events := watchLinks(t, ctx, m, "leaf01")
		if err := m.Lab.StopNode(ctx, "leaf01"); err != nil {
			t.Fatal(err)
		}
		if err := m.Lab.StartNode(ctx, "leaf01"); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitInSync(ctx, 2*time.Minute, "leaf01"); err != nil {
			t.Fatalf("leaf01 did not re-converge: %v", err)
		}
		if got := events.stop(quiet); len(got) > 0 {
			t.Errorf("agent restart changed links on leaf01: %v", got)
		}
		if diff := cmp.Diff(before, portState(t, m, "leaf01", "swp1")); diff != "" {
			t.Errorf("leaf01 swp1 after agent restart (-before +after):\n%s", diff)
		}
	})

	t.Run("controller loss and restart", func(t *testing.T) {
		nets, err := api.ListNetworks(ctx, &apiv1.ListNetworksRequest{})
		if err != nil {
			t.Fatal(err)
		}
		machines, err := api.ListMachines(ctx, &apiv1.ListMachinesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		before := map[string]scenario.PortVRF{}
		var watches []*linkEvents
		for _, leaf := range []string{"leaf01", "leaf02"} {
			before[leaf] = portState(t, m, leaf, "swp1")
			watches = append(watches, watchLinks(t, ctx, m, leaf))
		}
		if err := m.Lab.StopNode(ctx, scenario.ControllerNode); err != nil {
			t.Fatal(err)
		}
		// Agents lose their streams and retry; the kernels must not move.
		for _, w := range watches {
			if got := w.stop(quiet); len(got) > 0 {
				t.Errorf("controller loss changed links on %s: %v", w.node, got)
			}
		}
		for _, leaf := range []string{"leaf01", "leaf02"} {
			if diff := cmp.Diff(before[leaf], portState(t, m, leaf, "swp1")); diff != "" {
				t.Errorf("%s swp1 while the controller is down (-before +after):\n%s", leaf, diff)
			}
		}
		if err := m.Lab.StartNode(ctx, scenario.ControllerNode); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitRegistered(ctx, 2*time.Minute, m.Switches()...); err != nil {
			t.Fatalf("agents did not reconnect: %v", err)
		}
		nets2, err := api.ListNetworks(ctx, &apiv1.ListNetworksRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(nets, nets2, protocmp.Transform()); diff != "" {
			t.Errorf("networks after controller restart (-before +after):\n%s", diff)
		}
		machines2, err := api.ListMachines(ctx, &apiv1.ListMachinesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(machines, machines2, protocmp.Transform()); diff != "" {
			t.Errorf("machines after controller restart (-before +after):\n%s", diff)
		}
		// The reconnected agents still get pushes.
		lat, err := m.AllocateAndMeasure(ctx, "machine02", "tenant-a")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("allocate machine02 after controller restart -> kernel: %v", lat)
		if err := m.CheckPorts(scenario.Cabling["machine02"], vrf, vni); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("freeing everything removes the VRF and its L3VNI", func(t *testing.T) {
		for _, machine := range []string{"machine01", "machine02"} {
			if _, err := m.FreeAndMeasure(ctx, machine); err != nil {
				t.Fatal(err)
			}
		}
		for _, leaf := range []string{"leaf01", "leaf02"} {
			if err := m.WaitInSync(ctx, time.Minute, leaf); err != nil {
				t.Fatal(err)
			}
			k, err := m.Kernel(leaf)
			if err != nil {
				t.Fatal(err)
			}
			for _, dev := range []string{vrf, fmt.Sprintf("vxlan%d", vni)} {
				has, err := k.HasLink(dev)
				if err != nil {
					t.Fatal(err)
				}
				if has {
					t.Errorf("%s still has %s after all machines were freed", leaf, dev)
				}
			}
			k.Close()
		}
		if _, err := api.DeleteNetwork(ctx, &apiv1.DeleteNetworkRequest{Name: "tenant-a"}); err != nil {
			t.Errorf("deleting the emptied network: %v", err)
		}
	})
}

func portState(t *testing.T, m *scenario.MiniLab, node, port string) scenario.PortVRF {
	t.Helper()
	k, err := m.Kernel(node)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	got, err := k.PortVRF(port)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// linkEvents collects the link changes of one node's namespace.
type linkEvents struct {
	node   string
	cancel context.CancelFunc
	done   chan []string
}

func watchLinks(t *testing.T, ctx context.Context, m *scenario.MiniLab, node string) *linkEvents {
	t.Helper()
	k, err := m.Kernel(node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	wctx, cancel := context.WithCancel(ctx)
	updates, err := k.WatchLinks(wctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	e := &linkEvents{node: node, cancel: cancel, done: make(chan []string, 1)}
	go func() {
		var seen []string
		for u := range updates {
			// eth0 is the management port: its counters and carrier are not
			// the agent's business.
			if u.Attrs().Name == "eth0" {
				continue
			}
			seen = append(seen, fmt.Sprintf("%s master=%d flags=%v", u.Attrs().Name, u.Attrs().MasterIndex, u.Attrs().Flags))
		}
		e.done <- seen
	}()
	return e
}

// stop waits the quiet period, stops watching and returns what changed.
func (e *linkEvents) stop(wait time.Duration) []string {
	time.Sleep(wait)
	e.cancel()
	select {
	case got := <-e.done:
		return got
	case <-time.After(5 * time.Second):
		return []string{"link watch did not stop"}
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// testWriter sends lab and scenario output to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
