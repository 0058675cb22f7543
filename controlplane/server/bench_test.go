package server_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/controlplane/server"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
)

// Peer: metal-core polls metal-api every 10 s, so a change reaches a
// poll-based switch after 5 s on average (uniform phase) and 10 s at worst.
// The fan-out and allocation latencies are compared with the 5 s average.
const peerPollLatency = 5 * time.Second

// benchFabric is a real controller (bbolt with fsync, TCP on loopback)
// with simulated agents: each has its own gRPC connection and watch stream
// and acknowledges every config it receives with ReportStatus, like
// fabric-agent after a successful apply.
type benchFabric struct {
	b    *testing.B
	op   apiv1.OperatorServiceClient
	dev  apiv1.DeviceServiceClient
	acks chan ack
}

type ack struct {
	host    string
	version uint64
}

func startBenchController(b *testing.B, opts ...server.Option) (string, func()) {
	b.Helper()
	st, err := bolt.Open(filepath.Join(b.TempDir(), "controller.db")) // fsync on
	if err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(st, append([]server.Option{server.WithLoopbackPool(netip.MustParsePrefix("10.254.0.0/16"))}, opts...)...)
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

func dial(b *testing.B, addr string) *grpc.ClientConn {
	b.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return conn
}

// runAgent watches host's config and acknowledges every version.
func (f *benchFabric) runAgent(ctx context.Context, addr, host string, ready *sync.WaitGroup) {
	conn := dial(f.b, addr)
	dev := apiv1.NewDeviceServiceClient(conn)
	stream, err := dev.WatchConfig(ctx, &apiv1.WatchConfigRequest{Hostname: host})
	if err != nil {
		f.b.Errorf("watch %s: %v", host, err)
		ready.Done()
		return
	}
	first := true
	for {
		cfg, err := stream.Recv()
		if err != nil {
			if first {
				ready.Done()
			}
			return
		}
		if _, err := dev.ReportStatus(ctx, &apiv1.ReportStatusRequest{Hostname: host, AppliedVersion: cfg.GetVersion()}); err != nil {
			if ctx.Err() == nil {
				f.b.Errorf("report %s: %v", host, err)
			}
			return
		}
		if first {
			first = false
			ready.Done()
			continue
		}
		select {
		case f.acks <- ack{host, cfg.GetVersion()}:
		case <-ctx.Done():
			return
		}
	}
}

// waitAcks waits until every host in want acknowledged at least version v.
func (f *benchFabric) waitAcks(want map[string]bool, v uint64) error {
	left := len(want)
	done := make(map[string]bool, left)
	timeout := time.After(2 * time.Minute)
	for left > 0 {
		select {
		case a := <-f.acks:
			if want[a.host] && !done[a.host] && a.version >= v {
				done[a.host] = true
				left--
			}
		case <-timeout:
			return fmt.Errorf("%d of %d devices did not acknowledge version %d", left, len(want), v)
		}
	}
	return nil
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func leafName(i int) string { return fmt.Sprintf("leaf%04d", i) }

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + "ms"
}

// BenchmarkControllerFanout measures, with 1000 simulated agents watching a
// real controller:
//
//	fanout-1000: one change every device's config contains (allocate or
//	  free a machine cabled to swp1 of all 1000 leaves) until all 1000
//	  agents received and acknowledged the new version;
//	alloc-latency: one allocation of a machine on two leaves until both
//	  acknowledged.
//
// The peer is metal-core's 10 s polling (5 s expected latency).
func BenchmarkControllerFanout(b *testing.B) {
	leaves := envInt("FABRIC_BENCH_LEAVES", 1000)
	changes := envInt("FABRIC_BENCH_CHANGES", 10)
	allocs := envInt("FABRIC_BENCH_ALLOC_ROUNDS", 30)
	for range b.N {
		addr, stop := startBenchController(b)
		conn := dial(b, addr)
		f := &benchFabric{b: b, op: apiv1.NewOperatorServiceClient(conn), dev: apiv1.NewDeviceServiceClient(conn), acks: make(chan ack, 4*leaves)}
		ctx, cancel := context.WithCancel(context.Background())

		start := time.Now()
		all := make(map[string]bool, leaves)
		wide := make([]*apiv1.Connection, 0, leaves)
		for i := range leaves {
			h := leafName(i)
			all[h] = true
			if _, err := f.dev.Register(ctx, &apiv1.RegisterRequest{Hostname: h, Role: apiv1.Role_ROLE_LEAF, Ports: ports("swp1", "swp2", "swp3")}); err != nil {
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
		// Machines on two leaves each, wired by LLDP: leaf i sees machine
		// mI on swp2, leaf i+1 sees it on swp3.
		tables := make(map[string][]*apiv1.Neighbor)
		for i := range allocs {
			for j, port := range []string{"swp2", "swp3"} {
				tables[leafName(i+j)] = append(tables[leafName(i+j)], &apiv1.Neighbor{
					Port: port, ChassisId: fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256), SystemName: fmt.Sprintf("m%d", i), LastSeen: timestamppb.Now(),
				})
			}
		}
		for h, nbrs := range tables {
			if _, err := f.dev.ReportNeighbors(ctx, &apiv1.ReportNeighborsRequest{Hostname: h, Neighbors: nbrs}); err != nil {
				b.Fatal(err)
			}
		}
		var ready sync.WaitGroup
		ready.Add(leaves)
		for h := range all {
			go f.runAgent(ctx, addr, h, &ready)
		}
		ready.Wait()
		b.Logf("setup: %d leaves registered and watching in %s", leaves, time.Since(start).Round(time.Millisecond))

		b.ResetTimer()
		fan := f.toggleWide(ctx, all, changes)
		var lat []time.Duration
		for i := range allocs {
			name := fmt.Sprintf("m%d", i)
			t0 := time.Now()
			m, err := f.op.AllocateMachine(ctx, &apiv1.AllocateMachineRequest{Machine: name, Network: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			if err := f.waitAcks(map[string]bool{leafName(i): true, leafName(i + 1): true}, m.GetAllocation().GetRevision()); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		report("fanout-"+strconv.Itoa(leaves), fan)
		report("alloc-latency", lat)
		cancel()
		stop()
	}
}

func report(name string, ds []time.Duration) {
	p50, p99 := percentile(ds, 0.5), percentile(ds, 0.99)
	fmt.Printf("bench: %s project=%s peer=%s ratio=%.4f p50=%s p99=%s n=%d\n",
		name, ms(p50), ms(peerPollLatency), float64(p50)/float64(peerPollLatency), ms(p50), ms(p99), len(ds))
}

// BenchmarkAllocationThroughput allocates distinct LLDP-wired machines in a
// row (fsync on, one transaction each) and prints allocations per second.
// Default 10000 (FABRIC_BENCH_ALLOCS to change it): an allocation reads and
// recompiles only what it touches (the machine, its network's address
// index, the configs of its leaves), so the rate does not fall with the
// fabric's size. The peer rate is one change per metal-core poll interval
// (0.1/s) per switch.
func BenchmarkAllocationThroughput(b *testing.B) {
	n := envInt("FABRIC_BENCH_ALLOCS", 10000)
	const perLeaf = 500
	for range b.N {
		addr, stop := startBenchController(b)
		conn := dial(b, addr)
		op, dev := apiv1.NewOperatorServiceClient(conn), apiv1.NewDeviceServiceClient(conn)
		ctx := context.Background()
		leaves := (n + perLeaf - 1) / perLeaf
		for l := range leaves {
			var names []string
			for p := range perLeaf {
				names = append(names, fmt.Sprintf("swp%d", p+1))
			}
			h := leafName(l)
			if _, err := dev.Register(ctx, &apiv1.RegisterRequest{Hostname: h, Role: apiv1.Role_ROLE_LEAF, Ports: ports(names...)}); err != nil {
				b.Fatal(err)
			}
			var nbrs []*apiv1.Neighbor
			for p := range perLeaf {
				nbrs = append(nbrs, &apiv1.Neighbor{Port: names[p], ChassisId: fmt.Sprintf("chassis-%d-%d", l, p), SystemName: fmt.Sprintf("m%d", l*perLeaf+p)})
			}
			if _, err := dev.ReportNeighbors(ctx, &apiv1.ReportNeighborsRequest{Hostname: h, Neighbors: nbrs}); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := op.CreateNetwork(ctx, &apiv1.CreateNetworkRequest{Name: "bench", Prefix: "10.0.0.0/16"}); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		t0 := time.Now()
		for i := range n {
			if _, err := op.AllocateMachine(ctx, &apiv1.AllocateMachineRequest{Machine: fmt.Sprintf("m%d", i), Network: "bench"}); err != nil {
				b.Fatal(err)
			}
		}
		el := time.Since(t0)
		b.StopTimer()
		rate := float64(n) / el.Seconds()
		const peerRate = 0.1 // one change per 10 s poll interval
		fmt.Printf("bench: alloc-throughput project=%.1f/s peer=%.1f/s ratio=%.1f n=%d elapsed=%s\n", rate, peerRate, rate/peerRate, n, el.Round(time.Millisecond))
		stop()
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// toggleWide allocates and frees the machine "wide" changes times in turn
// and returns how long each change took to be acknowledged by every agent
// in all.
func (f *benchFabric) toggleWide(ctx context.Context, all map[string]bool, changes int) []time.Duration {
	b := f.b
	var fan []time.Duration
	for i := range changes {
		t0 := time.Now()
		var v uint64
		if i%2 == 0 {
			m, err := f.op.AllocateMachine(ctx, &apiv1.AllocateMachineRequest{Machine: "wide", Network: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			v = m.GetAllocation().GetRevision()
		} else {
			if _, err := f.op.FreeMachine(ctx, &apiv1.FreeMachineRequest{Machine: "wide"}); err != nil {
				b.Fatal(err)
			}
			c, err := f.op.GetConvergence(ctx, &apiv1.GetConvergenceRequest{Machine: "wide"})
			if err != nil {
				b.Fatal(err)
			}
			v = c.GetRevision()
		}
		if err := f.waitAcks(all, v); err != nil {
			b.Fatal(err)
		}
		fan = append(fan, time.Since(t0))
	}
	return fan
}
