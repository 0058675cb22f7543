package server_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/testing/protocmp"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/controlplane/compile"
	"github.com/metalfabric/fabric/controlplane/ipam"
	"github.com/metalfabric/fabric/controlplane/server"
	"github.com/metalfabric/fabric/controlplane/store"
	"github.com/metalfabric/fabric/controlplane/store/bolt"
)

var fixedNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// env is one controller over a bbolt file, served on an in-memory listener,
// and a client connection to it.
type env struct {
	t    *testing.T
	path string
	dev  apiv1.DeviceServiceClient
	op   apiv1.OperatorServiceClient

	cancel context.CancelFunc
	done   chan error
	conn   *grpc.ClientConn
	st     store.Store
}

func start(t *testing.T, path string, opts ...server.Option) *env {
	t.Helper()
	st, err := bolt.Open(path)
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	e := serve(t, st, opts...)
	e.path = path
	return e
}

// serve runs a controller over st (closed by stop) on an in-memory
// listener.
func serve(t *testing.T, st store.Store, opts ...server.Option) *env {
	t.Helper()
	opts = append([]server.Option{server.WithClock(func() time.Time { return fixedNow }), server.WithGracePeriod(2 * time.Second)}, opts...)
	srv, err := server.New(st, opts...)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	lis := bufconn.Listen(1 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, lis) }()
	conn, err := grpc.NewClient("passthrough:///controller",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	e := &env{
		t:   t,
		dev: apiv1.NewDeviceServiceClient(conn), op: apiv1.NewOperatorServiceClient(conn),
		cancel: cancel, done: done, conn: conn, st: st,
	}
	t.Cleanup(e.stop)
	return e
}

func newEnv(t *testing.T, opts ...server.Option) *env {
	return start(t, filepath.Join(t.TempDir(), "controller.db"), opts...)
}

// stop shuts the server down and closes its store; safe to call twice.
func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		e.t.Errorf("Run did not return after cancel")
	}
	_ = e.conn.Close()
	if err := e.st.Close(); err != nil {
		e.t.Errorf("closing store: %v", err)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func ports(names ...string) []*apiv1.Port {
	var out []*apiv1.Port
	for _, n := range names {
		out = append(out, &apiv1.Port{Name: n, Mtu: 9000, OperUp: true})
	}
	return out
}

func conns(pairs ...string) []*apiv1.Connection {
	var out []*apiv1.Connection
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, &apiv1.Connection{Device: pairs[i], Port: pairs[i+1]})
	}
	return out
}

func (e *env) register(host string, role apiv1.Role, portNames ...string) uint64 {
	e.t.Helper()
	resp, err := e.dev.Register(ctx(e.t), &apiv1.RegisterRequest{
		Hostname: host, Role: role, ChassisMac: "aa:bb:cc:00:00:01", Ports: ports(portNames...),
	})
	if err != nil {
		e.t.Fatalf("Register(%s): %v", host, err)
	}
	return resp.GetDesiredVersion()
}

func (e *env) createNetwork(name, prefix string) *apiv1.Network {
	e.t.Helper()
	n, err := e.op.CreateNetwork(ctx(e.t), &apiv1.CreateNetworkRequest{Name: name, Prefix: prefix})
	if err != nil {
		e.t.Fatalf("CreateNetwork(%s, %s): %v", name, prefix, err)
	}
	return n
}

func (e *env) cable(machine string, c ...*apiv1.Connection) {
	e.t.Helper()
	if _, err := e.op.CableMachine(ctx(e.t), &apiv1.CableMachineRequest{Machine: machine, Connections: c}); err != nil {
		e.t.Fatalf("CableMachine(%s): %v", machine, err)
	}
}

func (e *env) allocate(machine, network string) *apiv1.Machine {
	e.t.Helper()
	m, err := e.op.AllocateMachine(ctx(e.t), &apiv1.AllocateMachineRequest{Machine: machine, Network: network})
	if err != nil {
		e.t.Fatalf("AllocateMachine(%s, %s): %v", machine, network, err)
	}
	return m
}

func (e *env) free(machine string) *apiv1.Machine {
	e.t.Helper()
	m, err := e.op.FreeMachine(ctx(e.t), &apiv1.FreeMachineRequest{Machine: machine})
	if err != nil {
		e.t.Fatalf("FreeMachine(%s): %v", machine, err)
	}
	return m
}

func (e *env) convergence(machine string) *apiv1.Convergence {
	e.t.Helper()
	c, err := e.op.GetConvergence(ctx(e.t), &apiv1.GetConvergenceRequest{Machine: machine})
	if err != nil {
		e.t.Fatalf("GetConvergence(%s): %v", machine, err)
	}
	return c
}

func (e *env) report(host string, applied uint64, errs ...*apiv1.StepError) {
	e.t.Helper()
	_, err := e.dev.ReportStatus(ctx(e.t), &apiv1.ReportStatusRequest{Hostname: host, AppliedVersion: applied, Errors: errs})
	if err != nil {
		e.t.Fatalf("ReportStatus(%s, %d): %v", host, applied, err)
	}
}

func (e *env) devices() map[string]*apiv1.Device {
	e.t.Helper()
	resp, err := e.op.ListDevices(ctx(e.t), &apiv1.ListDevicesRequest{})
	if err != nil {
		e.t.Fatalf("ListDevices: %v", err)
	}
	out := make(map[string]*apiv1.Device)
	for _, d := range resp.GetDevices() {
		out[d.GetHostname()] = d
	}
	return out
}

// state is everything an operator can read.
type state struct {
	Networks *apiv1.ListNetworksResponse
	Machines *apiv1.ListMachinesResponse
	Devices  *apiv1.ListDevicesResponse
}

func (e *env) state() state {
	e.t.Helper()
	var s state
	var err error
	if s.Networks, err = e.op.ListNetworks(ctx(e.t), &apiv1.ListNetworksRequest{}); err != nil {
		e.t.Fatalf("ListNetworks: %v", err)
	}
	if s.Machines, err = e.op.ListMachines(ctx(e.t), &apiv1.ListMachinesRequest{}); err != nil {
		e.t.Fatalf("ListMachines: %v", err)
	}
	if s.Devices, err = e.op.ListDevices(ctx(e.t), &apiv1.ListDevicesRequest{}); err != nil {
		e.t.Fatalf("ListDevices: %v", err)
	}
	return s
}

// watcher is an open WatchConfig stream.
type watcher struct {
	t      *testing.T
	stream grpc.ServerStreamingClient[apiv1.DeviceConfig]
	cancel context.CancelFunc
}

func (e *env) watch(host string) *watcher {
	e.t.Helper()
	c, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	s, err := e.dev.WatchConfig(c, &apiv1.WatchConfigRequest{Hostname: host})
	if err != nil {
		e.t.Fatalf("WatchConfig(%s): %v", host, err)
	}
	return &watcher{t: e.t, stream: s, cancel: cancel}
}

func (w *watcher) next() *apiv1.DeviceConfig {
	w.t.Helper()
	type result struct {
		c   *apiv1.DeviceConfig
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := w.stream.Recv()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			w.t.Fatalf("Recv: %v", r.err)
		}
		return r.c
	case <-time.After(10 * time.Second):
		w.t.Fatal("no snapshot within 10s")
		return nil
	}
}

func wantCode(t *testing.T, err error, want codes.Code, msgContains string) {
	t.Helper()
	t.Logf("%v: %s", status.Code(err), status.Convert(err).Message())
	if got := status.Code(err); got != want {
		t.Errorf("code = %v (%v), want %v", got, err, want)
		return
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, msgContains) {
		t.Errorf("message %q does not contain %q", msg, msgContains)
	}
}

// vrf is a tenant VRF on a leaf (leaves have loopbacks, so L3VNIs).
func vrf(vni uint32, network string, ports ...string) *apiv1.Vrf {
	return &apiv1.Vrf{Name: "vrf" + itoa(vni), Vni: vni, Table: vni, Network: network, Ports: ports, L3Vni: true}
}

// machinePeer is the BGP session with a machine on a port, allowed the
// given prefixes, with the default max-prefix guard.
func machinePeer(port, machine string, allowed ...string) *apiv1.MachinePeer {
	return &apiv1.MachinePeer{Port: port, Machine: machine, Allowed: allowed, MaxPrefixes: compile.DefaultMachineMaxPrefixes}
}

// withPeers sets a VRF's machine peers.
func withPeers(v *apiv1.Vrf, peers ...*apiv1.MachinePeer) *apiv1.Vrf {
	v.MachinePeers = peers
	return v
}

// leafConfig is a leaf's config with the loopback the pool hands out in
// registration order (VTEP too), the ASN of the same order (10.255.0.N gets
// 4210000000+N) and the test's chassis MAC as router MAC.
func leafConfig(host string, version uint64, lo string) *apiv1.DeviceConfig {
	n := netip.MustParseAddr(lo).As4()[3]
	return &apiv1.DeviceConfig{Hostname: host, Version: version, Role: apiv1.Role_ROLE_LEAF,
		Loopback: lo + "/32", Vtep: lo, RouterMac: "aa:bb:cc:00:00:01", Asn: ipam.DefaultASNRange.First - 1 + uint32(n)}
}

func itoa(v uint32) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}

// TestBadRequestsChangeNothing sends every kind of bad request and checks
// the status code, and that neither the state nor the revision moved.
func TestBadRequestsChangeNothing(t *testing.T) {
	e := newEnv(t)
	e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1", "swp2", "swp3", "swp4")
	e.register("spine1", apiv1.Role_ROLE_SPINE, "swp1")
	e.createNetwork("tenant-a", "10.0.0.0/30") // two hosts
	e.createNetwork("tenant-b", "10.0.1.0/24")
	e.cable("m1", conns("leaf1", "swp1")...)
	e.cable("m2", conns("leaf1", "swp2")...)
	e.cable("m3") // no connections
	e.cable("m5", conns("leaf1", "swp3")...)
	e.allocate("m1", "tenant-a")
	rev := e.allocate("m2", "tenant-a").GetAllocation().GetRevision() // tenant-a is now full

	before := e.state()
	c := ctx(t)
	tests := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"malformed cidr", func() error {
			_, err := e.op.CreateNetwork(c, &apiv1.CreateNetworkRequest{Name: "x", Prefix: "10.0.0/24"})
			return err
		}, codes.InvalidArgument, "malformed prefix"},
		{"not a prefix", func() error {
			_, err := e.op.CreateNetwork(c, &apiv1.CreateNetworkRequest{Name: "x", Prefix: "banana"})
			return err
		}, codes.InvalidArgument, "malformed prefix"},
		{"empty prefix", func() error {
			_, err := e.op.CreateNetwork(c, &apiv1.CreateNetworkRequest{Name: "x"})
			return err
		}, codes.InvalidArgument, "malformed prefix"},
		{"host bits set", func() error {
			_, err := e.op.CreateNetwork(c, &apiv1.CreateNetworkRequest{Name: "x", Prefix: "10.9.0.5/24"})
			return err
		}, codes.InvalidArgument, "did you mean 10.9.0.0/24?"},
		{"host bits set v6", func() error {
			_, err := e.op.CreateNetwork(c, &apiv1.CreateNetworkRequest{Name: "x", Prefix: "2001:db8::1/64"})
			return err
		}, codes.InvalidArgument, "did you mean 2001:db8::/64?"},
		{"prefix without hosts", func() error {
			_, err := e.op.CreateNetwork(c, &apiv1.CreateNetworkRequest{Name: "x", Prefix: "10.9.0.1/32"})
			return err
		}, codes.InvalidArgument, "no host addresses"},
		{"bad network name", func() error {
			_, err := e.op.CreateNetwork(c, &apiv1.CreateNetworkRequest{Name: "Tenant_A!", Prefix: "10.9.0.0/24"})
			return err
		}, codes.InvalidArgument, "Tenant_A!"},
		{"empty network name", func() error {
			_, err := e.op.CreateNetwork(c, &apiv1.CreateNetworkRequest{Prefix: "10.9.0.0/24"})
			return err
		}, codes.InvalidArgument, "empty"},
		{"overlapping prefix", func() error {
			_, err := e.op.CreateNetwork(c, &apiv1.CreateNetworkRequest{Name: "x", Prefix: "10.0.0.0/16"})
			return err
		}, codes.FailedPrecondition, "overlaps network tenant-a"},
		{"overlapping prefix inside", func() error {
			_, err := e.op.CreateNetwork(c, &apiv1.CreateNetworkRequest{Name: "x", Prefix: "10.0.1.128/25"})
			return err
		}, codes.FailedPrecondition, "overlaps network tenant-b"},
		{"prefix overlapping the loopback pool", func() error {
			_, err := e.op.CreateNetwork(c, &apiv1.CreateNetworkRequest{Name: "x", Prefix: "10.255.0.0/16"})
			return err
		}, codes.FailedPrecondition, "overlaps the device loopback pool 10.255.0.0/24"},
		{"duplicate network name", func() error {
			_, err := e.op.CreateNetwork(c, &apiv1.CreateNetworkRequest{Name: "tenant-a", Prefix: "10.9.0.0/24"})
			return err
		}, codes.AlreadyExists, "tenant-a"},
		{"delete unknown network", func() error {
			_, err := e.op.DeleteNetwork(c, &apiv1.DeleteNetworkRequest{Name: "nope"})
			return err
		}, codes.NotFound, "network nope"},
		{"delete network with allocations", func() error {
			_, err := e.op.DeleteNetwork(c, &apiv1.DeleteNetworkRequest{Name: "tenant-a"})
			return err
		}, codes.FailedPrecondition, "m1, m2"},
		{"delete network bad name", func() error {
			_, err := e.op.DeleteNetwork(c, &apiv1.DeleteNetworkRequest{Name: "a b"})
			return err
		}, codes.InvalidArgument, "a b"},
		{"allocate unknown machine", func() error {
			_, err := e.op.AllocateMachine(c, &apiv1.AllocateMachineRequest{Machine: "nope", Network: "tenant-b"})
			return err
		}, codes.NotFound, "machine nope"},
		{"allocate into unknown network", func() error {
			_, err := e.op.AllocateMachine(c, &apiv1.AllocateMachineRequest{Machine: "m5", Network: "nope"})
			return err
		}, codes.NotFound, "network nope"},
		{"double allocation", func() error {
			_, err := e.op.AllocateMachine(c, &apiv1.AllocateMachineRequest{Machine: "m1", Network: "tenant-b"})
			return err
		}, codes.AlreadyExists, "already allocated to network tenant-a"},
		{"allocate machine without connections", func() error {
			_, err := e.op.AllocateMachine(c, &apiv1.AllocateMachineRequest{Machine: "m3", Network: "tenant-b"})
			return err
		}, codes.FailedPrecondition, "no known wiring"},
		{"full network", func() error {
			_, err := e.op.AllocateMachine(c, &apiv1.AllocateMachineRequest{Machine: "m5", Network: "tenant-a"})
			return err
		}, codes.ResourceExhausted, "network tenant-a is full"},
		{"allocate bad machine name", func() error {
			_, err := e.op.AllocateMachine(c, &apiv1.AllocateMachineRequest{Machine: "", Network: "tenant-b"})
			return err
		}, codes.InvalidArgument, "machine name is empty"},
		{"announce not a CIDR", func() error {
			_, err := e.op.AllocateMachine(c, &apiv1.AllocateMachineRequest{Machine: "m5", Network: "tenant-b", Announce: []string{"0.0.0.0/0", "banana"}})
			return err
		}, codes.InvalidArgument, `announceable prefix "banana"`},
		{"announce empty string", func() error {
			_, err := e.op.AllocateMachine(c, &apiv1.AllocateMachineRequest{Machine: "m5", Network: "tenant-b", Announce: []string{""}})
			return err
		}, codes.InvalidArgument, `allocating machine m5: announceable prefix ""`},
		{"announce address without length", func() error {
			_, err := e.op.AllocateMachine(c, &apiv1.AllocateMachineRequest{Machine: "m5", Network: "tenant-b", Announce: []string{"192.168.0.1"}})
			return err
		}, codes.InvalidArgument, "192.168.0.1"},
		{"announce with host bits set", func() error {
			_, err := e.op.AllocateMachine(c, &apiv1.AllocateMachineRequest{Machine: "m5", Network: "tenant-b", Announce: []string{"10.96.0.1/12"}})
			return err
		}, codes.InvalidArgument, "did you mean 10.96.0.0/12?"},
		{"announce listed twice", func() error {
			_, err := e.op.AllocateMachine(c, &apiv1.AllocateMachineRequest{Machine: "m5", Network: "tenant-b", Announce: []string{"0.0.0.0/0", "0.0.0.0/0"}})
			return err
		}, codes.InvalidArgument, "0.0.0.0/0 is listed twice"},
		{"free unallocated machine", func() error {
			_, err := e.op.FreeMachine(c, &apiv1.FreeMachineRequest{Machine: "m5"})
			return err
		}, codes.FailedPrecondition, "not allocated"},
		{"free unknown machine", func() error {
			_, err := e.op.FreeMachine(c, &apiv1.FreeMachineRequest{Machine: "nope"})
			return err
		}, codes.NotFound, "machine nope"},
		{"cable to unregistered device", func() error {
			_, err := e.op.CableMachine(c, &apiv1.CableMachineRequest{Machine: "m9", Connections: conns("leaf9", "swp1")})
			return err
		}, codes.NotFound, "device leaf9 has not registered"},
		{"cable to unreported port", func() error {
			_, err := e.op.CableMachine(c, &apiv1.CableMachineRequest{Machine: "m9", Connections: conns("leaf1", "swp99")})
			return err
		}, codes.NotFound, "did not report a port swp99"},
		{"recable allocated machine to unreported port", func() error {
			_, err := e.op.CableMachine(c, &apiv1.CableMachineRequest{Machine: "m1", Connections: conns("leaf1", "swp1", "leaf1", "swp99")})
			return err
		}, codes.NotFound, "swp99"},
		{"cable to a spine", func() error {
			_, err := e.op.CableMachine(c, &apiv1.CableMachineRequest{Machine: "m9", Connections: conns("spine1", "swp1")})
			return err
		}, codes.FailedPrecondition, "spine"},
		{"cable to a port taken by another machine", func() error {
			_, err := e.op.CableMachine(c, &apiv1.CableMachineRequest{Machine: "m9", Connections: conns("leaf1", "swp1")})
			return err
		}, codes.FailedPrecondition, "already cabled to machine m1"},
		{"cable same port twice", func() error {
			_, err := e.op.CableMachine(c, &apiv1.CableMachineRequest{Machine: "m9", Connections: conns("leaf1", "swp4", "leaf1", "swp4")})
			return err
		}, codes.InvalidArgument, "listed twice"},
		{"cable bad machine name", func() error {
			_, err := e.op.CableMachine(c, &apiv1.CableMachineRequest{Machine: "-m", Connections: conns("leaf1", "swp4")})
			return err
		}, codes.InvalidArgument, "-m"},
		{"cable bad port name", func() error {
			_, err := e.op.CableMachine(c, &apiv1.CableMachineRequest{Machine: "m9", Connections: conns("leaf1", "a/b")})
			return err
		}, codes.InvalidArgument, "a/b"},
		{"register bad hostname", func() error {
			_, err := e.dev.Register(c, &apiv1.RegisterRequest{Hostname: "leaf_1", Role: apiv1.Role_ROLE_LEAF})
			return err
		}, codes.InvalidArgument, "leaf_1"},
		{"register without role", func() error {
			_, err := e.dev.Register(c, &apiv1.RegisterRequest{Hostname: "leaf1", Ports: ports("swp1")})
			return err
		}, codes.InvalidArgument, "role"},
		{"register bad mac", func() error {
			_, err := e.dev.Register(c, &apiv1.RegisterRequest{Hostname: "leaf1", Role: apiv1.Role_ROLE_LEAF, ChassisMac: "nope"})
			return err
		}, codes.InvalidArgument, "chassis mac"},
		{"register duplicate port", func() error {
			_, err := e.dev.Register(c, &apiv1.RegisterRequest{Hostname: "leaf1", Role: apiv1.Role_ROLE_LEAF, Ports: ports("swp1", "swp1")})
			return err
		}, codes.InvalidArgument, "listed twice"},
		{"register bad port name", func() error {
			_, err := e.dev.Register(c, &apiv1.RegisterRequest{Hostname: "leaf1", Role: apiv1.Role_ROLE_LEAF, Ports: ports("averyveryverylongportname")})
			return err
		}, codes.InvalidArgument, "longer than 15"},
		{"report unknown device", func() error {
			_, err := e.dev.ReportStatus(c, &apiv1.ReportStatusRequest{Hostname: "leaf9", AppliedVersion: 1})
			return err
		}, codes.NotFound, "device leaf9"},
		{"report a version never issued", func() error {
			_, err := e.dev.ReportStatus(c, &apiv1.ReportStatusRequest{Hostname: "leaf1", AppliedVersion: 1 << 40})
			return err
		}, codes.FailedPrecondition, "newer than the desired version"},
		{"convergence of unknown machine", func() error {
			_, err := e.op.GetConvergence(c, &apiv1.GetConvergenceRequest{Machine: "nope"})
			return err
		}, codes.NotFound, "machine nope"},
		{"watch unknown device", func() error {
			s, err := e.dev.WatchConfig(c, &apiv1.WatchConfigRequest{Hostname: "leaf9"})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, codes.NotFound, "device leaf9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, tc.call(), tc.code, tc.msg)
			if diff := cmp.Diff(before, e.state(), protocmp.Transform()); diff != "" {
				t.Errorf("state changed (-before +after):\n%s", diff)
			}
		})
	}

	// No bad request bumped the revision: the next two changes get the
	// next two revisions.
	e.free("m2")
	if got := e.allocate("m2", "tenant-a").GetAllocation().GetRevision(); got != rev+2 {
		t.Errorf("revision after bad requests and one free = %d, want %d", got, rev+2)
	}
}

func TestVNIPoolExhausted(t *testing.T) {
	e := newEnv(t, server.WithVNIRange(ipam.VNIRange{First: 20, Last: 21}))
	if got := e.createNetwork("a", "10.0.0.0/24").GetVni(); got != 20 {
		t.Errorf("first VNI = %d, want 20", got)
	}
	if got := e.createNetwork("b", "10.0.1.0/24").GetVni(); got != 21 {
		t.Errorf("second VNI = %d, want 21", got)
	}
	before := e.state()
	_, err := e.op.CreateNetwork(ctx(t), &apiv1.CreateNetworkRequest{Name: "c", Prefix: "10.0.2.0/24"})
	wantCode(t, err, codes.ResourceExhausted, "no free VNI left in the VNI pool 20-21")
	if diff := cmp.Diff(before, e.state(), protocmp.Transform()); diff != "" {
		t.Errorf("state changed (-before +after):\n%s", diff)
	}
	// Deleting a network frees its VNI for the next one.
	if _, err := e.op.DeleteNetwork(ctx(t), &apiv1.DeleteNetworkRequest{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if got := e.createNetwork("c", "10.0.2.0/24").GetVni(); got != 20 {
		t.Errorf("VNI after delete = %d, want 20", got)
	}
}

func TestInvalidVNIRange(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := server.New(st, server.WithVNIRange(ipam.VNIRange{First: 200, Last: 300})); err == nil {
		t.Error("server.New accepted a VNI range overlapping tables 253-255")
	}
}

func TestAddressAllocation(t *testing.T) {
	e := newEnv(t)
	e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1", "swp2", "swp3", "swp4", "swp5")
	e.createNetwork("v4", "192.168.0.0/29")
	e.createNetwork("v6", "2001:db8:1::/64")
	for i, m := range []string{"m1", "m2", "m3", "m4", "m5"} {
		e.cable(m, conns("leaf1", "swp"+itoa(uint32(i+1)))...)
	}
	ip := func(m *apiv1.Machine) string { return m.GetAllocation().GetIp() }
	got := []string{ip(e.allocate("m1", "v4")), ip(e.allocate("m2", "v4")), ip(e.allocate("m3", "v4"))}
	if diff := cmp.Diff([]string{"192.168.0.1", "192.168.0.2", "192.168.0.3"}, got); diff != "" {
		t.Errorf("first three IPs (-want +got):\n%s", diff)
	}
	e.free("m2")
	if got := ip(e.allocate("m4", "v4")); got != "192.168.0.2" {
		t.Errorf("IP after freeing .2 = %s, want the lowest free 192.168.0.2", got)
	}
	if got := ip(e.allocate("m5", "v6")); got != "2001:db8:1::1" {
		t.Errorf("IPv6 IP = %s, want 2001:db8:1::1", got)
	}
	nets, err := e.op.ListNetworks(ctx(t), &apiv1.ListNetworksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &apiv1.ListNetworksResponse{Networks: []*apiv1.Network{
		{Name: "v4", Prefix: "192.168.0.0/29", Vni: 10000, Allocated: 3, Capacity: 6},
		{Name: "v6", Prefix: "2001:db8:1::/64", Vni: 10001, Allocated: 1, Capacity: math.MaxUint64},
	}}
	if diff := cmp.Diff(want, nets, protocmp.Transform()); diff != "" {
		t.Errorf("ListNetworks (-want +got):\n%s", diff)
	}
}

// TestAllocateFreeWatch: allocation pushes a snapshot with the VRF and port
// to the leaf the machine is cabled to, free pushes one without it, and the
// other leaf gets nothing.
func TestAllocateFreeWatch(t *testing.T) {
	e := newEnv(t)
	v1 := e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1", "swp2")
	v2 := e.register("leaf2", apiv1.Role_ROLE_LEAF, "swp1", "swp2")
	w1 := e.watch("leaf1")
	w2 := e.watch("leaf2")
	want := leafConfig("leaf1", v1, "10.255.0.1")
	if diff := cmp.Diff(want, w1.next(), protocmp.Transform()); diff != "" {
		t.Errorf("leaf1 first snapshot (-want +got):\n%s", diff)
	}
	want = leafConfig("leaf2", v2, "10.255.0.2")
	if diff := cmp.Diff(want, w2.next(), protocmp.Transform()); diff != "" {
		t.Errorf("leaf2 first snapshot (-want +got):\n%s", diff)
	}

	n := e.createNetwork("tenant-a", "10.0.0.0/24")
	e.cable("m1", conns("leaf1", "swp2")...)
	rev := e.allocate("m1", "tenant-a").GetAllocation().GetRevision()
	want = leafConfig("leaf1", rev, "10.255.0.1")
	want.Vrfs = []*apiv1.Vrf{withPeers(vrf(n.GetVni(), "tenant-a", "swp2"), machinePeer("swp2", "m1", "10.0.0.1/32"))}
	want.Ports = []*apiv1.PortConfig{{Name: "swp2", Description: "m1", AdminUp: true}}
	if diff := cmp.Diff(want, w1.next(), protocmp.Transform()); diff != "" {
		t.Errorf("leaf1 after allocate (-want +got):\n%s", diff)
	}
	devs := e.devices()
	if got := devs["leaf1"].GetDesiredVersion(); got != rev {
		t.Errorf("leaf1 desired version = %d, want %d", got, rev)
	}
	if got := devs["leaf2"].GetDesiredVersion(); got != v2 {
		t.Errorf("leaf2 desired version = %d, want unchanged %d", got, v2)
	}

	e.free("m1")
	got := w1.next()
	want = leafConfig("leaf1", got.GetVersion(), "10.255.0.1")
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("leaf1 after free (-want +got):\n%s", diff)
	}
	if got.GetVersion() <= rev {
		t.Errorf("leaf1 version after free = %d, want > %d", got.GetVersion(), rev)
	}
	if c := e.convergence("m1"); c.GetRevision() != got.GetVersion() {
		t.Errorf("machine revision after free = %d, want the new config version %d", c.GetRevision(), got.GetVersion())
	}

	// leaf2 received nothing in between: its next snapshot is the one for
	// its own first change.
	e.cable("m2", conns("leaf2", "swp1")...)
	rev2 := e.allocate("m2", "tenant-a").GetAllocation().GetRevision()
	want = leafConfig("leaf2", rev2, "10.255.0.2")
	want.Vrfs = []*apiv1.Vrf{withPeers(vrf(n.GetVni(), "tenant-a", "swp1"), machinePeer("swp1", "m2", "10.0.0.1/32"))}
	want.Ports = []*apiv1.PortConfig{{Name: "swp1", Description: "m2", AdminUp: true}}
	if diff := cmp.Diff(want, w2.next(), protocmp.Transform()); diff != "" {
		t.Errorf("leaf2 next snapshot (-want +got):\n%s", diff)
	}
}

func TestWatchKnownVersionStillGetsSnapshot(t *testing.T) {
	e := newEnv(t)
	v := e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1")
	s, err := e.dev.WatchConfig(ctx(t), &apiv1.WatchConfigRequest{Hostname: "leaf1", KnownVersion: v})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got.GetVersion() != v {
		t.Errorf("first snapshot version = %d, want %d", got.GetVersion(), v)
	}
}

func TestRegisterIsIdempotent(t *testing.T) {
	e := newEnv(t)
	e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1", "swp2")
	e.createNetwork("tenant-a", "10.0.0.0/24")
	e.cable("m1", conns("leaf1", "swp1")...)
	rev := e.allocate("m1", "tenant-a").GetAllocation().GetRevision()
	e.report("leaf1", rev)

	// Same again, with one more port: config unchanged.
	resp, err := e.dev.Register(ctx(t), &apiv1.RegisterRequest{
		Hostname: "leaf1", Role: apiv1.Role_ROLE_LEAF, ChassisMac: "aa:bb:cc:00:00:01", Ports: ports("swp3", "swp1", "swp2"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDesiredVersion() != rev {
		t.Errorf("desired version after re-register = %d, want unchanged %d", resp.GetDesiredVersion(), rev)
	}
	d := e.devices()["leaf1"]
	want := &apiv1.Device{
		Hostname: "leaf1", Role: apiv1.Role_ROLE_LEAF, ChassisMac: "aa:bb:cc:00:00:01",
		Ports:          ports("swp1", "swp2", "swp3"),
		DesiredVersion: rev, AppliedVersion: rev, Loopback: "10.255.0.1/32", Asn: 4210000001,
	}
	if diff := cmp.Diff(want, d, protocmp.Transform(), protocmp.IgnoreFields(&apiv1.Device{}, "last_seen")); diff != "" {
		t.Errorf("device after re-register (-want +got):\n%s", diff)
	}
	if !d.GetLastSeen().AsTime().Equal(fixedNow) {
		t.Errorf("last_seen = %v, want %v", d.GetLastSeen().AsTime(), fixedNow)
	}
	ms, err := e.op.ListMachines(ctx(t), &apiv1.ListMachinesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := ms.GetMachines()[0].GetAllocation().GetNetwork(); got != "tenant-a" {
		t.Errorf("allocation after re-register: network %q, want tenant-a", got)
	}

	// Even a port the machine is cabled to vanishing keeps the allocation
	// in the config.
	if v := e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp2"); v != rev {
		t.Errorf("desired version after port loss = %d, want unchanged %d", v, rev)
	}
	// A new chassis MAC is a new router MAC: the config changes.
	resp, err = e.dev.Register(ctx(t), &apiv1.RegisterRequest{
		Hostname: "leaf1", Role: apiv1.Role_ROLE_LEAF, ChassisMac: "aa:bb:cc:00:00:02", Ports: ports("swp2"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if v := resp.GetDesiredVersion(); v <= rev {
		t.Errorf("desired version after chassis MAC change = %d, want > %d", v, rev)
	}
	// A role change changes the config.
	if v := e.register("leaf1", apiv1.Role_ROLE_SPINE, "swp1"); v <= resp.GetDesiredVersion() {
		t.Errorf("desired version after role change = %d, want > %d", v, resp.GetDesiredVersion())
	}
}

func TestConvergence(t *testing.T) {
	e := newEnv(t)
	e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1")
	e.register("leaf2", apiv1.Role_ROLE_LEAF, "swp1")
	e.createNetwork("tenant-a", "10.0.0.0/24")
	e.cable("m1", conns("leaf2", "swp1", "leaf1", "swp1")...)
	rev := e.allocate("m1", "tenant-a").GetAllocation().GetRevision()

	want := &apiv1.Convergence{Machine: "m1", Revision: rev, Devices: []*apiv1.DeviceConvergence{
		{Hostname: "leaf1", RequiredVersion: rev},
		{Hostname: "leaf2", RequiredVersion: rev},
	}}
	if diff := cmp.Diff(want, e.convergence("m1"), protocmp.Transform()); diff != "" {
		t.Errorf("before any report (-want +got):\n%s", diff)
	}

	stepErr := &apiv1.StepError{Step: "fabric: enslave swp1 to vrf10000", Message: "no such device"}
	e.report("leaf1", rev)
	e.report("leaf2", rev, stepErr)
	want = &apiv1.Convergence{Machine: "m1", Revision: rev, Devices: []*apiv1.DeviceConvergence{
		{Hostname: "leaf1", RequiredVersion: rev, AppliedVersion: rev, Converged: true},
		{Hostname: "leaf2", RequiredVersion: rev, AppliedVersion: rev, Errors: []*apiv1.StepError{stepErr}},
	}}
	if diff := cmp.Diff(want, e.convergence("m1"), protocmp.Transform()); diff != "" {
		t.Errorf("one converged, one with errors (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*apiv1.StepError{stepErr}, e.devices()["leaf2"].GetErrors(), protocmp.Transform()); diff != "" {
		t.Errorf("ListDevices errors of leaf2 (-want +got):\n%s", diff)
	}

	e.report("leaf2", rev)
	want = &apiv1.Convergence{Machine: "m1", Revision: rev, Converged: true, Devices: []*apiv1.DeviceConvergence{
		{Hostname: "leaf1", RequiredVersion: rev, AppliedVersion: rev, Converged: true},
		{Hostname: "leaf2", RequiredVersion: rev, AppliedVersion: rev, Converged: true},
	}}
	if diff := cmp.Diff(want, e.convergence("m1"), protocmp.Transform()); diff != "" {
		t.Errorf("after both reports (-want +got):\n%s", diff)
	}

	// Free is a new change: not converged until the devices apply it.
	e.free("m1")
	c := e.convergence("m1")
	if c.GetConverged() || c.GetRevision() <= rev {
		t.Errorf("after free: converged=%v revision=%d, want false and > %d", c.GetConverged(), c.GetRevision(), rev)
	}
	free := c.GetRevision()
	e.report("leaf1", free)
	e.report("leaf2", free)
	if c := e.convergence("m1"); !c.GetConverged() {
		t.Errorf("after reporting the free revision: not converged: %v", c)
	}
}

func TestListDevicesConnected(t *testing.T) {
	e := newEnv(t)
	e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1")
	if e.devices()["leaf1"].GetConnected() {
		t.Error("connected before any watch")
	}
	w := e.watch("leaf1")
	w.next()
	if !e.devices()["leaf1"].GetConnected() {
		t.Error("not connected while watching")
	}
	w.cancel()
	deadline := time.Now().Add(10 * time.Second)
	for e.devices()["leaf1"].GetConnected() {
		if time.Now().After(deadline) {
			t.Fatal("still connected 10s after the watch was cancelled")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRestartKeepsState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "controller.db")
	e := start(t, path)
	e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1", "swp2")
	e.register("leaf2", apiv1.Role_ROLE_LEAF, "swp1")
	e.createNetwork("tenant-a", "10.0.0.0/24")
	e.createNetwork("tenant-b", "10.1.0.0/24")
	e.cable("m1", conns("leaf1", "swp1")...)
	e.cable("m2", conns("leaf1", "swp2", "leaf2", "swp1")...)
	e.allocate("m1", "tenant-a")
	rev := e.allocate("m2", "tenant-b").GetAllocation().GetRevision()
	e.report("leaf1", rev)
	before := e.state()
	e.stop()

	e = start(t, path)
	if diff := cmp.Diff(before, e.state(), protocmp.Transform()); diff != "" {
		t.Errorf("state after restart (-before +after):\n%s", diff)
	}
	got := e.watch("leaf1").next()
	want := leafConfig("leaf1", rev, "10.255.0.1")
	want.Vrfs = []*apiv1.Vrf{
		withPeers(vrf(10000, "tenant-a", "swp1"), machinePeer("swp1", "m1", "10.0.0.1/32")),
		withPeers(vrf(10001, "tenant-b", "swp2"), machinePeer("swp2", "m2", "10.1.0.1/32")),
	}
	want.Ports = []*apiv1.PortConfig{{Name: "swp1", Description: "m1", AdminUp: true}, {Name: "swp2", Description: "m2", AdminUp: true}}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("leaf1 snapshot after restart (-want +got):\n%s", diff)
	}
	if c := e.convergence("m1"); !c.GetConverged() {
		t.Errorf("m1 not converged after restart: %v", c)
	}
	// Versions keep growing across the restart.
	if next := e.free("m1"); next.GetAllocation() != nil {
		t.Fatalf("free returned an allocation: %v", next)
	}
	if v := e.devices()["leaf1"].GetDesiredVersion(); v != rev+1 {
		t.Errorf("leaf1 version after restart and free = %d, want %d", v, rev+1)
	}
}

// TestManyWatchers: many watchers of one device all reach the latest
// version, with strictly increasing versions, while another watcher of the
// same device does not read at all until the end.
func TestManyWatchers(t *testing.T) {
	e := newEnv(t)
	e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1")
	e.createNetwork("tenant-a", "10.0.0.0/24")
	e.cable("m1", conns("leaf1", "swp1")...)

	blocked := e.watch("leaf1")
	const watchers, rounds = 10, 20
	type progress struct {
		mu   sync.Mutex
		last uint64
		err  error
	}
	prog := make([]*progress, watchers)
	for i := range watchers {
		w := e.watch("leaf1")
		p := &progress{}
		prog[i] = p
		go func() {
			for {
				c, err := w.stream.Recv()
				p.mu.Lock()
				if err != nil {
					p.mu.Unlock()
					return // stream cancelled at cleanup
				}
				if c.GetVersion() <= p.last && p.err == nil {
					p.err = fmt.Errorf("version went from %d to %d", p.last, c.GetVersion())
				}
				p.last = c.GetVersion()
				p.mu.Unlock()
			}
		}()
	}
	for range rounds {
		e.allocate("m1", "tenant-a")
		e.free("m1")
	}
	final := e.devices()["leaf1"].GetDesiredVersion()

	deadline := time.Now().Add(10 * time.Second)
	for i, p := range prog {
		for {
			p.mu.Lock()
			last, err := p.last, p.err
			p.mu.Unlock()
			if err != nil {
				t.Errorf("watcher %d: %v", i, err)
			}
			if last == final || err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("watcher %d at version %d, want %d", i, last, final)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// The watcher that did not read gets the latest version too (possibly
	// after older ones already in flight).
	for {
		c := blocked.next()
		if c.GetVersion() == final {
			break
		}
		if c.GetVersion() > final {
			t.Fatalf("blocked watcher got version %d beyond %d", c.GetVersion(), final)
		}
	}
}

func TestShutdownEndsWatch(t *testing.T) {
	e := newEnv(t)
	e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1")
	w := e.watch("leaf1")
	w.next()
	errc := make(chan error, 1)
	go func() {
		_, err := w.stream.Recv()
		errc <- err
	}()
	e.stop()
	select {
	case err := <-errc:
		if code := status.Code(err); code != codes.Unavailable {
			t.Errorf("Recv after shutdown: %v, want Unavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end on shutdown")
	}
}

// TestDriftReport: the agent's drift counters land on the device as
// information, without making it look unconverged.
func TestDriftReport(t *testing.T) {
	e := newEnv(t)
	v := e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1")
	drift := &apiv1.Drift{Repairs: 2, UnmanagedChanges: 1, LastUnmanaged: "link veth9 added"}
	if _, err := e.dev.ReportStatus(ctx(t), &apiv1.ReportStatusRequest{Hostname: "leaf1", AppliedVersion: v, Drift: drift}); err != nil {
		t.Fatal(err)
	}
	d := e.devices()["leaf1"]
	if diff := cmp.Diff(drift, d.GetDrift(), protocmp.Transform()); diff != "" {
		t.Errorf("drift (-want +got):\n%s", diff)
	}
	if len(d.GetErrors()) != 0 || d.GetAppliedVersion() != v {
		t.Errorf("drift changed convergence: errors %v, applied %d", d.GetErrors(), d.GetAppliedVersion())
	}
}
