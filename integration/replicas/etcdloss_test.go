package replicas

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/controlplane/store/etcd/etcdtest"
)

// TestReplicasSurviveEtcdLeaderLoss runs two replicas on a three-member etcd
// cluster and kills the raft leader: both replicas go on serving writes, and
// a change made through one still reaches a device's watch stream on the
// other.
func TestReplicasSurviveEtcdLeaderLoss(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	r1 := startReplica(t, c.Endpoints, "/memberloss/")
	r2 := startReplica(t, c.Endpoints, "/memberloss/")
	op1, op2 := operator(t, r1.addr), operator(t, r2.addr)
	conn, err := grpc.NewClient(r2.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dev := apiv1.NewDeviceServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()

	if _, err := dev.Register(ctx, &apiv1.RegisterRequest{Hostname: "leaf1", Role: apiv1.Role_ROLE_LEAF,
		Ports: []*apiv1.Port{{Name: "swp1", Mtu: 9000, OperUp: true}}}); err != nil {
		t.Fatal(err)
	}
	stream, err := dev.WatchConfig(ctx, &apiv1.WatchConfigRequest{Hostname: "leaf1"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}

	leader := c.Leader()
	c.Kill(leader)
	t.Logf("killed etcd member %d (the leader)", leader)

	// Writes go on through both replicas once the rest elected a leader;
	// the allocation is retried until then.
	t0 := time.Now()
	if _, err := op2.CreateNetwork(ctx, &apiv1.CreateNetworkRequest{Name: "tenant", Prefix: "10.0.0.0/24"}); err != nil {
		t.Fatalf("CreateNetwork through replica 2 after the leader loss: %v", err)
	}
	t.Logf("first write after the leader loss took %s", time.Since(t0).Round(time.Millisecond))
	if _, err := op1.CableMachine(ctx, &apiv1.CableMachineRequest{Machine: "m1", Connections: []*apiv1.Connection{{Device: "leaf1", Port: "swp1"}}}); err != nil {
		t.Fatalf("CableMachine through replica 1: %v", err)
	}
	m, err := op1.AllocateMachine(ctx, &apiv1.AllocateMachineRequest{Machine: "m1", Network: "tenant"})
	if err != nil {
		t.Fatalf("AllocateMachine through replica 1: %v", err)
	}
	want := m.GetAllocation().GetRevision()
	for {
		cfg, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch on replica 2: %v", err)
		}
		if cfg.GetVersion() <= first.GetVersion() {
			t.Fatalf("version %d after %d", cfg.GetVersion(), first.GetVersion())
		}
		if cfg.GetVersion() >= want {
			if n := len(cfg.GetVrfs()); n != 1 {
				t.Errorf("config %d has %d VRFs, want 1", cfg.GetVersion(), n)
			}
			break
		}
	}
	if _, err := op2.GetMachine(ctx, &apiv1.GetMachineRequest{Name: "m1"}); err != nil {
		t.Errorf("read through replica 2: %v", err)
	}
}
