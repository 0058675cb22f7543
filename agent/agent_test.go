package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/testing/protocmp"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/fabric"
	ft "github.com/metalfabric/fabric/fabric/fabrictest"
)

// waitFor bounds every wait in these tests; nothing waits on a fixed sleep.
const waitFor = 10 * time.Second

// fakeController is a tiny in-process DeviceService: it records what the
// agent sends and streams every pushed snapshot, in order, to each watcher
// (starting with the newest one at the time the watch begins).
type fakeController struct {
	apiv1.UnimplementedDeviceServiceServer

	mu        sync.Mutex
	snaps     []*apiv1.DeviceConfig
	changed   chan struct{}
	registers []*apiv1.RegisterRequest
	watches   []*apiv1.WatchConfigRequest
	statuses  chan *apiv1.ReportStatusRequest
	neighbors chan *apiv1.ReportNeighborsRequest
}

func newFakeController(snaps ...*apiv1.DeviceConfig) *fakeController {
	return &fakeController{snaps: snaps, changed: make(chan struct{}), statuses: make(chan *apiv1.ReportStatusRequest, 100),
		neighbors: make(chan *apiv1.ReportNeighborsRequest, 100)}
}

func (f *fakeController) push(cfg *apiv1.DeviceConfig) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snaps = append(f.snaps, cfg)
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeController) Register(_ context.Context, req *apiv1.RegisterRequest) (*apiv1.RegisterResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registers = append(f.registers, req)
	var v uint64
	if n := len(f.snaps); n > 0 {
		v = f.snaps[n-1].GetVersion()
	}
	return &apiv1.RegisterResponse{DesiredVersion: v}, nil
}

func (f *fakeController) WatchConfig(req *apiv1.WatchConfigRequest, stream grpc.ServerStreamingServer[apiv1.DeviceConfig]) error {
	f.mu.Lock()
	f.watches = append(f.watches, req)
	next := max(len(f.snaps)-1, 0)
	f.mu.Unlock()
	for {
		f.mu.Lock()
		pending := slices.Clone(f.snaps[next:])
		changed := f.changed
		f.mu.Unlock()
		for _, s := range pending {
			if err := stream.Send(s); err != nil {
				return err
			}
			next++
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
	}
}

func (f *fakeController) ReportStatus(_ context.Context, req *apiv1.ReportStatusRequest) (*apiv1.ReportStatusResponse, error) {
	f.statuses <- req
	return &apiv1.ReportStatusResponse{}, nil
}

func (f *fakeController) ReportNeighbors(_ context.Context, req *apiv1.ReportNeighborsRequest) (*apiv1.ReportNeighborsResponse, error) {
	f.neighbors <- req
	return &apiv1.ReportNeighborsResponse{}, nil
}

func (f *fakeController) registered() []*apiv1.RegisterRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.registers)
}

func (f *fakeController) watched() []*apiv1.WatchConfigRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.watches)
}

// waitStatus returns the next status report.
func (f *fakeController) waitStatus(t *testing.T) *apiv1.ReportStatusRequest {
	t.Helper()
	select {
	case s := <-f.statuses:
		return s
	case <-time.After(waitFor):
		t.Fatal("no status report")
		return nil
	}
}

// serve starts a gRPC server for ctl on addr ("127.0.0.1:0" for a new port)
// and returns its address and a function that stops it.
func serve(t *testing.T, ctl *fakeController, addr string) (string, func()) {
	t.Helper()
	var lis net.Listener
	var err error
	deadline := time.Now().Add(waitFor)
	for {
		// The old server's port may linger for a moment after a stop.
		if lis, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("listening: %v", err)
	}
	srv := grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
		MinTime: 5 * time.Second, PermitWithoutStream: true,
	}))
	apiv1.RegisterDeviceServiceServer(srv, ctl)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			srv.Stop()
			<-done
		})
	}
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

func fakeKernel() *ft.Kernel {
	return ft.New(ft.Loopback(), ft.Port("swp1"), ft.Port("swp2"), ft.Port("swp3"),
		ft.VRF("mgmt", 1000, false), ft.In(ft.Port("eth0"), "mgmt"))
}

func snapshot(version uint64, vrfs ...*apiv1.Vrf) *apiv1.DeviceConfig {
	return &apiv1.DeviceConfig{Hostname: "leaf1", Version: version, Role: apiv1.Role_ROLE_LEAF, Vrfs: vrfs}
}

func vrf(vni uint32, ports ...string) *apiv1.Vrf {
	return &apiv1.Vrf{Name: "vrf" + itoa(vni), Vni: vni, Table: vni, Network: "net" + itoa(vni), Ports: ports}
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// testAgent runs an agent until the test ends.
type testAgent struct {
	*Agent
	snapshots   chan uint64 // versions received
	sessionEnds chan error
	stop        func()
}

func runAgent(t *testing.T, addr string, k fabric.Kernel, opts ...Option) *testAgent {
	t.Helper()
	a, err := New(Config{Controller: addr, Hostname: "leaf1", Role: RoleLeaf}, append([]Option{
		WithKernel(k),
		WithLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))),
		WithBackoff(10*time.Millisecond, 50*time.Millisecond),
		WithRPCTimeout(2 * time.Second),
	}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ta := &testAgent{Agent: a, snapshots: make(chan uint64, 100), sessionEnds: make(chan error, 1000)}
	a.onSnapshot = func(v uint64) { ta.snapshots <- v }
	a.onSessionEnd = func(err error) {
		select {
		case ta.sessionEnds <- err:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	ta.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run() = %v, want nil after cancel", err)
				}
			case <-time.After(waitFor):
				t.Error("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(ta.stop)
	return ta
}

func statusSummary(s *apiv1.ReportStatusRequest) (uint64, []string) {
	var errs []string
	for _, e := range s.GetErrors() {
		errs = append(errs, e.GetStep()+": "+e.GetMessage())
	}
	return s.GetAppliedVersion(), errs
}

func TestAgentAppliesSnapshotAndReports(t *testing.T) {
	k := fakeKernel()
	ctl := newFakeController(snapshot(5, vrf(10010, "swp1")))
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	runAgent(t, addr, k)

	st := ctl.waitStatus(t)
	if v, errs := statusSummary(st); v != 5 || errs != nil {
		t.Fatalf("status: version %d, errors %q; want 5, none", v, errs)
	}
	wantCalls := []string{
		"add vrf vrf10010 table 10010 alias fabric-agent",
		"set vrf10010 up",
		"set swp1 master vrf10010",
	}
	if diff := cmp.Diff(wantCalls, k.Calls()); diff != "" {
		t.Errorf("kernel calls (-want +got):\n%s", diff)
	}
	wantPorts := portsToProto(k.State().Ports())
	if diff := cmp.Diff(wantPorts, st.GetPorts(), protocmp.Transform()); diff != "" {
		t.Errorf("status ports (-want +got):\n%s", diff)
	}
	if names := portNames(st.GetPorts()); !slices.Equal(names, []string{"eth0", "swp1", "swp2", "swp3"}) {
		t.Errorf("status ports = %q", names)
	}

	regs := ctl.registered()
	if len(regs) != 1 {
		t.Fatalf("%d registrations, want 1", len(regs))
	}
	eth0, _ := k.Link("eth0")
	wantReg := &apiv1.RegisterRequest{
		Hostname: "leaf1", Role: apiv1.Role_ROLE_LEAF, ChassisMac: eth0.MAC,
		Ports: portsToProto(fakeKernel().State().Ports()),
	}
	if diff := cmp.Diff(wantReg, regs[0], protocmp.Transform()); diff != "" {
		t.Errorf("registration (-want +got):\n%s", diff)
	}

	// A new snapshot without VRFs frees the port and removes the VRF.
	k.ResetCalls()
	ctl.push(snapshot(6))
	if v, errs := statusSummary(ctl.waitStatus(t)); v != 6 || errs != nil {
		t.Fatalf("status: version %d, errors %q; want 6, none", v, errs)
	}
	if diff := cmp.Diff([]string{"set swp1 nomaster", "delete vrf10010"}, k.Calls()); diff != "" {
		t.Errorf("kernel calls (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(fakeKernel().State(), k.State()); diff != "" {
		t.Errorf("kernel after freeing (-want +got):\n%s", diff)
	}
}

func portNames(ports []*apiv1.Port) []string {
	var names []string
	for _, p := range ports {
		names = append(names, p.GetName())
	}
	return names
}

func TestAgentSurvivesControllerLoss(t *testing.T) {
	k := fakeKernel()
	ctl := newFakeController(snapshot(1, vrf(10010, "swp1")))
	addr, stop := serve(t, ctl, "127.0.0.1:0")
	ta := runAgent(t, addr, k)
	if v, errs := statusSummary(ctl.waitStatus(t)); v != 1 || errs != nil {
		t.Fatalf("status: version %d, errors %q; want 1, none", v, errs)
	}
	calls, state := k.Calls(), k.State()

	stop()
	// Wait for the session that was cut plus two failed reconnects.
	for range 3 {
		select {
		case err := <-ta.sessionEnds:
			t.Logf("session ended: %v", err)
		case <-time.After(waitFor):
			t.Fatal("the agent did not notice the controller going away")
		}
	}
	if diff := cmp.Diff(calls, k.Calls()); diff != "" {
		t.Errorf("kernel calls while the controller was away (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(state, k.State()); diff != "" {
		t.Errorf("kernel changed while the controller was away (-before +after):\n%s", diff)
	}

	// The controller comes back on the same address, with a newer config.
	ctl2 := newFakeController(snapshot(2, vrf(10010, "swp1"), vrf(10020, "swp2")))
	serve(t, ctl2, addr)
	if v, errs := statusSummary(ctl2.waitStatus(t)); v != 2 || errs != nil {
		t.Fatalf("status after reconnect: version %d, errors %q; want 2, none", v, errs)
	}
	if got := len(ctl2.registered()); got != 1 {
		t.Errorf("%d registrations after reconnect, want 1", got)
	}
	if w := ctl2.watched(); len(w) != 1 || w[0].GetKnownVersion() != 1 {
		t.Errorf("watch after reconnect = %v, want one with known_version 1", w)
	}
	want := fabric.Desired{VRFs: []fabric.VRF{
		{Name: "vrf10010", Table: 10010, Ports: []string{"swp1"}},
		{Name: "vrf10020", Table: 10020, Ports: []string{"swp2"}},
	}}
	if diff := cmp.Diff(want, k.State().Owned()); diff != "" {
		t.Errorf("kernel after reconnect (-want +got):\n%s", diff)
	}
}

func TestAgentAppliesNewestSnapshot(t *testing.T) {
	k := fakeKernel()
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	k.SetHook(func(call string) {
		if call == "add vrf vrf1 table 1 alias fabric-agent" {
			once.Do(func() { close(started) })
			<-release
		}
	})
	ctl := newFakeController(snapshot(1, vrf(1, "swp1")))
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	ta := runAgent(t, addr, k)

	select {
	case <-started:
	case <-time.After(waitFor):
		t.Fatal("version 1 was not applied")
	}
	// While version 1 is being applied, versions 2 and 3 arrive.
	ctl.push(snapshot(2, vrf(2, "swp2")))
	ctl.push(snapshot(3, vrf(3, "swp3")))
	for {
		v := <-ta.snapshots
		if v == 3 {
			break
		}
	}
	close(release)

	var got []uint64
	for _, want := range []uint64{1, 3} {
		v, errs := statusSummary(ctl.waitStatus(t))
		if errs != nil {
			t.Errorf("status %d: errors %q", v, errs)
		}
		got = append(got, v)
		if v != want {
			break
		}
	}
	if diff := cmp.Diff([]uint64{1, 3}, got); diff != "" {
		t.Errorf("reported versions (-want +got):\n%s", diff)
	}
	for _, c := range k.Calls() {
		if strings.Contains(c, "vrf2") {
			t.Errorf("superseded version 2 reached the kernel: %q", c)
		}
	}
	want := fabric.Desired{VRFs: []fabric.VRF{{Name: "vrf3", Table: 3, Ports: []string{"swp3"}}}}
	if diff := cmp.Diff(want, k.State().Owned()); diff != "" {
		t.Errorf("kernel (-want +got):\n%s", diff)
	}
}

func TestAgentReportsBadConfig(t *testing.T) {
	k := fakeKernel()
	ctl := newFakeController(snapshot(1, vrf(10010, "swp1")))
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	runAgent(t, addr, k)
	ctl.waitStatus(t)
	calls, state := k.Calls(), k.State()

	// swp9 does not exist, and swp1 is in two VRFs.
	ctl.push(snapshot(2, vrf(10010, "swp1", "swp9"), vrf(10020, "swp1")))
	v, errs := statusSummary(ctl.waitStatus(t))
	want := []string{"fabric: validate: invalid desired config: " +
		"port swp9 of vrf vrf10010 does not exist; port swp1 is in vrf vrf10010 and vrf vrf10020"}
	if v != 2 {
		t.Errorf("status version = %d, want 2", v)
	}
	if diff := cmp.Diff(want, errs); diff != "" {
		t.Errorf("status errors (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(calls, k.Calls()); diff != "" {
		t.Errorf("kernel calls (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(state, k.State()); diff != "" {
		t.Errorf("kernel changed (-before +after):\n%s", diff)
	}
}

func TestAgentReportsStepErrors(t *testing.T) {
	k := fakeKernel()
	k.FailOn("set swp1 master vrf10010", errors.New("injected"))
	ctl := newFakeController(snapshot(4, vrf(10010, "swp1"), vrf(10020, "swp2")))
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	runAgent(t, addr, k)
	v, errs := statusSummary(ctl.waitStatus(t))
	if v != 4 {
		t.Errorf("status version = %d, want 4", v)
	}
	want := []string{"fabric: set swp1 master vrf10010: enslaving swp1 to vrf10010: injected"}
	if diff := cmp.Diff(want, errs); diff != "" {
		t.Errorf("status errors (-want +got):\n%s", diff)
	}
	wantState := fabric.Desired{VRFs: []fabric.VRF{
		{Name: "vrf10010", Table: 10010},
		{Name: "vrf10020", Table: 10020, Ports: []string{"swp2"}},
	}}
	if diff := cmp.Diff(wantState, k.State().Owned()); diff != "" {
		t.Errorf("kernel (-want +got):\n%s", diff)
	}
}

func TestAgentRestartDoesNotFlap(t *testing.T) {
	k := fakeKernel()
	ctl := newFakeController(snapshot(3, vrf(10010, "swp1")))
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	first := runAgent(t, addr, k)
	ctl.waitStatus(t)
	state := k.State()

	first.stop()
	if diff := cmp.Diff(state, k.State()); diff != "" {
		t.Errorf("shutdown changed the kernel (-before +after):\n%s", diff)
	}

	k.ResetCalls()
	runAgent(t, addr, k)
	if v, errs := statusSummary(ctl.waitStatus(t)); v != 3 || errs != nil {
		t.Fatalf("status after restart: version %d, errors %q; want 3, none", v, errs)
	}
	if calls := k.Calls(); len(calls) != 0 {
		t.Errorf("restart made kernel calls %q, want none", calls)
	}
}

func TestAgentPlan(t *testing.T) {
	k := fakeKernel()
	ctl := newFakeController(snapshot(9, vrf(10010, "swp1", "swp2")))
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	a, err := New(Config{Controller: addr, Hostname: "leaf1", Role: RoleLeaf}, WithKernel(k))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	v, changes, err := a.Plan(ctx)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.String())
	}
	want := []string{
		"add vrf vrf10010 table 10010",
		"set vrf10010 up",
		"set swp1 master vrf10010",
		"set swp2 master vrf10010",
	}
	if v != 9 {
		t.Errorf("Plan version = %d, want 9", v)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Plan changes (-want +got):\n%s", diff)
	}
	if calls := k.Calls(); len(calls) != 0 {
		t.Errorf("Plan made kernel calls %q", calls)
	}
	if regs := ctl.registered(); len(regs) != 0 {
		t.Errorf("Plan registered the device")
	}
}

// TestLifecycleHooks: the service manager hears of every apply and gets
// heartbeats from the session loop while it idles on the watch stream.
func TestLifecycleHooks(t *testing.T) {
	ctl := newFakeController(snapshot(5, vrf(10010, "swp1")))
	addr, _ := serve(t, ctl, "127.0.0.1:0")
	applied := make(chan uint64, 10)
	beats := make(chan struct{}, 1000)
	runAgent(t, addr, fakeKernel(), WithLifecycle(
		func(v uint64, err error) {
			if err == nil {
				applied <- v
			}
		},
		func() { beats <- struct{}{} },
		5*time.Millisecond))
	select {
	case v := <-applied:
		if v != 5 {
			t.Errorf("applied version %d, want 5", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no apply reported to the lifecycle hook")
	}
	ctl.waitStatus(t)
	// Idle on the stream: the heartbeat keeps coming.
	for range len(beats) {
		<-beats
	}
	for i := 0; i < 3; i++ {
		select {
		case <-beats:
		case <-time.After(10 * time.Second):
			t.Fatal("no heartbeat while idle on the watch stream")
		}
	}
}
