package server_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
)

// TestNeighborsLivenessAndCodes: ReportNeighbors through the API, liveness
// at the server's injected clock (fixedNow), and status codes of bad
// requests that change nothing.
func TestNeighborsLivenessAndCodes(t *testing.T) {
	e := newEnv(t)
	e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1", "swp2", "swp3")
	seen := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(fixedNow.Add(-d)) }
	_, err := e.dev.ReportNeighbors(ctx(t), &apiv1.ReportNeighborsRequest{Hostname: "leaf1", Neighbors: []*apiv1.Neighbor{
		{Port: "swp1", ChassisId: "c1", SystemName: "alive1", LastSeen: seen(time.Minute)},
		{Port: "swp2", ChassisId: "c2", SystemName: "unknown1", LastSeen: seen(10 * time.Minute)},
		{Port: "swp3", ChassisId: "c3", SystemName: "dead1", LastSeen: seen(2 * time.Hour)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]apiv1.Liveness{}
	for _, m := range e.state().Machines.GetMachines() {
		got[m.GetName()] = m.GetLiveness()
	}
	want := map[string]apiv1.Liveness{"alive1": apiv1.Liveness_LIVENESS_ALIVE, "unknown1": apiv1.Liveness_LIVENESS_UNKNOWN, "dead1": apiv1.Liveness_LIVENESS_DEAD}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("liveness (-want +got):\n%s", diff)
	}
	m, err := e.op.GetMachine(ctx(t), &apiv1.GetMachineRequest{Name: "alive1"})
	if err != nil {
		t.Fatal(err)
	}
	wantM := &apiv1.Machine{Name: "alive1", Connections: conns("leaf1", "swp1"), Learned: conns("leaf1", "swp1"),
		Liveness: apiv1.Liveness_LIVENESS_ALIVE, LastSeen: seen(time.Minute), ChassisId: "c1"}
	if diff := cmp.Diff(wantM, m, protocmp.Transform()); diff != "" {
		t.Errorf("GetMachine (-want +got):\n%s", diff)
	}
	d, err := e.op.GetDevice(ctx(t), &apiv1.GetDeviceRequest{Hostname: "leaf1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.GetNeighbors()) != 3 || d.GetAsn() == 0 {
		t.Errorf("GetDevice: %d neighbours, asn %d", len(d.GetNeighbors()), d.GetAsn())
	}

	before := e.state()
	rev := e.devices()["leaf1"].GetDesiredVersion()
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"neighbours of unknown device", func() error {
			_, err := e.dev.ReportNeighbors(ctx(t), &apiv1.ReportNeighborsRequest{Hostname: "leaf9"})
			return err
		}, codes.NotFound},
		{"bad port", func() error {
			_, err := e.dev.ReportNeighbors(ctx(t), &apiv1.ReportNeighborsRequest{Hostname: "leaf1", Neighbors: []*apiv1.Neighbor{{Port: "a b", ChassisId: "x"}}})
			return err
		}, codes.InvalidArgument},
		{"no chassis id", func() error {
			_, err := e.dev.ReportNeighbors(ctx(t), &apiv1.ReportNeighborsRequest{Hostname: "leaf1", Neighbors: []*apiv1.Neighbor{{Port: "swp1"}}})
			return err
		}, codes.InvalidArgument},
		{"get unknown device", func() error {
			_, err := e.op.GetDevice(ctx(t), &apiv1.GetDeviceRequest{Hostname: "leaf9"})
			return err
		}, codes.NotFound},
		{"get unknown machine", func() error {
			_, err := e.op.GetMachine(ctx(t), &apiv1.GetMachineRequest{Name: "nope"})
			return err
		}, codes.NotFound},
		{"get unknown network", func() error {
			_, err := e.op.GetNetwork(ctx(t), &apiv1.GetNetworkRequest{Name: "nope"})
			return err
		}, codes.NotFound},
		{"plan unknown port", func() error {
			_, err := e.op.SetCablingPlan(ctx(t), &apiv1.SetCablingPlanRequest{Device: "leaf1", Ports: []*apiv1.PlannedPort{{Port: "swp9", Neighbor: "m"}}})
			return err
		}, codes.NotFound},
		{"allocate unwired", func() error {
			_, err := e.op.AllocateMachine(ctx(t), &apiv1.AllocateMachineRequest{Machine: "alive1", Network: "nope", RequestId: "r1"})
			return err
		}, codes.NotFound},
	} {
		wantCode(t, tc.call(), tc.code, "")
	}
	if diff := cmp.Diff(before, e.state(), protocmp.Transform()); diff != "" {
		t.Errorf("rejected requests changed state (-want +got):\n%s", diff)
	}
	if got := e.devices()["leaf1"].GetDesiredVersion(); got != rev {
		t.Errorf("desired version moved %d -> %d", rev, got)
	}
}

// TestLivenessOfConnectedAgentsTable: agents report neighbours on change
// only, so a machine in the table of a connected agent stays alive however
// old its report is; once the agent is gone, the report's age counts.
func TestLivenessOfConnectedAgentsTable(t *testing.T) {
	e := newEnv(t)
	e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1")
	_, err := e.dev.ReportNeighbors(ctx(t), &apiv1.ReportNeighborsRequest{Hostname: "leaf1", Neighbors: []*apiv1.Neighbor{
		{Port: "swp1", ChassisId: "c1", SystemName: "m1", LastSeen: timestamppb.New(fixedNow.Add(-2 * time.Hour))},
	}})
	if err != nil {
		t.Fatal(err)
	}
	liveness := func() apiv1.Liveness {
		m, err := e.op.GetMachine(ctx(t), &apiv1.GetMachineRequest{Name: "m1"})
		if err != nil {
			t.Fatal(err)
		}
		return m.GetLiveness()
	}
	if got := liveness(); got != apiv1.Liveness_LIVENESS_DEAD {
		t.Errorf("without a connected agent: %v, want dead", got)
	}
	w := e.watch("leaf1")
	w.next()
	if got := liveness(); got != apiv1.Liveness_LIVENESS_ALIVE {
		t.Errorf("in a connected agent's table: %v, want alive", got)
	}
	w.cancel()
}
