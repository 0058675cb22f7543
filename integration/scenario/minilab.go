// Package scenario drives the mini-lab end to end: it brings the topology up
// with the lab runner, talks to the controller over its gRPC API the way an
// operator would, shows the fabric with fabricctl, and checks the leaves'
// kernels directly over netlink. `make lab` and the e2e tests both use it.
//
// It owns no fabric logic and never changes kernel state itself; all changes
// happen through the controller and the agents.
package scenario

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/integration/lab"
	"github.com/metalfabric/fabric/pki"
)

// ControllerNode is the topology node that runs fabric-controller (the
// first replica when there are several, see ControllerNodes).
const ControllerNode = "controller"

// controllerPort is where the lab's controller listens.
const controllerPort = "50051"

// MiniLab is a running mini-lab and a client of its controller.
type MiniLab struct {
	Lab    *lab.Lab
	Topo   *lab.Topology
	API    apiv1.OperatorServiceClient
	BinDir string
	Out    io.Writer
	Log    *slog.Logger
	// Controllers are the nodes running a controller replica (one in the
	// default mini-lab), in topology order. API and Fabricctl talk to one
	// of them, the first unless UseController chose another.
	Controllers []string

	controller string
	apis       map[string]apiv1.OperatorServiceClient
	conns      []*grpc.ClientConn
}

// Start brings the topology up and connects to its controller. The caller
// must Close it.
func Start(ctx context.Context, topoPath, binDir string, out io.Writer, log *slog.Logger) (*MiniLab, error) {
	topo, err := lab.Load(topoPath)
	if err != nil {
		return nil, err
	}
	// A scenario starts from scratch: a lab of the same name left running
	// (LAB_KEEP) or crashed is torn down, and the node dirs of an earlier
	// run (the controller's store, the agents' last-known-good configs)
	// are removed.
	if err := lab.Down(ctx, topo.Name, lab.WithLogger(log)); err != nil {
		return nil, fmt.Errorf("tearing down an earlier %s: %w", topo.Name, err)
	}
	if err := os.RemoveAll(lab.DefaultLabDir(topo)); err != nil {
		return nil, fmt.Errorf("removing the state of an earlier %s: %w", topo.Name, err)
	}
	// Mutual TLS: a fresh throwaway CA per run, bound into the nodes.
	pkiDir, err := GenerateCerts(topo)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := pki.ClientConfig(filepath.Join(pkiDir, Operator+".pem"), filepath.Join(pkiDir, Operator+"-key.pem"), filepath.Join(pkiDir, "ca.pem"))
	if err != nil {
		return nil, fmt.Errorf("operator TLS: %w", err)
	}
	l, err := lab.Up(ctx, topo, lab.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("bringing up %s: %w", topo.Name, err)
	}
	m := &MiniLab{Lab: l, Topo: topo, BinDir: binDir, Out: out, Log: log,
		Controllers: ControllerNodes(topo), apis: map[string]apiv1.OperatorServiceClient{}}
	if len(m.Controllers) == 0 {
		m.Controllers = []string{ControllerNode}
	}
	for _, node := range m.Controllers {
		ns := l.NetNS(node)
		addr := net.JoinHostPort(l.MgmtIP(node).String(), controllerPort)
		conn, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return dialIn(ctx, ns, a) }))
		if err != nil {
			m.closeConns()
			l.Down(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("connecting to %s: %w", node, err)
		}
		m.conns = append(m.conns, conn)
		m.apis[node] = apiv1.NewOperatorServiceClient(conn)
	}
	m.UseController(m.Controllers[0])
	return m, nil
}

// UseController points API and Fabricctl at the controller replica on node.
func (m *MiniLab) UseController(node string) {
	m.controller = node
	m.API = m.apis[node]
}

// Controller is the node API and Fabricctl talk to.
func (m *MiniLab) Controller() string { return m.controller }

func (m *MiniLab) closeConns() {
	for _, c := range m.conns {
		c.Close()
	}
}

// Close disconnects and tears the lab down.
func (m *MiniLab) Close(ctx context.Context) error {
	m.closeConns()
	return m.Lab.Down(ctx)
}

// Switches are the topology's agent nodes.
func (m *MiniLab) Switches() []string { return []string{"leaf01", "leaf02", "spine01", "spine02"} }

// Fabricctl runs bin/fabricctl in the namespace of the controller replica
// API talks to, printing to Out, exactly as an operator on the management
// network would.
func (m *MiniLab) Fabricctl(ctx context.Context, args ...string) error {
	fmt.Fprintf(m.Out, "\n$ fabricctl %s\n", joinArgs(args))
	// The operator token, as an operator without a client certificate.
	argv := append([]string{filepath.Join(m.BinDir, "fabricctl"), "--controller", "127.0.0.1:" + controllerPort,
		"--tls-ca", "/etc/fabric/pki/ca.pem", "--token-file", "/etc/fabric/pki/operator.token"}, args...)
	out, err := m.Lab.Exec(ctx, m.controller, argv...)
	m.Out.Write(out)
	if err != nil {
		return fmt.Errorf("fabricctl %s: %w", joinArgs(args), err)
	}
	return nil
}

func joinArgs(args []string) string {
	s := ""
	for i, a := range args {
		if i > 0 {
			s += " "
		}
		s += a
	}
	return s
}

// WaitRegistered waits until every named device is registered and holds a
// watch stream (on any controller replica, see Devices).
func (m *MiniLab) WaitRegistered(ctx context.Context, timeout time.Duration, names ...string) error {
	return poll(ctx, timeout, func(ctx context.Context) (bool, string, error) {
		devs, err := m.Devices(ctx)
		if err != nil {
			return false, err.Error(), nil // controller may still be starting
		}
		var missing []string
		for _, n := range names {
			if !slices.ContainsFunc(devs, func(d *apiv1.Device) bool { return d.GetHostname() == n && d.GetConnected() }) {
				missing = append(missing, n)
			}
		}
		return len(missing) == 0, fmt.Sprintf("not connected: %v", missing), nil
	})
}

// WaitInSync waits until every named device has applied its desired version
// without errors.
func (m *MiniLab) WaitInSync(ctx context.Context, timeout time.Duration, names ...string) error {
	return poll(ctx, timeout, func(ctx context.Context) (bool, string, error) {
		devs, err := m.Devices(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		var behind []string
		for _, n := range names {
			i := slices.IndexFunc(devs, func(d *apiv1.Device) bool { return d.GetHostname() == n })
			if i < 0 {
				behind = append(behind, n+" (unknown)")
				continue
			}
			d := devs[i]
			if !d.GetConnected() || d.GetAppliedVersion() < d.GetDesiredVersion() || len(d.GetErrors()) > 0 {
				behind = append(behind, fmt.Sprintf("%s (connected=%t applied=%d desired=%d errors=%v)", n, d.GetConnected(), d.GetAppliedVersion(), d.GetDesiredVersion(), d.GetErrors()))
			}
		}
		return len(behind) == 0, fmt.Sprintf("not in sync: %v", behind), nil
	})
}

// WaitConverged waits until the controller reports the machine's last
// allocate/free applied on every device it is cabled to.
func (m *MiniLab) WaitConverged(ctx context.Context, timeout time.Duration, machine string) error {
	return poll(ctx, timeout, func(ctx context.Context) (bool, string, error) {
		c, err := m.API.GetConvergence(ctx, &apiv1.GetConvergenceRequest{Machine: machine})
		if err != nil {
			return false, "", err
		}
		return c.GetConverged(), fmt.Sprintf("convergence of %s: %v", machine, c.GetDevices()), nil
	})
}

// WaitWiring waits until the controller shows machine cabled to exactly want
// (in any order), as ListMachines reports it.
func (m *MiniLab) WaitWiring(ctx context.Context, timeout time.Duration, machine string, want []*apiv1.Connection) error {
	return poll(ctx, timeout, func(ctx context.Context) (bool, string, error) {
		got, err := m.Wiring(ctx, machine)
		if err != nil {
			return false, err.Error(), nil
		}
		return SameConnections(got, want), fmt.Sprintf("%s is cabled to %v, want %v", machine, FormatConnections(got), FormatConnections(want)), nil
	})
}

// Wiring returns the machine's effective connections from ListMachines (nil
// when the controller does not know the machine yet).
func (m *MiniLab) Wiring(ctx context.Context, machine string) ([]*apiv1.Connection, error) {
	resp, err := m.API.ListMachines(ctx, &apiv1.ListMachinesRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing machines: %w", err)
	}
	for _, mc := range resp.GetMachines() {
		if mc.GetName() == machine {
			return mc.GetConnections(), nil
		}
	}
	return nil, nil
}

// SameConnections tells whether a and b hold the same device:port pairs.
func SameConnections(a, b []*apiv1.Connection) bool {
	x, y := FormatConnections(a), FormatConnections(b)
	return slices.Equal(x, y)
}

// FormatConnections renders connections as sorted "device:port" strings.
func FormatConnections(cs []*apiv1.Connection) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.GetDevice()+":"+c.GetPort())
	}
	slices.Sort(out)
	return out
}

// poll calls check until it reports done, returns an error, or timeout
// passes; the timeout error carries the last reason.
func poll(ctx context.Context, timeout time.Duration, check func(context.Context) (bool, string, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var why string
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		done, reason, err := check(cctx)
		slow := cctx.Err() != nil && ctx.Err() == nil
		ccancel()
		switch {
		case err != nil && slow:
			// One check that overran its 5 s (a command killed on a
			// loaded machine) is not the answer: try again.
			done, reason = false, fmt.Sprintf("check did not finish in 5s: %v", err)
		case err != nil:
			if why != "" {
				return fmt.Errorf("%w (before: %s)", err, why)
			}
			return err
		}
		if done {
			return nil
		}
		why = reason
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %s: %s", timeout, why)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Kernel opens a netlink view of a node's namespace.
func (m *MiniLab) Kernel(node string) (*Kernel, error) {
	return OpenKernel(m.Lab.NetNS(node))
}

func execOut(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
