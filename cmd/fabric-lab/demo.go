package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/metalfabric/fabric/integration/scenario"
)

// cmdDemo runs the mini-lab walk-through: bring the topology up, allocate
// both machines through the controller, show the fabric with fabricctl and
// check the leaves' kernels; with several controller replicas (the etcd
// mini-lab) also fail a replica and an etcd member over. The lab is torn
// down afterwards unless -keep.
func cmdDemo(ctx context.Context, log *slog.Logger, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr, "[-keep] [-bin DIR] TOPO.yml")
	keep := fs.Bool("keep", false, "leave the lab running afterwards")
	bin := fs.String("bin", "bin", "directory holding fabricctl")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errUsage
	}
	binDir, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	start := time.Now()
	m, err := scenario.Start(ctx, pos[0], binDir, stdout, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "lab %s is up (%s)\n", m.Topo.Name, time.Since(start).Round(time.Millisecond))
	latencies, demoErr := m.Demo(ctx)
	if demoErr == nil {
		demoErr = m.RoutingDemo(ctx)
	}
	if demoErr == nil {
		demoErr = m.FirewallDemo(ctx)
	}
	if demoErr == nil {
		demoErr = m.FirewallIngressDemo(ctx)
	}
	// A lab with several controller replicas (on etcd) also shows failover.
	replicas := len(m.Controllers) > 1
	if demoErr == nil && replicas {
		demoErr = m.ReplicaFailoverDemo(ctx)
	}
	if demoErr != nil {
		nodes := slices.Concat(m.Controllers, scenario.EtcdNodes(m.Topo), []string{"leaf01", "leaf02", "spine01", "spine02", "fw01"})
		for _, n := range nodes {
			if b, err := os.ReadFile(m.Lab.NodeLog(n)); err == nil {
				fmt.Fprintf(stderr, "=== %s: last lines of %s ===\n%s\n", n, m.Lab.NodeLog(n), lastLines(string(b), 20))
			}
		}
	} else {
		slices.Sort(latencies)
		fmt.Fprintf(stdout, "\nlab: ok: every machine port is in its tenant VRF, same-tenant machines ping each other across the leaves over VXLAN, other tenants cannot, tenant-a reaches the internet host only through fw01 (SNAT to its egress IP, denied port blocked), the internet reaches machine02's public IP only where an ingress rule allows; allocation -> kernel latency min %s max %s over %d leaf ports\n",
			latencies[0].Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond), len(latencies))
		if replicas {
			fmt.Fprintf(stdout, "lab: ok: controller replicas %v on etcd %v: leaf01's agent moved to another replica when its replica was killed, allocations through the survivor reached the kernels; with the etcd leader killed the replicas kept serving (a write through one read back through the other, an allocation through one reaching agents on the other)\n",
				m.Controllers, scenario.EtcdNodes(m.Topo))
		}
	}
	if *keep && demoErr == nil {
		fmt.Fprintf(stdout, "lab: LAB_KEEP: left running. Try:\n"+
			"  bin/fabric-lab exec %[1]s %[3]s -- /opt/fabric/bin/fabricctl machine list\n"+
			"  ip -n %[2]s -d link show swp1\n"+
			"  bin/fabric-lab down %[1]s\n", pos[0], m.Lab.NetNS("leaf01"), m.Controller())
		return nil
	}
	if err := m.Close(context.WithoutCancel(ctx)); err != nil && demoErr == nil {
		return fmt.Errorf("tearing the lab down: %w", err)
	}
	return demoErr
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
