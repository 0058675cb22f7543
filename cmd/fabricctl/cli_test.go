package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/controlplane/server"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
)

// startController runs the real controller on loopback with a fresh store.
func startController(t *testing.T) string {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "controller.db"), bolt.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(st)
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
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
		st.Close()
	})
	return lis.Addr().String()
}

func run(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := newRootCmd(&out)
	cmd.SetArgs(append([]string{"--controller", addr}, args...))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestCLIAgainstController(t *testing.T) {
	addr := startController(t)
	if _, err := run(t, addr, "network", "create", "tenant-a", "--prefix", "10.0.1.0/24"); err != nil {
		t.Fatal(err)
	}
	got, err := run(t, addr, "network", "list")
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAME      PREFIX       VNI    PARENT  USAGE\n" +
		"tenant-a  10.0.1.0/24  10000  -       0/254\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("network list (-want +got):\n%s", diff)
	}

	got, err = run(t, addr, "-o", "yaml", "network", "list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "prefix: 10.0.1.0/24") || !strings.Contains(got, "vni: 10000") {
		t.Errorf("network list -o yaml = %q", got)
	}

	// A bad request comes back with its gRPC code and changes nothing.
	_, err = run(t, addr, "network", "create", "tenant-b", "--prefix", "10.0.1.128/25")
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("overlapping prefix: got %v, want FailedPrecondition", err)
	}
	_, err = run(t, addr, "machine", "allocate", "m1", "--network", "nope")
	if c := status.Code(err); c != codes.NotFound {
		t.Errorf("allocate into unknown network: got %v (%s), want NotFound", err, c)
	}
	if got, _ := run(t, addr, "network", "list"); got != want {
		t.Errorf("network list after rejected requests = %q, want %q", got, want)
	}

	// A child network: the lowest free /28 of its parent, shown with it.
	if _, err := run(t, addr, "network", "create", "kid", "--parent", "tenant-a", "--length", "28"); err != nil {
		t.Fatal(err)
	}
	got, err = run(t, addr, "network", "show", "kid")
	if err != nil {
		t.Fatal(err)
	}
	wantKid := "" +
		"NAME  PREFIX       VNI    PARENT    USAGE\n" +
		"kid   10.0.1.0/28  10001  tenant-a  0/14\n"
	if diff := cmp.Diff(wantKid, got); diff != "" {
		t.Errorf("network show kid (-want +got):\n%s", diff)
	}
	if _, err := run(t, addr, "network", "create", "kid2", "--parent", "tenant-a"); err == nil {
		t.Errorf("--parent without --length: no error")
	}
	if _, err := run(t, addr, "network", "create", "kid2", "--prefix", "10.9.0.0/24", "--parent", "tenant-a", "--length", "28"); err == nil {
		t.Errorf("--prefix with --parent: no error")
	}
	_, err = run(t, addr, "network", "delete", "tenant-a")
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("deleting a parent with children: got %v, want FailedPrecondition", err)
	}

	if _, err := run(t, addr, "-o", "xml", "network", "list"); err == nil || !strings.Contains(err.Error(), "unknown output format") {
		t.Errorf("-o xml: got %v, want unknown output format", err)
	}
}

// TestCLILLDP drives the LLDP-facing commands against the real controller:
// an agent reports neighbours, the operator sees learned wiring, sets a
// plan, lists findings, allocates with a request id.
func TestCLILLDP(t *testing.T) {
	addr := startController(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dev := apiv1.NewDeviceServiceClient(conn)
	ctx := context.Background()
	if _, err := dev.Register(ctx, &apiv1.RegisterRequest{Hostname: "leaf01", Role: apiv1.Role_ROLE_LEAF,
		Ports: []*apiv1.Port{{Name: "swp1", OperUp: true}, {Name: "swp2", OperUp: true}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := dev.ReportNeighbors(ctx, &apiv1.ReportNeighborsRequest{Hostname: "leaf01", Neighbors: []*apiv1.Neighbor{
		{Port: "swp1", ChassisId: "aa:bb:cc:dd:ee:01", PortId: "eth0", SystemName: "machine01", LastSeen: timestamppb.Now()},
	}}); err != nil {
		t.Fatal(err)
	}
	out := func(args ...string) string {
		t.Helper()
		got, err := run(t, addr, args...)
		if err != nil {
			t.Fatalf("fabricctl %v: %v", args, err)
		}
		return got
	}
	got := out("machine", "list")
	want := "" +
		"NAME       CONNECTIONS  WIRING   LIVENESS  NETWORK  IP\n" +
		"machine01  leaf01:swp1  learned  alive     -        -\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("machine list (-want +got):\n%s", diff)
	}
	if got := out("machine", "show", "machine01"); !strings.Contains(got, "learned      leaf01:swp1") || !strings.Contains(got, "chassis id   aa:bb:cc:dd:ee:01") {
		t.Errorf("machine show = %q", got)
	}
	if got := out("switch", "show", "leaf01"); !strings.Contains(got, "swp1  true  machine01  eth0") || !strings.Contains(got, "swp2  true  -") {
		t.Errorf("switch show = %q", got)
	}
	if got := out("switch", "list"); !strings.Contains(got, "leaf01") {
		t.Errorf("switch list = %q", got)
	}
	out("switch", "plan", "leaf01", "--port", "swp1=machine01", "--port", "swp2=machine02")
	want = "" +
		"DEVICE  PORT  KIND     EXPECTED   ACTUAL\n" +
		"leaf01  swp2  missing  machine02  -\n"
	if diff := cmp.Diff(want, out("findings")); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
	out("network", "create", "tenant-a", "--prefix", "10.0.1.0/24")
	first := out("-o", "json", "machine", "allocate", "machine01", "--network", "tenant-a", "--request-id", "r1")
	if again := out("-o", "json", "machine", "allocate", "machine01", "--network", "tenant-a", "--request-id", "r1"); again != first {
		t.Errorf("retry with the same request id = %s, want %s", again, first)
	}
	if _, err := run(t, addr, "machine", "allocate", "machine01", "--network", "tenant-a", "--request-id", "r2"); status.Code(err) != codes.AlreadyExists {
		t.Errorf("second allocation: %v, want AlreadyExists", err)
	}
	if got := out("network", "show", "tenant-a"); !strings.Contains(got, "1/254") {
		t.Errorf("network show = %q, want usage 1/254", got)
	}
	if _, err := run(t, addr, "switch", "show", "leaf99"); status.Code(err) != codes.NotFound {
		t.Errorf("switch show unknown: %v, want NotFound", err)
	}
	if got := out("completion", "bash"); !strings.Contains(got, "fabricctl") {
		t.Errorf("completion bash printed %d bytes", len(got))
	}
}

// TestCLIAnnounceAndRouting: machine allocate --announce against the real
// controller (a bad CIDR is InvalidArgument and allocates nothing), and
// device show with the agent's BGP sessions.
func TestCLIAnnounceAndRouting(t *testing.T) {
	addr := startController(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dev := apiv1.NewDeviceServiceClient(conn)
	ctx := context.Background()
	reg, err := dev.Register(ctx, &apiv1.RegisterRequest{Hostname: "leaf01", Role: apiv1.Role_ROLE_LEAF,
		Ports: []*apiv1.Port{{Name: "swp1", OperUp: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.ReportNeighbors(ctx, &apiv1.ReportNeighborsRequest{Hostname: "leaf01", Neighbors: []*apiv1.Neighbor{
		{Port: "swp1", ChassisId: "aa:bb:cc:dd:ee:01", SystemName: "exit01", LastSeen: timestamppb.Now()},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, addr, "network", "create", "tenant-a", "--prefix", "10.0.1.0/24"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		announce string
		code     codes.Code
		msg      string
	}{
		{"banana", codes.InvalidArgument, "banana"},
		{"192.168.1.1/16", codes.InvalidArgument, "did you mean 192.168.0.0/16?"},
	} {
		_, err := run(t, addr, "machine", "allocate", "exit01", "--network", "tenant-a", "--announce", "0.0.0.0/0", "--announce", bad.announce)
		if status.Code(err) != bad.code || !strings.Contains(status.Convert(err).Message(), bad.msg) {
			t.Errorf("--announce %s: got %v, want %s mentioning %q", bad.announce, err, bad.code, bad.msg)
		}
	}
	if got, _ := run(t, addr, "network", "show", "tenant-a"); !strings.Contains(got, "0/254") {
		t.Errorf("network show after rejected allocations = %q, want usage 0/254", got)
	}
	got, err := run(t, addr, "-o", "yaml", "machine", "allocate", "exit01", "--network", "tenant-a", "--announce", "192.168.0.0/16", "--announce", "0.0.0.0/0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "    announce:\n        - 0.0.0.0/0\n        - 192.168.0.0/16\n") {
		t.Errorf("machine allocate --announce -o yaml = %s, want both prefixes, sorted", got)
	}

	if _, err := dev.ReportStatus(ctx, &apiv1.ReportStatusRequest{Hostname: "leaf01", AppliedVersion: reg.GetDesiredVersion(), Routing: &apiv1.Routing{
		Sessions: []*apiv1.BgpSession{{Peer: "swp1", Vrf: "vrf10000", Description: "exit01", Asn: 4259999999, State: "established",
			Uptime: durationpb.New(42 * time.Second), Received: 2, Accepted: 2, Installed: 2}},
		RoutesInstalled: 7,
	}}); err != nil {
		t.Fatal(err)
	}
	got, err = run(t, addr, "device", "show", "leaf01")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"BGP PEER  VRF       NEIGHBOUR  ASN         STATE        UPTIME  RECEIVED  ACCEPTED  REJECTED  INSTALLED\n",
		"swp1      vrf10000  exit01     4259999999  established  42s     2         2         0         2\n",
		"routes installed      7\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("device show = %s\nwant it to contain %q", got, want)
		}
	}
}

func TestFirewallCommands(t *testing.T) {
	addr := startController(t)
	if _, err := run(t, addr, "network", "create", "tenant-a", "--prefix", "10.1.0.0/24"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`nat: true
egressIPs: [203.0.113.10]
egress:
  - {action: drop, cidrs: [10.0.0.0/8], comment: no private}
  - {action: accept, protocol: tcp, ports: ["80", "8000-8100"]}
ingress:
  - {action: accept, protocol: tcp, cidrs: [203.0.113.0/24], ports: ["22"]}
`)
	if _, err := run(t, addr, "firewall", "set", "tenant-a", "-f", file); err != nil {
		t.Fatalf("firewall set: %v", err)
	}
	got, err := run(t, addr, "firewall", "show", "tenant-a")
	if err != nil {
		t.Fatal(err)
	}
	want := `NETWORK   DIRECTION  #  ACTION  PROTOCOL  CIDRS           PORTS         COMMENT
tenant-a  egress     0  drop    any       10.0.0.0/8      -             no private
tenant-a  egress     1  accept  tcp       -               80,8000-8100  -
tenant-a  ingress    0  accept  tcp       203.0.113.0/24  22            -
tenant-a  nat        -  snat to 203.0.113.10  -  -  -  -
`
	if diff := cmp.Diff(strings.Fields(want), strings.Fields(got)); diff != "" {
		t.Errorf("firewall show (-want +got words):\n%s\n%s", diff, got)
	}

	for _, tc := range []struct {
		name, file, network string
		code                codes.Code
		msg                 string
	}{
		{"mixed families", "egress:\n  - {action: accept, cidrs: [10.0.0.0/8, \"2001:db8::/32\"]}\n", "tenant-a",
			codes.InvalidArgument, "egress rule 0: mixes IPv4 and IPv6 CIDRs"},
		{"unknown network", "nat: true\n", "nope", codes.NotFound, "network nope not found"},
		{"bad cidr", "ingress:\n  - {action: accept, cidrs: [10.0.0/8]}\n", "tenant-a", codes.InvalidArgument, `ingress rule 0: CIDR "10.0.0/8"`},
	} {
		write(tc.file)
		_, err := run(t, addr, "firewall", "set", tc.network, "-f", file)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v; want %v containing %q", tc.name, err, tc.code, tc.msg)
		}
	}
	// The CLI refuses a bad port range before calling.
	write("egress:\n  - {action: accept, protocol: tcp, ports: [\"90-80\"]}\n")
	if _, err := run(t, addr, "firewall", "set", "tenant-a", "-f", file); err == nil || !strings.Contains(err.Error(), `egress rule 0: port range "90-80"`) {
		t.Errorf("bad port range: %v", err)
	}
}
