package agent

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/fabric"
)

// cutNet is the agent's path to the controller, which a test can cut:
// open connections are closed and new ones refused until it is restored.
type cutNet struct {
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func (n *cutNet) dial(ctx context.Context, addr string) (net.Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cut {
		return nil, errors.New("network unreachable (cut by the test)")
	}
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err == nil {
		n.conns = append(n.conns, c)
	}
	return c, err
}

func (n *cutNet) setCut(cut bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut = cut
	if cut {
		for _, c := range n.conns {
			c.Close()
		}
		n.conns = nil
	}
}

// cuttingController cuts the network when the agent reports a version as
// applied: that version cut the device off.
type cuttingController struct {
	*fakeController
	net   *cutNet
	cutAt atomic.Uint64
}

func (c *cuttingController) ReportStatus(ctx context.Context, req *apiv1.ReportStatusRequest) (*apiv1.ReportStatusResponse, error) {
	if req.GetAppliedVersion() == c.cutAt.Load() {
		c.net.setCut(true)
		return nil, grpcstatus.Error(codes.Unavailable, "cut off")
	}
	return c.fakeController.ReportStatus(ctx, req)
}

func serveDevice(t *testing.T, svc apiv1.DeviceServiceServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	apiv1.RegisterDeviceServiceServer(srv, svc)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestCommitConfirmRollsBack(t *testing.T) {
	k := fakeKernel()
	cn := &cutNet{}
	ctl := &cuttingController{fakeController: newFakeController(snapshot(1, vrf(10010, "swp1"))), net: cn}
	ctl.cutAt.Store(2)
	addr := serveDevice(t, ctl)
	ta := runAgent(t, addr, k, WithCommitConfirm(300*time.Millisecond),
		WithDialOptions(grpc.WithContextDialer(cn.dial)), WithStateDir(t.TempDir()))
	if v, errs := statusSummary(ctl.waitStatus(t)); v != 1 || errs != nil {
		t.Fatalf("status: version %d, errors %q; want 1, none", v, errs)
	}
	v1 := k.State().Owned()

	// Version 2 moves swp1 into another VRF, and the device loses the
	// controller: no contact within the window, so it goes back to 1.
	ctl.push(snapshot(2, vrf(10020, "swp1")))
	deadline := time.Now().Add(waitFor)
	for ta.Stats(context.Background()).Rollbacks == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no rollback")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if diff := cmp.Diff(v1, k.State().Owned()); diff != "" {
		t.Errorf("kernel after the rollback (-want version 1 +got):\n%s", diff)
	}
	if got := ta.Stats(context.Background()).AppliedVersion; got != 1 {
		t.Errorf("applied version after the rollback = %d, want 1", got)
	}
	cached, err := ta.loadCache()
	if err != nil || cached.GetVersion() != 1 {
		t.Errorf("last-known-good cache = version %d (%v), want 1 (2 was never confirmed)", cached.GetVersion(), err)
	}

	// The controller is reachable again and still wants 2: the agent
	// reports the rollback and does not apply 2 again.
	ctl.cutAt.Store(0)
	cn.setCut(false)
	st := ctl.waitStatus(t)
	v, errs := statusSummary(st)
	if v != 1 || len(errs) != 1 || !strings.HasPrefix(errs[0], "agent: commit-confirm: version 2 rolled back to 1") {
		t.Fatalf("status after reconnect: version %d, errors %q; want 1 and the rollback", v, errs)
	}
	if diff := cmp.Diff(v1, k.State().Owned()); diff != "" {
		t.Errorf("kernel after the controller resent version 2 (-want version 1 +got):\n%s", diff)
	}

	// A newer version is applied and confirmed; the rollback is gone.
	ctl.push(snapshot(3, vrf(10030, "swp2")))
	for {
		st := ctl.waitStatus(t)
		if v, errs := statusSummary(st); v == 3 {
			if errs != nil {
				t.Errorf("status of version 3: errors %q, want none", errs)
			}
			break
		}
	}
	want := fabric.Desired{VRFs: []fabric.VRF{{Name: "vrf10030", Table: 10030, Ports: []string{"swp2"}}}}
	if diff := cmp.Diff(want, k.State().Owned()); diff != "" {
		t.Errorf("kernel after version 3 (-want +got):\n%s", diff)
	}
	// The report is accepted before the agent notes the confirmation.
	deadline = time.Now().Add(waitFor)
	for {
		cached, err := ta.loadCache()
		if err == nil && cached.GetVersion() == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last-known-good cache = version %d (%v), want 3", cached.GetVersion(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCommitConfirmKeepsConfirmedVersion(t *testing.T) {
	k := fakeKernel()
	ctl := newFakeController(snapshot(1, vrf(10010, "swp1")))
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	ta := runAgent(t, addr, k, WithCommitConfirm(100*time.Millisecond))
	ctl.waitStatus(t)
	ctl.push(snapshot(2, vrf(10020, "swp1")))
	if v, errs := statusSummary(ctl.waitStatus(t)); v != 2 || errs != nil {
		t.Fatalf("status: version %d, errors %q; want 2, none", v, errs)
	}
	// Well past the window: the report confirmed version 2.
	time.Sleep(300 * time.Millisecond)
	if s := ta.Stats(context.Background()); s.Rollbacks != 0 || s.AppliedVersion != 2 {
		t.Errorf("rollbacks %d, applied %d; want 0, 2", s.Rollbacks, s.AppliedVersion)
	}
}
