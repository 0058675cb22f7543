package scenario

import (
	"context"
	"fmt"
	"strings"
	"time"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
)

// Cabling is how the mini-lab's machines are wired
// (containerlab/mini-lab.clab.yml). Nobody tells the controller: it learns
// this from the leaves' LLDP neighbours (the machines run lldpd).
var Cabling = map[string][]*apiv1.Connection{
	"machine01": {{Device: "leaf01", Port: "swp1"}, {Device: "leaf02", Port: "swp1"}},
	"machine02": {{Device: "leaf01", Port: "swp2"}, {Device: "leaf02", Port: "swp2"}},
}

// Timeouts are generous: under TCG emulation the VM runs Go about 20x slower.
const (
	registerTimeout = 90 * time.Second
	convergeTimeout = 60 * time.Second
	// WiringTimeout bounds the wait for the learned wiring: LLDP settle and
	// the neighbours' first frames, a few seconds on a fast machine.
	WiringTimeout = 2 * time.Minute
)

// Demo is what `make lab` runs on a fresh mini-lab: wait for the agents,
// create a tenant network, wait until the controller learned both machines'
// wiring over LLDP, allocate them, show the fabric
// with fabricctl, and check that every machine port sits in the tenant VRF
// in the leaves' kernels. It returns the allocation -> kernel latencies seen.
func (m *MiniLab) Demo(ctx context.Context) ([]time.Duration, error) {
	start := time.Now()
	fmt.Fprintf(m.Out, "waiting for agents %v to register...\n", m.Switches())
	if err := m.WaitRegistered(ctx, registerTimeout, m.Switches()...); err != nil {
		return nil, err
	}
	if err := m.Fabricctl(ctx, "device", "list"); err != nil {
		return nil, err
	}
	if err := m.Fabricctl(ctx, "network", "create", "tenant-a", "--prefix", "10.0.1.0/24"); err != nil {
		return nil, err
	}
	// No `machine cable`: the wiring comes from LLDP.
	fmt.Fprintf(m.Out, "\nwaiting for the controller to learn the machines' wiring over LLDP...\n")
	for _, machine := range []string{"machine01", "machine02"} {
		if err := m.WaitWiring(ctx, WiringTimeout, machine, Cabling[machine]); err != nil {
			return nil, err
		}
		fmt.Fprintf(m.Out, "wiring of %s learned %s after the demo started\n", machine, time.Since(start).Round(time.Millisecond))
	}
	if err := m.Fabricctl(ctx, "machine", "list"); err != nil {
		return nil, err
	}
	var latencies []time.Duration
	for _, machine := range []string{"machine01", "machine02"} {
		lat, err := m.AllocateAndMeasure(ctx, machine, "tenant-a")
		if err != nil {
			return nil, err
		}
		for leaf, d := range lat {
			fmt.Fprintf(m.Out, "allocation of %s reached the kernel of %s after %s\n", machine, leaf, d.Round(time.Millisecond))
			latencies = append(latencies, d)
		}
		if err := m.WaitConverged(ctx, convergeTimeout, machine); err != nil {
			return nil, err
		}
	}
	for _, args := range [][]string{
		{"network", "list"}, {"machine", "list"}, {"device", "list"}, {"machine", "convergence", "machine01"},
	} {
		if err := m.Fabricctl(ctx, args...); err != nil {
			return nil, err
		}
	}
	vni, err := m.NetworkVNI(ctx, "tenant-a")
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(m.Out, "\nchecking the leaves' kernels over netlink:\n")
	for _, machine := range []string{"machine01", "machine02"} {
		if err := m.CheckPorts(Cabling[machine], fmt.Sprintf("vrf%d", vni), vni); err != nil {
			return nil, err
		}
	}
	for _, leaf := range []string{"leaf01", "leaf02"} {
		if err := m.CheckL3VNI(ctx, leaf, vni, fmt.Sprintf("vrf%d", vni)); err != nil {
			return nil, err
		}
	}
	ns := m.Lab.NetNS("leaf01")
	for _, args := range [][]string{
		{"ip", "-n", ns, "-br", "link", "show", "master", fmt.Sprintf("vrf%d", vni)},
		{"ip", "-n", ns, "-d", "link", "show", fmt.Sprintf("vxlan%d", vni)},
		{"bridge", "-n", ns, "vlan", "show"},
		{"ip", "-n", ns, "-br", "addr", "show", "dev", "lo"},
	} {
		out, err := execOut(ctx, args[0], args[1:]...)
		if err != nil {
			out = fmt.Sprintf("(%v)\n", err)
		}
		fmt.Fprintf(m.Out, "\n$ %s\n%s", strings.Join(args, " "), out)
	}
	return latencies, nil
}

// NetworkVNI looks a network's VNI up.
func (m *MiniLab) NetworkVNI(ctx context.Context, name string) (uint32, error) {
	resp, err := m.API.ListNetworks(ctx, &apiv1.ListNetworksRequest{})
	if err != nil {
		return 0, fmt.Errorf("listing networks: %w", err)
	}
	for _, n := range resp.GetNetworks() {
		if n.GetName() == name {
			return n.GetVni(), nil
		}
	}
	return 0, fmt.Errorf("network %s not found", name)
}

// CheckPorts verifies in the kernels that every connection's port is
// enslaved to vrf (vrf == "": has no VRF master) with the given table.
func (m *MiniLab) CheckPorts(conns []*apiv1.Connection, vrf string, table uint32) error {
	for _, c := range conns {
		k, err := m.Kernel(c.GetDevice())
		if err != nil {
			return err
		}
		got, err := k.PortVRF(c.GetPort())
		k.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", c.GetDevice(), err)
		}
		if got.VRF != vrf || (vrf != "" && got.Table != table) {
			return fmt.Errorf("%s:%s is in vrf %q (table %d), want %q (table %d)", c.GetDevice(), c.GetPort(), got.VRF, got.Table, vrf, table)
		}
		if vrf != "" {
			fmt.Fprintf(m.Out, "ok: %s:%s master %s (vrf table %d)\n", c.GetDevice(), c.GetPort(), got.VRF, got.Table)
		} else {
			fmt.Fprintf(m.Out, "ok: %s:%s has no vrf\n", c.GetDevice(), c.GetPort())
		}
	}
	return nil
}

// AllocateAndMeasure allocates machine into network through the API and
// returns, per cabled switch, the time from the API call until that switch's
// kernel reported the machine's port enslaved to a VRF (a netlink event).
func (m *MiniLab) AllocateAndMeasure(ctx context.Context, machine, network string) (map[string]time.Duration, error) {
	return m.changeAndMeasure(ctx, machine, func(ctx context.Context) error {
		_, err := m.API.AllocateMachine(ctx, &apiv1.AllocateMachineRequest{Machine: machine, Network: network})
		return err
	}, func(masterIndex int) bool { return masterIndex != 0 })
}

// FreeAndMeasure frees machine through the API and returns, per cabled
// switch, the time until its port left the VRF.
func (m *MiniLab) FreeAndMeasure(ctx context.Context, machine string) (map[string]time.Duration, error) {
	return m.changeAndMeasure(ctx, machine, func(ctx context.Context) error {
		_, err := m.API.FreeMachine(ctx, &apiv1.FreeMachineRequest{Machine: machine})
		return err
	}, func(masterIndex int) bool { return masterIndex == 0 })
}

func (m *MiniLab) changeAndMeasure(ctx context.Context, machine string, change func(context.Context) error, reached func(masterIndex int) bool) (map[string]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, convergeTimeout)
	defer cancel()
	type event struct {
		dev string
		at  time.Time
	}
	events := make(chan event, len(Cabling[machine]))
	for _, c := range Cabling[machine] {
		k, err := m.Kernel(c.GetDevice())
		if err != nil {
			return nil, err
		}
		defer k.Close()
		updates, err := k.WatchLinks(ctx)
		if err != nil {
			return nil, err
		}
		go func(dev, port string) {
			for u := range updates {
				if u.Attrs().Name == port && reached(u.Attrs().MasterIndex) {
					events <- event{dev, time.Now()}
					return
				}
			}
		}(c.GetDevice(), c.GetPort())
	}
	start := time.Now()
	if err := change(ctx); err != nil {
		return nil, fmt.Errorf("changing %s: %w", machine, err)
	}
	got := map[string]time.Duration{}
	for len(got) < len(Cabling[machine]) {
		select {
		case e := <-events:
			got[e.dev] = e.at.Sub(start)
		case <-ctx.Done():
			return got, fmt.Errorf("waiting for %s's ports in the kernels (seen %v): %w", machine, got, ctx.Err())
		}
	}
	return got, nil
}

// CheckL3VNI verifies in a leaf's kernel the L3VNI of a tenant VRF: the
// VXLAN device (VNI, local VTEP = the leaf's loopback from the controller,
// dstport 4789, no learning) on a bridge, the SVI in the VRF, and the
// loopback address on lo.
func (m *MiniLab) CheckL3VNI(ctx context.Context, leaf string, vni uint32, vrf string) error {
	devs, err := m.API.ListDevices(ctx, &apiv1.ListDevicesRequest{})
	if err != nil {
		return fmt.Errorf("listing devices: %w", err)
	}
	var loopback string
	for _, d := range devs.GetDevices() {
		if d.GetHostname() == leaf {
			loopback = d.GetLoopback()
		}
	}
	if loopback == "" {
		return fmt.Errorf("%s has no loopback in the controller", leaf)
	}
	k, err := m.Kernel(leaf)
	if err != nil {
		return err
	}
	defer k.Close()
	if ok, err := k.HasAddr("lo", loopback); err != nil || !ok {
		return fmt.Errorf("%s: loopback %s on lo: present=%t err=%v", leaf, loopback, ok, err)
	}
	got, err := k.L3VNI(vni, vrf)
	if err != nil {
		return fmt.Errorf("%s: %w", leaf, err)
	}
	vtep, _, _ := strings.Cut(loopback, "/")
	switch {
	case got.VNI != vni, got.Local != vtep, got.Learning, got.Port != 4789, got.Bridge == "", got.SVI == "":
		return fmt.Errorf("%s: L3VNI of %s is %+v; want vni %d, local %s, no learning, port 4789, on a bridge, with an SVI in %s", leaf, vrf, got, vni, vtep, vrf)
	}
	fmt.Fprintf(m.Out, "ok: %s: %s vni %d local %s dstport %d nolearning on %s; SVI %s in %s; lo has %s\n",
		leaf, got.VXLAN, got.VNI, got.Local, got.Port, got.Bridge, got.SVI, vrf, loopback)
	return nil
}
