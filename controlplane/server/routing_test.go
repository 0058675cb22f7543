package server_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/controlplane/inventory"
	"github.com/metalfabric/fabric/controlplane/ipam"
	"github.com/metalfabric/fabric/controlplane/server"
)

// TestAllocateAnnounceAPI: announceable prefixes go in as CIDR strings,
// come back sorted on the allocation, and are the machine peer's
// allowance after the machine's address.
func TestAllocateAnnounceAPI(t *testing.T) {
	e := newEnv(t)
	v := e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1")
	w := e.watch("leaf1")
	if got := w.next().GetVersion(); got != v {
		t.Fatalf("first snapshot version %d, want %d", got, v)
	}
	n := e.createNetwork("tenant-a", "10.0.0.0/24")
	e.cable("exit1", conns("leaf1", "swp1")...)
	m, err := e.op.AllocateMachine(ctx(t), &apiv1.AllocateMachineRequest{Machine: "exit1", Network: "tenant-a",
		Announce: []string{"192.168.0.0/16", "0.0.0.0/0"}})
	if err != nil {
		t.Fatal(err)
	}
	wantAlloc := &apiv1.Allocation{Network: "tenant-a", Ip: "10.0.0.1", Revision: m.GetAllocation().GetRevision(),
		Announce: []string{"0.0.0.0/0", "192.168.0.0/16"}}
	if diff := cmp.Diff(wantAlloc, m.GetAllocation(), protocmp.Transform()); diff != "" {
		t.Errorf("allocation (-want +got):\n%s", diff)
	}
	got, err := e.op.GetMachine(ctx(t), &apiv1.GetMachineRequest{Name: "exit1"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantAlloc, got.GetAllocation(), protocmp.Transform()); diff != "" {
		t.Errorf("GetMachine allocation (-want +got):\n%s", diff)
	}
	want := leafConfig("leaf1", wantAlloc.GetRevision(), "10.255.0.1")
	want.Vrfs = []*apiv1.Vrf{withPeers(vrf(n.GetVni(), "tenant-a", "swp1"), machinePeer("swp1", "exit1", "10.0.0.1/32", "0.0.0.0/0", "192.168.0.0/16"))}
	want.Ports = []*apiv1.PortConfig{{Name: "swp1", Description: "exit1", AdminUp: true}}
	if diff := cmp.Diff(want, w.next(), protocmp.Transform()); diff != "" {
		t.Errorf("leaf1 after allocate (-want +got):\n%s", diff)
	}
}

// TestNumberedUnderlayAPI: with server.WithUnderlay numbered, the pushed
// configs carry both ends' addresses of the link's /31 (the leaf dials and
// has the lower one).
func TestNumberedUnderlayAPI(t *testing.T) {
	e := newEnv(t, server.WithUnderlay(inventory.UnderlayNumbered, netip.MustParsePrefix("10.254.0.0/16")))
	e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp51")
	e.register("spine1", apiv1.Role_ROLE_SPINE, "swp1")
	devs := e.devices()
	leafASN, spineASN := devs["leaf1"].GetAsn(), devs["spine1"].GetAsn()
	for host, nbr := range map[string]*apiv1.Neighbor{
		"leaf1":  {Port: "swp51", ChassisId: "c-spine1", PortId: "swp1", SystemName: "spine1"},
		"spine1": {Port: "swp1", ChassisId: "c-leaf1", PortId: "swp51", SystemName: "leaf1"},
	} {
		_, err := e.dev.ReportNeighbors(ctx(t), &apiv1.ReportNeighborsRequest{Hostname: host, Neighbors: []*apiv1.Neighbor{nbr}})
		if err != nil {
			t.Fatalf("ReportNeighbors(%s): %v", host, err)
		}
	}
	for host, want := range map[string][]*apiv1.UnderlayPeer{
		"leaf1":  {{Port: "swp51", Peer: "spine1", PeerAsn: spineASN, Address: "10.254.0.0/31", PeerAddress: "10.254.0.1"}},
		"spine1": {{Port: "swp1", Peer: "leaf1", PeerAsn: leafASN, Passive: true, Address: "10.254.0.1/31", PeerAddress: "10.254.0.0"}},
	} {
		if diff := cmp.Diff(want, e.watch(host).next().GetUnderlay(), protocmp.Transform()); diff != "" {
			t.Errorf("%s underlay (-want +got):\n%s", host, diff)
		}
	}
}

// TestUnderlayAPI: a leaf and a spine reporting each other as LLDP
// neighbours get underlay sessions in their pushed configs.
func TestUnderlayAPI(t *testing.T) {
	e := newEnv(t)
	e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1", "swp51")
	e.register("spine1", apiv1.Role_ROLE_SPINE, "swp1")
	devs := e.devices()
	leafASN, spineASN := devs["leaf1"].GetAsn(), devs["spine1"].GetAsn()
	if leafASN != ipam.DefaultASNRange.First || spineASN != ipam.DefaultASNRange.First+1 {
		t.Fatalf("ASNs leaf1 %d, spine1 %d: want the first two of the pool", leafASN, spineASN)
	}
	for host, nbr := range map[string]*apiv1.Neighbor{
		"leaf1":  {Port: "swp51", ChassisId: "c-spine1", SystemName: "spine1"},
		"spine1": {Port: "swp1", ChassisId: "c-leaf1", SystemName: "leaf1"},
	} {
		_, err := e.dev.ReportNeighbors(ctx(t), &apiv1.ReportNeighborsRequest{Hostname: host, Neighbors: []*apiv1.Neighbor{nbr}})
		if err != nil {
			t.Fatalf("ReportNeighbors(%s): %v", host, err)
		}
	}
	for host, want := range map[string][]*apiv1.UnderlayPeer{
		"leaf1":  {{Port: "swp51", Peer: "spine1", PeerAsn: spineASN}},
		"spine1": {{Port: "swp1", Peer: "leaf1", PeerAsn: leafASN, Passive: true}},
	} {
		got := e.watch(host).next()
		if diff := cmp.Diff(want, got.GetUnderlay(), protocmp.Transform()); diff != "" {
			t.Errorf("%s underlay (-want +got):\n%s", host, diff)
		}
		if d := e.devices()[host]; got.GetVersion() != d.GetDesiredVersion() {
			t.Errorf("%s snapshot version %d, desired version %d", host, got.GetVersion(), d.GetDesiredVersion())
		}
	}
}

// TestRoutingReport: the agent's BGP and FIB state round-trips from
// ReportStatus to GetDevice and ListDevices; a report without routing
// keeps the last one.
func TestRoutingReport(t *testing.T) {
	e := newEnv(t)
	v := e.register("leaf1", apiv1.Role_ROLE_LEAF, "swp1", "swp51")
	routing := &apiv1.Routing{
		Sessions: []*apiv1.BgpSession{
			{Peer: "swp51", Description: "spine1", Address: "fe80::1", Asn: 4210000002, State: "established",
				Uptime: durationpb.New(90 * time.Second), Received: 12, Accepted: 12, Installed: 11},
			{Peer: "swp1", Vrf: "vrf10000", Description: "m1", Asn: 4259999999, State: "active", Received: 3, Accepted: 1, Rejected: 2,
				Uptime: durationpb.New(0)},
		},
		RoutesInstalled: 40, InstallFailures: 1, FailedRoutes: []string{"10.9.0.0/16: no such device"},
		EvpnExported: 2, EvpnImported: 5,
	}
	if _, err := e.dev.ReportStatus(ctx(t), &apiv1.ReportStatusRequest{Hostname: "leaf1", AppliedVersion: v, Routing: routing}); err != nil {
		t.Fatal(err)
	}
	d, err := e.op.GetDevice(ctx(t), &apiv1.GetDeviceRequest{Hostname: "leaf1"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(routing, d.GetRouting(), protocmp.Transform()); diff != "" {
		t.Errorf("GetDevice routing (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(routing, e.devices()["leaf1"].GetRouting(), protocmp.Transform()); diff != "" {
		t.Errorf("ListDevices routing (-want +got):\n%s", diff)
	}
	e.report("leaf1", v)
	if diff := cmp.Diff(routing, e.devices()["leaf1"].GetRouting(), protocmp.Transform()); diff != "" {
		t.Errorf("routing after a report without it (-want +got):\n%s", diff)
	}
	// A device that never reported routing has none.
	e.register("leaf2", apiv1.Role_ROLE_LEAF, "swp1")
	if r := e.devices()["leaf2"].GetRouting(); r != nil {
		t.Errorf("leaf2 routing = %v, want none", r)
	}
}
