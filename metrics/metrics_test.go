package metrics_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/metalfabric/fabric/agent"
	"github.com/metalfabric/fabric/bgp"
	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/controlplane/server"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
	ft "github.com/metalfabric/fabric/fabric/fabrictest"
	"github.com/metalfabric/fabric/lldp"
	"github.com/metalfabric/fabric/metrics"
)

const waitFor = 10 * time.Second

// scrape fetches url and returns the samples by "name{labels}".
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scraping %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scraping %s: %s\n%s", url, resp.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// waitSample scrapes until pred holds for the sample, and returns all
// samples of that scrape.
func waitSample(t *testing.T, url, name string, pred func(v float64, ok bool) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		s := scrape(t, url)
		v, ok := s[name]
		if pred(v, ok) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v (present %v) never matched", name, v, ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func eq(want float64) func(float64, bool) bool {
	return func(v float64, ok bool) bool { return ok && v == want }
}

// TestScrapeAgentAndController runs a controller and an agent (fake
// kernel) with their metrics on HTTP, allocates a machine and checks that
// the metrics follow.
func TestScrapeAgentAndController(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))

	st, err := bolt.Open(filepath.Join(t.TempDir(), "controller.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctlReg := metrics.NewRegistry()
	ctlMetrics := metrics.NewController(ctlReg, log)
	srv, err := server.New(st, server.WithLogger(log), server.WithGracePeriod(time.Second),
		server.WithGRPCServerOptions(ctlMetrics.ServerOptions()...))
	if err != nil {
		t.Fatal(err)
	}
	ctlMetrics.SetSource(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Run(ctx, lis) }()
	ctlHTTP := httptest.NewServer(metrics.Handler(ctlReg))
	defer ctlHTTP.Close()
	ctlURL := ctlHTTP.URL + "/metrics"

	agentReg := metrics.NewRegistry()
	agentMetrics := metrics.NewAgent(agentReg)
	k := ft.New(ft.Loopback(), ft.Port("swp1"), ft.Port("swp2"))
	a, err := agent.New(agent.Config{Controller: lis.Addr().String(), Hostname: "leaf1", Role: agent.RoleLeaf},
		agent.WithKernel(k), agent.WithLogger(log), agent.WithObserver(agentMetrics),
		agent.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	agentMetrics.SetSource(a)
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(ctx) }()
	agentHTTP := httptest.NewServer(metrics.Handler(agentReg))
	defer agentHTTP.Close()
	agentURL := agentHTTP.URL + "/metrics"

	// The agent registers, watches and applies its first config.
	waitSample(t, ctlURL, "fabric_controller_watch_streams", eq(1))
	s := waitSample(t, agentURL, "fabric_agent_apply_duration_seconds_count", eq(1))
	first := s["fabric_agent_applied_version"]
	if first == 0 || s["fabric_agent_desired_version"] != first {
		t.Errorf("after the first apply: desired %v, applied %v; want equal and not 0", s["fabric_agent_desired_version"], first)
	}
	if s["fabric_agent_apply_errors_total"] != 0 {
		t.Errorf("fabric_agent_apply_errors_total = %v, want 0", s["fabric_agent_apply_errors_total"])
	}

	// An allocation bumps the agent's version.
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	op := apiv1.NewOperatorServiceClient(conn)
	rctx, rcancel := context.WithTimeout(ctx, waitFor)
	defer rcancel()
	if _, err := op.CreateNetwork(rctx, &apiv1.CreateNetworkRequest{Name: "tenant-a", Prefix: "10.0.1.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.CableMachine(rctx, &apiv1.CableMachineRequest{Machine: "m1",
		Connections: []*apiv1.Connection{{Device: "leaf1", Port: "swp1"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.AllocateMachine(rctx, &apiv1.AllocateMachineRequest{Machine: "m1", Network: "tenant-a"}); err != nil {
		t.Fatal(err)
	}
	s = waitSample(t, agentURL, "fabric_agent_applied_version", func(v float64, _ bool) bool { return v > first })
	if s["fabric_agent_apply_duration_seconds_count"] < 2 {
		t.Errorf("fabric_agent_apply_duration_seconds_count = %v after the allocation, want >= 2", s["fabric_agent_apply_duration_seconds_count"])
	}

	c := scrape(t, ctlURL)
	got := map[string]float64{}
	for _, name := range []string{
		"fabric_controller_devices", "fabric_controller_devices_connected", "fabric_controller_machines",
		"fabric_controller_allocations", "fabric_controller_watch_streams",
		`fabric_controller_api_requests_total{code="OK",method="OperatorService/AllocateMachine"}`,
		`fabric_controller_api_request_duration_seconds_count{method="OperatorService/AllocateMachine"}`,
	} {
		got[name] = c[name]
	}
	want := map[string]float64{
		"fabric_controller_devices": 1, "fabric_controller_devices_connected": 1, "fabric_controller_machines": 1,
		"fabric_controller_allocations": 1, "fabric_controller_watch_streams": 1,
		`fabric_controller_api_requests_total{code="OK",method="OperatorService/AllocateMachine"}`:       1,
		`fabric_controller_api_request_duration_seconds_count{method="OperatorService/AllocateMachine"}`: 1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("controller metrics (-want +got):\n%s", diff)
	}
	if c[`fabric_controller_api_request_duration_seconds_count{method="DeviceService/Register"}`] < 1 {
		t.Errorf("no Register call counted in the latency histogram")
	}

	cancel()
	for _, ch := range []chan error{agentDone, srvDone} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Fatal("Run did not return")
		}
	}
}

// fakeSource is an agent with routing and LLDP, as Stats shows it.
type fakeSource struct{ s agent.Stats }

func (f *fakeSource) Stats(context.Context) agent.Stats { return f.s }

func TestAgentRoutingAndLLDPMetrics(t *testing.T) {
	reg := metrics.NewRegistry()
	m := metrics.NewAgent(reg)
	src := &fakeSource{s: agent.Stats{
		DesiredVersion: 7, AppliedVersion: 6, Rollbacks: 1,
		Drift: agent.DriftStats{Repairs: 3, Unmanaged: 2},
		Routing: &bgp.Status{
			Sessions: []bgp.SessionStatus{
				{PeerState: bgp.PeerState{State: bgp.StateEstablished, Families: []bgp.FamilyState{
					{Family: bgp.IPv4Unicast, Received: 5, Accepted: 4, Rejected: 1}, {Family: bgp.EVPN, Received: 2, Accepted: 2}}}, Installed: 4},
				{PeerState: bgp.PeerState{State: bgp.StateEstablished}},
				{PeerState: bgp.PeerState{State: bgp.StateActive}},
			},
			RoutesInstalled: 9, FailedCount: 2,
		},
		LLDP: &agent.LLDPStats{Neighbors: 3, Counters: lldp.Counters{Malformed: 4, FramesReceived: 40, FramesSent: 50}},
	}}
	m.SetSource(src)
	m.Applied(7, 30*time.Millisecond, nil)
	m.Applied(7, 2*time.Second, context.DeadlineExceeded)
	h := httptest.NewServer(metrics.Handler(reg))
	defer h.Close()
	s := scrape(t, h.URL+"/metrics")

	want := map[string]float64{
		"fabric_agent_desired_version":                          7,
		"fabric_agent_applied_version":                          6,
		"fabric_agent_commit_confirm_rollbacks_total":           1,
		"fabric_agent_drift_repairs_total":                      3,
		"fabric_agent_drift_unmanaged_changes_total":            2,
		`fabric_agent_bgp_sessions{state="established"}`:        2,
		`fabric_agent_bgp_sessions{state="active"}`:             1,
		`fabric_agent_bgp_sessions{state="idle"}`:               0,
		`fabric_agent_bgp_prefixes{kind="received"}`:            7,
		`fabric_agent_bgp_prefixes{kind="accepted"}`:            6,
		`fabric_agent_bgp_prefixes{kind="rejected"}`:            1,
		`fabric_agent_bgp_prefixes{kind="installed"}`:           4,
		"fabric_agent_fib_routes_installed":                     9,
		"fabric_agent_fib_install_failures":                     2,
		"fabric_agent_lldp_neighbors":                           3,
		"fabric_agent_lldp_frames_malformed_total":              4,
		"fabric_agent_lldp_frames_received_total":               40,
		"fabric_agent_lldp_frames_sent_total":                   50,
		"fabric_agent_apply_errors_total":                       1,
		"fabric_agent_apply_duration_seconds_count":             2,
		`fabric_agent_apply_duration_seconds_bucket{le="0.05"}`: 1,
	}
	got := map[string]float64{}
	for k := range want {
		got[k] = s[k]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("agent metrics (-want +got):\n%s", diff)
	}

	// The counters move with the agent.
	src.s.LLDP.Counters.Malformed = 5
	src.s.Drift.Repairs = 4
	s = scrape(t, h.URL+"/metrics")
	if s["fabric_agent_lldp_frames_malformed_total"] != 5 || s["fabric_agent_drift_repairs_total"] != 4 {
		t.Errorf("after more malformed frames and a repair: malformed %v, repairs %v; want 5, 4",
			s["fabric_agent_lldp_frames_malformed_total"], s["fabric_agent_drift_repairs_total"])
	}
}

func TestListenServesMetrics(t *testing.T) {
	reg := metrics.NewRegistry()
	metrics.NewAgent(reg)
	ms, err := metrics.Listen("127.0.0.1:0", reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ms.Run(ctx) }()
	if _, err := metrics.Listen(ms.Addr().String(), reg, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("Listen on a taken port: no error")
	}
	s := scrape(t, "http://"+ms.Addr().String()+"/metrics")
	if _, ok := s["fabric_agent_apply_errors_total"]; !ok {
		t.Error("fabric_agent_apply_errors_total missing")
	}
	if _, ok := s["go_goroutines"]; !ok {
		t.Error("go_goroutines missing (Go collector)")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
