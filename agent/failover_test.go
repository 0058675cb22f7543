package agent

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestAgentFailsOverToNextController runs an agent with two controller
// replicas holding the same config. When the replica it talks to goes away,
// the agent moves to the other one, which sends the version the agent
// already has: nothing is applied again and the kernel is not touched. A
// later version from the second replica is applied.
func TestAgentFailsOverToNextController(t *testing.T) {
	k := fakeKernel()
	first := newFakeController(snapshot(5, vrf(10010, "swp1")))
	second := newFakeController(snapshot(5, vrf(10010, "swp1")))
	addr1, stop1 := serve(t, first, "127.0.0.1:0")
	addr2, _ := serve(t, second, "127.0.0.1:0")

	var mu sync.Mutex
	var applied []uint64
	a, err := New(Config{Controllers: []string{addr1, addr2}, Hostname: "leaf1", Role: RoleLeaf},
		WithKernel(k),
		WithLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))),
		WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		WithRPCTimeout(2*time.Second),
		WithLifecycle(func(v uint64, err error) {
			mu.Lock()
			defer mu.Unlock()
			applied = append(applied, v)
		}, nil, 0),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	if v, errs := statusSummary(first.waitStatus(t)); v != 5 || errs != nil {
		t.Fatalf("status to the first replica: version %d, errors %q; want 5, none", v, errs)
	}
	k.ResetCalls()
	stop1()

	// The second replica gets the agent's registration, watch and status
	// of the version it has, without an apply.
	if v, errs := statusSummary(second.waitStatus(t)); v != 5 || errs != nil {
		t.Fatalf("status to the second replica: version %d, errors %q; want 5, none", v, errs)
	}
	if w := second.watched(); len(w) != 1 || w[0].GetKnownVersion() != 5 {
		t.Errorf("watches on the second replica = %v, want one with known version 5", w)
	}
	if calls := k.Calls(); len(calls) != 0 {
		t.Errorf("kernel calls after the failover: %q, want none", calls)
	}

	second.push(snapshot(6, vrf(10010, "swp1", "swp2")))
	if v, errs := statusSummary(second.waitStatus(t)); v != 6 || errs != nil {
		t.Fatalf("status after version 6: version %d, errors %q; want 6, none", v, errs)
	}
	if diff := cmp.Diff([]string{"set swp2 master vrf10010"}, k.Calls()); diff != "" {
		t.Errorf("kernel calls for version 6 (-want +got):\n%s", diff)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]uint64{5, 6}, applied); diff != "" {
		t.Errorf("applied versions (-want +got):\n%s", diff)
	}
}
