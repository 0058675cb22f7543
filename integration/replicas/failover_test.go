package replicas

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/metalfabric/fabric/agent"
	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/controlplane/server"
	"github.com/metalfabric/fabric/controlplane/store/etcd"
	"github.com/metalfabric/fabric/controlplane/store/etcd/etcdtest"
	ft "github.com/metalfabric/fabric/fabric/fabrictest"
)

const waitFor = 20 * time.Second

// replica is one controller process's worth: its own etcd client, server
// and TCP listener.
type replica struct {
	addr string
	stop func()
}

func startReplica(t *testing.T, endpoints []string, prefix string) *replica {
	t.Helper()
	st, err := etcd.Open(context.Background(), endpoints, etcd.WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(st, server.WithGracePeriod(time.Second),
		server.WithLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, lis) }()
	var once sync.Once
	r := &replica{addr: lis.Addr().String(), stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("replica %s: %v", lis.Addr(), err)
			}
			_ = st.Close()
		})
	}}
	t.Cleanup(r.stop)
	return r
}

// buildController builds fabric-controller from this tree.
func buildController(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fabric-controller")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/fabric-controller").CombinedOutput()
	if err != nil {
		t.Fatalf("building fabric-controller: %v\n%s", err, out)
	}
	return bin
}

// startProcess runs a fabric-controller process on etcd and waits until it
// accepts connections; stop kills it (SIGKILL).
func startProcess(t *testing.T, bin string, endpoints []string, prefix string) *replica {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--store", "etcd", "--etcd-endpoints", strings.Join(endpoints, ","),
		"--etcd-prefix", prefix, "--listen", addr, "--log-level", "info", "--insecure", "--metrics-listen", "")
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var once sync.Once
	r := &replica{addr: addr, stop: func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			<-done
		})
	}}
	t.Cleanup(r.stop)
	poll(t, "fabric-controller on "+addr, func() error {
		select {
		case <-done:
			t.Fatalf("fabric-controller on %s exited", addr)
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	return r
}

func operator(t *testing.T, addr string) apiv1.OperatorServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return apiv1.NewOperatorServiceClient(conn)
}

// poll calls f until it returns nil or waitFor passed.
func poll(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgentFailsOverBetweenReplicas runs two controller replicas on one
// etcd and an agent (fake kernel) that knows both. The agent applies an
// allocation made through the second replica while it is connected to the
// first; then the first replica is stopped, the agent moves to the second
// without applying its version again, and a later allocation reaches it.
func TestAgentFailsOverBetweenReplicas(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	testFailover(t, startReplica(t, c.Endpoints, "/failover/"), startReplica(t, c.Endpoints, "/failover/"))
}

// TestAgentFailsOverWhenReplicaIsKilled is the same with two
// fabric-controller processes (--store etcd); the first is killed with
// SIGKILL.
func TestAgentFailsOverWhenReplicaIsKilled(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	bin := buildController(t)
	testFailover(t, startProcess(t, bin, c.Endpoints, "/failover/"), startProcess(t, bin, c.Endpoints, "/failover/"))
}

func testFailover(t *testing.T, r1, r2 *replica) {
	op := operator(t, r2.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()

	k := ft.New(ft.Loopback(), ft.Port("swp1"), ft.Port("swp2"), ft.Port("swp3"))
	var mu sync.Mutex
	var applied []uint64
	a, err := agent.New(agent.Config{Controllers: []string{r1.addr, r2.addr}, Hostname: "leaf1", Role: agent.RoleLeaf},
		agent.WithKernel(k),
		agent.WithLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))),
		agent.WithBackoff(50*time.Millisecond, 500*time.Millisecond),
		agent.WithLifecycle(func(v uint64, err error) {
			if err != nil {
				t.Errorf("version %d applied with errors: %v", v, err)
			}
			mu.Lock()
			defer mu.Unlock()
			applied = append(applied, v)
		}, nil, 0),
	)
	if err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan error, 1)
	actx, acancel := context.WithCancel(context.Background())
	go func() { agentDone <- a.Run(actx) }()
	defer func() {
		acancel()
		if err := <-agentDone; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
	appliedVersions := func() []uint64 {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(applied)
	}
	// converged waits until the agent applied the machine's revision, as
	// the operator sees it through the second replica.
	converged := func(machine string) uint64 {
		t.Helper()
		var rev uint64
		poll(t, "convergence of "+machine, func() error {
			cv, err := op.GetConvergence(ctx, &apiv1.GetConvergenceRequest{Machine: machine})
			if err != nil {
				return err
			}
			rev = cv.GetRevision()
			if !cv.GetConverged() {
				return fmt.Errorf("not converged: %v", cv)
			}
			return nil
		})
		return rev
	}
	inVRF := func(port string) error {
		l, ok := k.Link(port)
		if !ok || l.Master == "" {
			return fmt.Errorf("%s is in no VRF: %+v", port, l)
		}
		return nil
	}

	poll(t, "leaf1 registered", func() error {
		_, err := op.GetDevice(ctx, &apiv1.GetDeviceRequest{Hostname: "leaf1"})
		return err
	})
	if _, err := op.CreateNetwork(ctx, &apiv1.CreateNetworkRequest{Name: "tenant", Prefix: "10.0.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	for i, m := range []string{"m1", "m2"} {
		conns := []*apiv1.Connection{{Device: "leaf1", Port: fmt.Sprintf("swp%d", i+1)}}
		if _, err := op.CableMachine(ctx, &apiv1.CableMachineRequest{Machine: m, Connections: conns}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := op.AllocateMachine(ctx, &apiv1.AllocateMachineRequest{Machine: "m1", Network: "tenant"}); err != nil {
		t.Fatal(err)
	}
	v1 := converged("m1")
	if err := inVRF("swp1"); err != nil {
		t.Fatal(err)
	}
	before := appliedVersions()
	if before[len(before)-1] != v1 {
		t.Fatalf("applied versions %v, want the last to be %d", before, v1)
	}
	k.ResetCalls()

	t0 := time.Now()
	r1.stop()
	// The agent is on the second replica once a status of it arrives
	// there after the stop: wait for a watch stream on r2.
	poll(t, "agent connected to the second replica", func() error {
		d, err := op.GetDevice(ctx, &apiv1.GetDeviceRequest{Hostname: "leaf1"})
		if err != nil {
			return err
		}
		if !d.GetConnected() {
			return fmt.Errorf("leaf1 not connected to %s", r2.addr)
		}
		return nil
	})
	t.Logf("failover took %s", time.Since(t0).Round(time.Millisecond))
	if got := appliedVersions(); !slices.Equal(got, before) {
		t.Errorf("applied versions after the failover %v, want %v (no re-apply)", got, before)
	}
	if calls := k.Calls(); len(calls) != 0 {
		t.Errorf("kernel calls after the failover: %q, want none", calls)
	}

	if _, err := op.AllocateMachine(ctx, &apiv1.AllocateMachineRequest{Machine: "m2", Network: "tenant"}); err != nil {
		t.Fatal(err)
	}
	v2 := converged("m2")
	if err := inVRF("swp2"); err != nil {
		t.Fatal(err)
	}
	if got := appliedVersions(); got[len(got)-1] != v2 || v2 <= v1 {
		t.Errorf("applied versions %v, want the last to be %d > %d", got, v2, v1)
	}
}
