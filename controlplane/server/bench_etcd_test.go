package server_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/controlplane/server"
	"github.com/metalfabric/fabric/controlplane/store"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
	"github.com/metalfabric/fabric/controlplane/store/etcd"
	"github.com/metalfabric/fabric/controlplane/store/etcd/etcdtest"
)

// benchBackend is a controller deployment under benchmark: the addresses
// of its replicas and how to stop them.
type benchBackend struct {
	addrs []string
	stop  func()
}

// serveBench runs one controller over st on a loopback TCP port.
func serveBench(b *testing.B, st store.Store) (string, func()) {
	b.Helper()
	srv, err := server.New(st, server.WithLoopbackPool(netip.MustParsePrefix("10.254.0.0/16")))
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, lis) }()
	return lis.Addr().String(), func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("controller: %v", err)
		}
		_ = st.Close()
	}
}

// boltBackend is one controller on a bbolt file (fsync on).
func boltBackend(b *testing.B) benchBackend {
	st, err := bolt.Open(filepath.Join(b.TempDir(), "controller.db"))
	if err != nil {
		b.Fatal(err)
	}
	addr, stop := serveBench(b, st)
	return benchBackend{addrs: []string{addr}, stop: stop}
}

// etcdBackend is n controller replicas on one three-member etcd cluster on
// this machine (data on disk, fsync on), each with its own etcd client.
func etcdBackend(b *testing.B, c *etcdtest.Cluster, prefix string, n int) benchBackend {
	var stops []func()
	var addrs []string
	for range n {
		st, err := etcd.Open(context.Background(), c.Endpoints, etcd.WithPrefix(prefix))
		if err != nil {
			b.Fatal(err)
		}
		addr, stop := serveBench(b, st)
		addrs, stops = append(addrs, addr), append(stops, stop)
	}
	return benchBackend{addrs: addrs, stop: func() {
		for _, s := range stops {
			s()
		}
	}}
}

// benchAllocations wires machines to leaves by LLDP (perLeaf per leaf) and
// allocates n of them one after the other, each through the next replica
// in turn; it returns the rate and every allocation's latency.
func benchAllocations(b *testing.B, be benchBackend, n int) (float64, []time.Duration) {
	const perLeaf = 50 // one LLDP report per leaf writes about 2 keys per machine
	ctx := context.Background()
	var ops []apiv1.OperatorServiceClient
	for _, a := range be.addrs {
		ops = append(ops, apiv1.NewOperatorServiceClient(dial(b, a)))
	}
	dev := apiv1.NewDeviceServiceClient(dial(b, be.addrs[0]))
	for l := range (n + perLeaf - 1) / perLeaf {
		var names []string
		var nbrs []*apiv1.Neighbor
		for p := range perLeaf {
			names = append(names, fmt.Sprintf("swp%d", p+1))
			nbrs = append(nbrs, &apiv1.Neighbor{Port: names[p], ChassisId: fmt.Sprintf("chassis-%d-%d", l, p), SystemName: fmt.Sprintf("m%d", l*perLeaf+p)})
		}
		h := leafName(l)
		if _, err := dev.Register(ctx, &apiv1.RegisterRequest{Hostname: h, Role: apiv1.Role_ROLE_LEAF, Ports: ports(names...)}); err != nil {
			b.Fatal(err)
		}
		if _, err := dev.ReportNeighbors(ctx, &apiv1.ReportNeighborsRequest{Hostname: h, Neighbors: nbrs}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := ops[0].CreateNetwork(ctx, &apiv1.CreateNetworkRequest{Name: "bench", Prefix: "10.0.0.0/16"}); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, n)
	t0 := time.Now()
	for i := range n {
		t1 := time.Now()
		if _, err := ops[i%len(ops)].AllocateMachine(ctx, &apiv1.AllocateMachineRequest{Machine: fmt.Sprintf("m%d", i), Network: "bench"}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t1))
	}
	return float64(n) / time.Since(t0).Seconds(), lat
}

// benchFanout starts one simulated agent per leaf, agent i on replica
// i%len(addrs), and measures changes that every leaf's config contains
// (a machine cabled to all leaves allocated or freed through the first
// replica) until every agent acknowledged them.
func benchFanout(b *testing.B, be benchBackend, leaves, changes int) []time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn := dial(b, be.addrs[0])
	f := &benchFabric{b: b, op: apiv1.NewOperatorServiceClient(conn), dev: apiv1.NewDeviceServiceClient(conn), acks: make(chan ack, 4*leaves)}
	all := make(map[string]bool, leaves)
	wide := make([]*apiv1.Connection, 0, leaves)
	for i := range leaves {
		h := leafName(i)
		all[h] = true
		if _, err := f.dev.Register(ctx, &apiv1.RegisterRequest{Hostname: h, Role: apiv1.Role_ROLE_LEAF, Ports: ports("swp1")}); err != nil {
			b.Fatal(err)
		}
		wide = append(wide, &apiv1.Connection{Device: h, Port: "swp1"})
	}
	if _, err := f.op.CreateNetwork(ctx, &apiv1.CreateNetworkRequest{Name: "bench", Prefix: "10.0.0.0/16"}); err != nil {
		b.Fatal(err)
	}
	if _, err := f.op.CableMachine(ctx, &apiv1.CableMachineRequest{Machine: "wide", Connections: wide}); err != nil {
		b.Fatal(err)
	}
	var ready sync.WaitGroup
	ready.Add(leaves)
	for i := range leaves {
		go f.runAgent(ctx, be.addrs[i%len(be.addrs)], leafName(i), &ready)
	}
	ready.Wait()
	return f.toggleWide(ctx, all, changes)
}

// BenchmarkEtcdVsBolt compares the controller on a three-member etcd
// cluster (project) with the controller on a bbolt file (peer), both with
// fsync on this machine's disk:
//
//	etcd-alloc-throughput: FABRIC_BENCH_ETCD_ALLOCS (default 1000) LLDP-wired
//	  machines allocated one after the other (etcd: through 3 replicas in
//	  turn), allocations per second (higher is better);
//	etcd-alloc-p99: the p99 latency of those allocation calls;
//	etcd-fanout-1000: a change every one of 1000 leaves must receive, until
//	  all acknowledged, p99 of 10 changes (etcd: the agents spread over 3
//	  replicas, the change made through one of them).
func BenchmarkEtcdVsBolt(b *testing.B) {
	allocs := envInt("FABRIC_BENCH_ETCD_ALLOCS", 1000)
	leaves := envInt("FABRIC_BENCH_LEAVES", 1000)
	changes := envInt("FABRIC_BENCH_CHANGES", 10)
	for range b.N {
		// Transactions of the fan-out recompile 1000 devices: they read
		// (compare) and write thousands of keys.
		c := etcdtest.Start(b, etcdtest.Options{Members: 3, MaxTxnOps: 16384})

		be := boltBackend(b)
		boltRate, boltLat := benchAllocations(b, be, allocs)
		be.stop()
		ee := etcdBackend(b, c, "/bench-alloc/", 3)
		etcdRate, etcdLat := benchAllocations(b, ee, allocs)
		ee.stop()

		be = boltBackend(b)
		boltFan := benchFanout(b, be, leaves, changes)
		be.stop()
		ee = etcdBackend(b, c, "/bench-fanout/", 3)
		etcdFan := benchFanout(b, ee, leaves, changes)
		ee.stop()

		fmt.Printf("bench: etcd-alloc-throughput project=%.1f/s peer=%.1f/s ratio=%.3f n=%d (project: etcd 3 members, 3 replicas; peer: bbolt)\n",
			etcdRate, boltRate, etcdRate/boltRate, allocs)
		p99e, p99b := percentile(etcdLat, 0.99), percentile(boltLat, 0.99)
		fmt.Printf("bench: etcd-alloc-p99 project=%s peer=%s ratio=%.2f p50=%s/%s n=%d\n",
			ms(p99e), ms(p99b), float64(p99e)/float64(p99b), ms(percentile(etcdLat, 0.5)), ms(percentile(boltLat, 0.5)), allocs)
		f99e, f99b := percentile(etcdFan, 0.99), percentile(boltFan, 0.99)
		fmt.Printf("bench: etcd-fanout-%s project=%s peer=%s ratio=%.2f p50=%s/%s n=%d\n",
			strconv.Itoa(leaves), ms(f99e), ms(f99b), float64(f99e)/float64(f99b), ms(percentile(etcdFan, 0.5)), ms(percentile(boltFan, 0.5)), changes)
	}
}
