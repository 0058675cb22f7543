package scenario

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/integration/lab"
)

func loadTopo(t *testing.T, name string) *lab.Topology {
	t.Helper()
	topo, err := lab.Load(filepath.Join("..", "..", "containerlab", name))
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestControllerAndEtcdNodes(t *testing.T) {
	for _, tc := range []struct {
		file            string
		controllers, ed []string
	}{
		{"mini-lab.clab.yml", []string{"controller"}, nil},
		{"mini-lab-etcd.clab.yml", []string{"controller", "controller2"}, []string{"etcd1", "etcd2", "etcd3"}},
	} {
		topo := loadTopo(t, tc.file)
		if diff := cmp.Diff(tc.controllers, ControllerNodes(topo)); diff != "" {
			t.Errorf("%s: ControllerNodes (-want +got):\n%s", tc.file, diff)
		}
		if diff := cmp.Diff(tc.ed, EtcdNodes(topo)); diff != "" {
			t.Errorf("%s: EtcdNodes (-want +got):\n%s", tc.file, diff)
		}
	}
}

func TestCmdProgram(t *testing.T) {
	for cmd, want := range map[string]string{
		"":                                     "",
		"etcd --name etcd1":                    "etcd",
		"/usr/bin/etcd":                        "etcd",
		"/opt/fabric/bin/fabric-controller -x": "fabric-controller",
		"sh /opt/fabric/lab/machine.sh m1":     "sh",
		"  fabric-agent  --role leaf":          "fabric-agent",
	} {
		if got := cmdProgram(cmd); got != want {
			t.Errorf("cmdProgram(%q) = %q, want %q", cmd, got, want)
		}
	}
}

// TestCertBundle checks that every controller replica's name and address is
// in the one controller certificate, and that replicas get no device
// certificate.
func TestCertBundle(t *testing.T) {
	for _, tc := range []struct {
		file  string
		hosts []string
	}{
		{"mini-lab.clab.yml", []string{"controller", "localhost", "127.0.0.1", "172.20.20.2"}},
		{"mini-lab-etcd.clab.yml", []string{"controller", "localhost", "127.0.0.1", "172.20.20.2", "controller2", "172.20.20.3"}},
	} {
		topo := loadTopo(t, tc.file)
		b := CertBundle(topo)
		if diff := cmp.Diff(tc.hosts, b.ControllerHosts); diff != "" {
			t.Errorf("%s: controller hosts (-want +got):\n%s", tc.file, diff)
		}
		for _, sw := range []string{"leaf01", "leaf02", "spine01", "spine02", "fw01"} {
			if !slices.Contains(b.Devices, sw) {
				t.Errorf("%s: no device certificate for %s: %v", tc.file, sw, b.Devices)
			}
		}
		for _, c := range ControllerNodes(topo) {
			if slices.Contains(b.Devices, c) {
				t.Errorf("%s: controller %s got a device certificate", tc.file, c)
			}
		}
	}
}

// TestEtcdTopologyAgents checks that every agent of the etcd mini-lab is
// given every controller replica.
func TestEtcdTopologyAgents(t *testing.T) {
	topo := loadTopo(t, "mini-lab-etcd.clab.yml")
	var addrs []string
	for _, c := range ControllerNodes(topo) {
		n, _ := topo.Node(c)
		addrs = append(addrs, n.MgmtIPv4.String()+":"+controllerPort)
	}
	agents := 0
	for _, n := range topo.Nodes {
		if cmdProgram(n.Cmd) != "fabric-agent" {
			continue
		}
		agents++
		var list []string
		words := strings.Fields(n.Cmd)
		for i, w := range words {
			if w == "--controller" && i+1 < len(words) {
				list = strings.Split(words[i+1], ",")
			}
		}
		got := slices.Sorted(slices.Values(list))
		want := slices.Sorted(slices.Values(addrs))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: --controller (-want +got):\n%s", n.Name, diff)
		}
	}
	if agents != 5 {
		t.Errorf("%d agents, want 5", agents)
	}
}

func TestMergeDevices(t *testing.T) {
	dev := func(name string, connected bool, applied uint64) *apiv1.Device {
		return &apiv1.Device{Hostname: name, Connected: connected, AppliedVersion: applied}
	}
	a := []*apiv1.Device{dev("leaf01", true, 5), dev("leaf02", false, 5), dev("spine01", false, 3)}
	b := []*apiv1.Device{dev("leaf01", false, 5), dev("leaf02", true, 6), dev("fw01", true, 1)}
	got := MergeDevices(a, b)
	want := []*apiv1.Device{dev("leaf01", true, 5), dev("leaf02", true, 5), dev("spine01", false, 3), dev("fw01", true, 1)}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("MergeDevices (-want +got):\n%s", diff)
	}
	if a[1].GetConnected() || b[0].GetConnected() {
		t.Error("MergeDevices modified its input")
	}
	if got := MergeDevices(); len(got) != 0 {
		t.Errorf("MergeDevices() = %v, want none", got)
	}
}

func TestEtcdIsLeader(t *testing.T) {
	// As etcd 3.4's gateway answers POST /v3/maintenance/status.
	const leader = `{"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437","revision":"1","raft_term":"2"},"version":"3.4.23","dbSize":"20480","leader":"10276657743932975437","raftIndex":"4","raftTerm":"2","raftAppliedIndex":"4","dbSizeInUse":"16384"}`
	const follower = `{"header":{"cluster_id":"1","member_id":"22","revision":"1","raft_term":"2"},"leader":"10276657743932975437"}`
	const noLeader = `{"header":{"cluster_id":"1","member_id":"22"}}`
	for _, tc := range []struct {
		body    string
		want    bool
		wantErr bool
	}{
		{leader, true, false},
		{follower, false, false},
		{noLeader, false, false},
		{`{"leader":"5"}`, false, true},
		{`not json`, false, true},
	} {
		got, err := EtcdIsLeader([]byte(tc.body))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("EtcdIsLeader(%.40s) = %t, %v; want %t, error %t", tc.body, got, err, tc.want, tc.wantErr)
		}
	}
}
