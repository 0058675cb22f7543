package scenario

// Several controller replicas on an etcd cluster
// (containerlab/mini-lab-etcd.clab.yml, `LAB_STORE=etcd make lab`).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/integration/lab"
)

// failoverTimeout bounds each wait of the failover demo: an agent's move
// to another replica (its backoff, a TLS handshake and a registration under
// emulation), an etcd leader election, a replica's restart.
const failoverTimeout = 2 * time.Minute

// etcdClientPort is where the lab's etcd members serve clients.
const etcdClientPort = "2379"

// ControllerNodes returns the nodes of topo that run a controller replica:
// the node called ControllerNode and every node whose cmd runs
// fabric-controller, in topology order.
func ControllerNodes(topo *lab.Topology) []string {
	var out []string
	for _, n := range topo.Nodes {
		if n.Name == ControllerNode || cmdProgram(n.Cmd) == "fabric-controller" {
			out = append(out, n.Name)
		}
	}
	return out
}

// EtcdNodes returns the nodes of topo whose cmd runs an etcd server.
func EtcdNodes(topo *lab.Topology) []string {
	var out []string
	for _, n := range topo.Nodes {
		if cmdProgram(n.Cmd) == "etcd" {
			out = append(out, n.Name)
		}
	}
	return out
}

// cmdProgram is the base name of a node cmd's program ("" for none).
func cmdProgram(cmd string) string {
	f := strings.Fields(cmd)
	if len(f) == 0 {
		return ""
	}
	return path.Base(f[0])
}

// MergeDevices merges the device lists several replicas returned. The
// replicas read one store, so they agree on everything except Connected,
// which each replica reports for its own watch streams only: in the merged
// list a device is connected when any replica holds its stream. Devices
// keep the order of their first appearance; the inputs are not modified.
func MergeDevices(lists ...[]*apiv1.Device) []*apiv1.Device {
	var out []*apiv1.Device
	index := map[string]int{}
	for _, l := range lists {
		for _, d := range l {
			i, seen := index[d.GetHostname()]
			if !seen {
				index[d.GetHostname()] = len(out)
				out = append(out, proto.Clone(d).(*apiv1.Device))
				continue
			}
			if d.GetConnected() {
				out[i].Connected = true
			}
		}
	}
	return out
}

// Devices lists the devices as the controller sees them. With several
// replicas it asks every replica that answers (the one API talks to first)
// and merges the lists (MergeDevices): an agent holds its watch stream on
// one replica only.
func (m *MiniLab) Devices(ctx context.Context) ([]*apiv1.Device, error) {
	if len(m.Controllers) <= 1 {
		resp, err := m.API.ListDevices(ctx, &apiv1.ListDevicesRequest{})
		return resp.GetDevices(), err
	}
	var lists [][]*apiv1.Device
	var errs []error
	order := append([]string{m.controller}, slices.DeleteFunc(slices.Clone(m.Controllers), func(n string) bool { return n == m.controller })...)
	for _, node := range order {
		resp, err := m.apis[node].ListDevices(ctx, &apiv1.ListDevicesRequest{})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", node, err))
			continue
		}
		lists = append(lists, resp.GetDevices())
	}
	if len(lists) == 0 {
		return nil, fmt.Errorf("no controller replica answers: %w", errors.Join(errs...))
	}
	return MergeDevices(lists...), nil
}

// ConnectedReplicas returns the replicas that report device connected,
// i.e. hold its watch stream (replicas that do not answer are left out).
func (m *MiniLab) ConnectedReplicas(ctx context.Context, device string) []string {
	var out []string
	for _, node := range m.Controllers {
		d, err := m.apis[node].GetDevice(ctx, &apiv1.GetDeviceRequest{Hostname: device})
		if err == nil && d.GetConnected() {
			out = append(out, node)
		}
	}
	return out
}

// WaitConnectedReplica waits until exactly one replica other than except
// holds device's watch stream and returns it.
func (m *MiniLab) WaitConnectedReplica(ctx context.Context, device, except string, timeout time.Duration) (string, error) {
	var node string
	err := poll(ctx, timeout, func(ctx context.Context) (bool, string, error) {
		got := slices.DeleteFunc(m.ConnectedReplicas(ctx, device), func(n string) bool { return n == except })
		if len(got) != 1 {
			return false, fmt.Sprintf("%s is connected to %v", device, got), nil
		}
		node = got[0]
		return true, "", nil
	})
	return node, err
}

// EtcdIsLeader tells, from the JSON body of an etcd member's
// /v3/maintenance/status (etcd's gRPC gateway), whether that member is the
// raft leader.
func EtcdIsLeader(body []byte) (bool, error) {
	var st struct {
		Header struct {
			MemberID string `json:"member_id"`
		} `json:"header"`
		Leader string `json:"leader"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return false, fmt.Errorf("decoding etcd status: %w", err)
	}
	if st.Header.MemberID == "" {
		return false, fmt.Errorf("etcd status without a member id: %.200s", body)
	}
	return st.Leader == st.Header.MemberID, nil
}

// etcdStatus asks the etcd member on node for its status over its HTTP
// gateway, from inside the node's namespace.
func (m *MiniLab) etcdStatus(ctx context.Context, node string) ([]byte, error) {
	ns := m.Lab.NetNS(node)
	hc := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return dialIn(ctx, ns, addr) },
	}}
	url := "http://" + net.JoinHostPort(m.Lab.MgmtIP(node).String(), etcdClientPort) + "/v3/maintenance/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte("{}")))
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("etcd status of %s: %w", node, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("etcd status of %s: %w", node, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("etcd status of %s: %s: %.200s", node, resp.Status, body)
	}
	return body, nil
}

// WaitEtcdLeader waits until one of the etcd members on nodes says it is
// the raft leader and returns its node.
func (m *MiniLab) WaitEtcdLeader(ctx context.Context, nodes []string, timeout time.Duration) (string, error) {
	var leader string
	err := poll(ctx, timeout, func(ctx context.Context) (bool, string, error) {
		var why []string
		for _, n := range nodes {
			body, err := m.etcdStatus(ctx, n)
			if err != nil {
				why = append(why, err.Error())
				continue
			}
			ok, err := EtcdIsLeader(body)
			if err != nil {
				why = append(why, fmt.Sprintf("%s: %v", n, err))
				continue
			}
			if ok {
				leader = n
				return true, "", nil
			}
		}
		return false, fmt.Sprintf("no etcd leader among %v: %s", nodes, strings.Join(why, "; ")), nil
	})
	return leader, err
}

// ReplicaFailoverDemo is what `LAB_STORE=etcd make lab` adds after the
// mini-lab demos: it kills (SIGKILL) the controller replica leaf01's agent
// is connected to, checks that the agent moves to another replica and that
// freeing and allocating machine01 through the survivor still reaches
// leaf01's kernel; then it restarts that replica, kills the etcd member
// that is the raft leader, and checks that the controllers keep serving: a
// network created through one replica is read back through the other, and
// an allocation through the restarted replica reaches the kernel of leaf01,
// whose agent is on the other replica (each replica follows the others'
// commits through an etcd watch). It leaves the lab with one etcd member
// down.
func (m *MiniLab) ReplicaFailoverDemo(ctx context.Context) error {
	const leaf, machine, network = "leaf01", "machine01", "tenant-a"
	members := EtcdNodes(m.Topo)
	if len(m.Controllers) < 2 || len(members) < 3 {
		return fmt.Errorf("the failover demo needs two controller replicas and three etcd members; %s has %v and %v", m.Topo.Name, m.Controllers, members)
	}
	fmt.Fprintf(m.Out, "\n=== failover: controller replicas %v on etcd %v ===\n", m.Controllers, members)
	agents := m.Switches()
	if _, ok := m.Topo.Node("fw01"); ok {
		agents = append(agents, "fw01")
	}
	for _, a := range agents {
		fmt.Fprintf(m.Out, "%s holds its watch stream on %v\n", a, m.ConnectedReplicas(ctx, a))
	}

	// 1. Kill leaf01's replica: the agent moves to another one.
	from, err := m.WaitConnectedReplica(ctx, leaf, "", registerTimeout)
	if err != nil {
		return fmt.Errorf("finding %s's replica: %w", leaf, err)
	}
	survivors := slices.DeleteFunc(slices.Clone(m.Controllers), func(n string) bool { return n == from })
	if m.controller == from {
		m.UseController(survivors[0])
	}
	killed := time.Now()
	if err := m.Lab.KillNode(ctx, from); err != nil {
		return fmt.Errorf("killing %s: %w", from, err)
	}
	fmt.Fprintf(m.Out, "killed %s (SIGKILL), the replica %s's agent was connected to (%s:%s)\n", from, leaf, m.Lab.MgmtIP(from), controllerPort)
	to, err := m.WaitConnectedReplica(ctx, leaf, from, failoverTimeout)
	if err != nil {
		return fmt.Errorf("%s did not move to another replica: %w", leaf, err)
	}
	fmt.Fprintf(m.Out, "ok: %s moved from %s to %s %s after the kill\n", leaf, from, to, time.Since(killed).Round(time.Millisecond))
	if err := m.WaitInSync(ctx, failoverTimeout, agents...); err != nil {
		return fmt.Errorf("after killing %s: %w", from, err)
	}
	fmt.Fprintf(m.Out, "ok: every agent %v is connected to %v and in sync\n", agents, survivors)
	m.UseController(to)
	if err := m.Fabricctl(ctx, "device", "list"); err != nil {
		return err
	}
	if err := m.reallocate(ctx, machine, network); err != nil {
		return fmt.Errorf("after killing %s: %w", from, err)
	}

	// 2. Bring the replica back, then kill the etcd leader.
	if err := m.Lab.StartNode(ctx, from); err != nil {
		return fmt.Errorf("restarting %s: %w", from, err)
	}
	restarted := time.Now()
	if err := poll(ctx, failoverTimeout, func(ctx context.Context) (bool, string, error) {
		_, err := m.apis[from].ListDevices(ctx, &apiv1.ListDevicesRequest{})
		if err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	}); err != nil {
		return fmt.Errorf("%s does not serve after its restart: %w", from, err)
	}
	fmt.Fprintf(m.Out, "ok: %s restarted and serves again after %s\n", from, time.Since(restarted).Round(time.Millisecond))
	leader, err := m.WaitEtcdLeader(ctx, members, failoverTimeout)
	if err != nil {
		return err
	}
	killed = time.Now()
	if err := m.Lab.KillNode(ctx, leader); err != nil {
		return fmt.Errorf("killing etcd member %s: %w", leader, err)
	}
	fmt.Fprintf(m.Out, "killed etcd member %s (SIGKILL), the raft leader; %d of %d members left\n", leader, len(members)-1, len(members))

	// 3. The controllers keep serving: a write through one replica (retried
	// while etcd elects a new leader), read back through the other.
	const check, checkPrefix = "etcd-loss-check", "10.0.250.0/24"
	var created *apiv1.Network
	if err := poll(ctx, failoverTimeout, func(ctx context.Context) (bool, string, error) {
		n, err := m.apis[from].CreateNetwork(ctx, &apiv1.CreateNetworkRequest{Name: check, Prefix: checkPrefix})
		switch status.Code(err) {
		case codes.OK:
			created = n
			return true, "", nil
		case codes.AlreadyExists: // an earlier attempt committed, its answer was lost
			return true, "", nil
		case codes.InvalidArgument, codes.FailedPrecondition:
			return false, "", err
		}
		return false, err.Error(), nil
	}); err != nil {
		return fmt.Errorf("creating network %s through %s with etcd member %s down: %w", check, from, leader, err)
	}
	fmt.Fprintf(m.Out, "ok: network %s created through %s %s after etcd member %s was killed\n", check, from, time.Since(killed).Round(time.Millisecond), leader)
	got, err := m.apis[to].GetNetwork(ctx, &apiv1.GetNetworkRequest{Name: check})
	if err != nil {
		return fmt.Errorf("reading network %s through %s: %w", check, to, err)
	}
	if got.GetPrefix() != checkPrefix || (created != nil && got.GetVni() != created.GetVni()) {
		return fmt.Errorf("%s reads network %s as prefix %s vni %d; %s created prefix %s vni %d", to, check, got.GetPrefix(), got.GetVni(), from, checkPrefix, created.GetVni())
	}
	fmt.Fprintf(m.Out, "ok: %s reads it back: prefix %s, vni %d\n", to, got.GetPrefix(), got.GetVni())
	if _, err := m.apis[to].DeleteNetwork(ctx, &apiv1.DeleteNetworkRequest{Name: check}); err != nil {
		return fmt.Errorf("deleting network %s through %s: %w", check, to, err)
	}
	fmt.Fprintf(m.Out, "ok: network %s deleted through %s\n", check, to)
	if c := m.ConnectedReplicas(ctx, leaf); !slices.Equal(c, []string{to}) {
		fmt.Fprintf(m.Out, "note: %s is now connected to %v\n", leaf, c)
	}
	m.UseController(from)
	if err := m.reallocate(ctx, machine, network); err != nil {
		return fmt.Errorf("with etcd member %s down: %w", leader, err)
	}
	return m.Fabricctl(ctx, "machine", "convergence", machine)
}

// reallocate frees machine and allocates it into network again through the
// replica API talks to, and checks each step in the kernels of the
// switches it is cabled to.
func (m *MiniLab) reallocate(ctx context.Context, machine, network string) error {
	vni, err := m.NetworkVNI(ctx, network)
	if err != nil {
		return err
	}
	lat, err := m.FreeAndMeasure(ctx, machine)
	if err != nil {
		return err
	}
	for _, sw := range slices.Sorted(maps.Keys(lat)) {
		fmt.Fprintf(m.Out, "free of %s through %s reached the kernel of %s after %s\n", machine, m.controller, sw, lat[sw].Round(time.Millisecond))
	}
	if err := m.CheckPorts(Cabling[machine], "", 0); err != nil {
		return err
	}
	lat, err = m.AllocateAndMeasure(ctx, machine, network)
	if err != nil {
		return err
	}
	for _, sw := range slices.Sorted(maps.Keys(lat)) {
		fmt.Fprintf(m.Out, "allocation of %s through %s reached the kernel of %s after %s\n", machine, m.controller, sw, lat[sw].Round(time.Millisecond))
	}
	if err := m.WaitConverged(ctx, convergeTimeout, machine); err != nil {
		return err
	}
	return m.CheckPorts(Cabling[machine], fmt.Sprintf("vrf%d", vni), vni)
}
