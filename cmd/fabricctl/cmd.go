package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/metalfabric/fabric/controlplane/api/v1"
	"github.com/metalfabric/fabric/pki"
)

// cli holds the global flags and the lazily dialled client.
type cli struct {
	out        io.Writer
	controller string
	output     string
	timeout    time.Duration
	tlsCert    string
	tlsKey     string
	tlsCA      string
	tokenFile  string

	conn   *grpc.ClientConn
	client apiv1.OperatorServiceClient
}

func newRootCmd(out io.Writer) *cobra.Command {
	c := &cli{out: out}
	root := &cobra.Command{
		Use:           "fabricctl",
		Short:         "Operate the fabric controller: networks, devices, machines, allocations",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			switch c.output {
			case "table", "json", "yaml":
				return nil
			}
			return fmt.Errorf("unknown output format %q (want table, json or yaml)", c.output)
		},
		PersistentPostRun: func(*cobra.Command, []string) {
			if c.conn != nil {
				c.conn.Close()
			}
		},
	}
	root.SetOut(out) // completion scripts go where the tables go
	def := os.Getenv("FABRIC_CONTROLLER")
	if def == "" {
		def = "127.0.0.1:50051"
	}
	root.PersistentFlags().StringVar(&c.controller, "controller", def, "controller address HOST:PORT (env FABRIC_CONTROLLER)")
	env := func(name string) string { return os.Getenv(name) }
	root.PersistentFlags().StringVar(&c.tlsCA, "tls-ca", env("FABRIC_TLS_CA"), "CA certificates (PEM) to verify the controller against; without it plaintext (env FABRIC_TLS_CA)")
	root.PersistentFlags().StringVar(&c.tlsCert, "tls-cert", env("FABRIC_TLS_CERT"), "operator client certificate (PEM) (env FABRIC_TLS_CERT)")
	root.PersistentFlags().StringVar(&c.tlsKey, "tls-key", env("FABRIC_TLS_KEY"), "the client certificate's private key (PEM) (env FABRIC_TLS_KEY)")
	root.PersistentFlags().StringVar(&c.tokenFile, "token-file", env("FABRIC_TOKEN_FILE"), "file holding the operator bearer token (env FABRIC_TOKEN_FILE)")
	root.PersistentFlags().StringVarP(&c.output, "output", "o", "table", "output format: table, json or yaml")
	root.PersistentFlags().DurationVar(&c.timeout, "timeout", 10*time.Second, "timeout of each API call")

	root.AddCommand(c.networkCmd(), c.deviceCmd(), c.machineCmd(), c.findingsCmd(), c.firewallCmd())
	return root
}

func (c *cli) api() (apiv1.OperatorServiceClient, error) {
	if c.client != nil {
		return c.client, nil
	}
	opts, err := c.dialOptions()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(c.controller, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to controller %s: %w", c.controller, err)
	}
	c.conn, c.client = conn, apiv1.NewOperatorServiceClient(conn)
	return c.client, nil
}

// dialOptions are the transport and call credentials of the flags.
func (c *cli) dialOptions() ([]grpc.DialOption, error) {
	var opts []grpc.DialOption
	if c.tlsCA != "" {
		cfg, err := pki.ClientConfig(c.tlsCert, c.tlsKey, c.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		if c.tlsCert != "" || c.tlsKey != "" {
			return nil, errors.New("--tls-cert and --tls-key need --tls-ca")
		}
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if c.tokenFile != "" {
		toks, err := pki.ReadTokens(c.tokenFile)
		if err != nil {
			return nil, err
		}
		// Over plaintext too: a lab controller may want a token without TLS.
		opts = append(opts, grpc.WithPerRPCCredentials(pki.BearerToken(toks[0], false)))
	}
	return opts, nil
}

// call runs one API call with the configured timeout and prints its result.
func call[Req, Resp proto.Message](c *cli, cmd *cobra.Command, fn func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req, table func(Resp) [][]string) error {
	if _, err := c.api(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), c.timeout)
	defer cancel()
	resp, err := fn(ctx, req)
	if err != nil {
		return err
	}
	return render(c.out, c.output, resp, table(resp))
}

func (c *cli) networkCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "network", Aliases: []string{"networks", "net"}, Short: "Tenant networks"}
	var prefix, parent string
	var length uint32
	var external bool
	create := &cobra.Command{
		Use:   "create NAME (--prefix CIDR | --parent NETWORK --length BITS)",
		Short: "Create a network; its VNI comes from the controller's pool",
		Long: "Create a network on a prefix, or as a child of a parent network: the controller picks\n" +
			"the lowest free prefix of --length bits inside the parent.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.api()
			if err != nil {
				return err
			}
			req := &apiv1.CreateNetworkRequest{Name: args[0], Prefix: prefix, Parent: parent, ChildLength: length, External: external}
			return call(c, cmd, api.CreateNetwork, req, func(n *apiv1.Network) [][]string {
				return networkTable(n)
			})
		},
	}
	create.Flags().StringVar(&prefix, "prefix", "", "the network's prefix, e.g. 10.0.1.0/24")
	create.Flags().StringVar(&parent, "parent", "", "create a child of this network (with --length)")
	create.Flags().Uint32Var(&length, "length", 0, "prefix length of the child network, e.g. 28 (with --parent)")
	create.Flags().BoolVar(&external, "external", false, "an external (internet) network: firewalls hold its VRF and leak tenants' default route into it")
	create.MarkFlagsOneRequired("prefix", "parent")
	create.MarkFlagsMutuallyExclusive("prefix", "parent")
	create.MarkFlagsRequiredTogether("parent", "length")
	list := &cobra.Command{
		Use:   "list",
		Short: "List networks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.api()
			if err != nil {
				return err
			}
			return call(c, cmd, api.ListNetworks, &apiv1.ListNetworksRequest{}, func(r *apiv1.ListNetworksResponse) [][]string {
				return networkTable(r.GetNetworks()...)
			})
		},
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a network without allocations",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.api()
			if err != nil {
				return err
			}
			return call(c, cmd, api.DeleteNetwork, &apiv1.DeleteNetworkRequest{Name: args[0]}, func(*apiv1.DeleteNetworkResponse) [][]string {
				return [][]string{{"DELETED"}, {args[0]}}
			})
		},
	}
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a network with its usage (allocated/capacity)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.api()
			if err != nil {
				return err
			}
			return call(c, cmd, api.GetNetwork, &apiv1.GetNetworkRequest{Name: args[0]}, func(n *apiv1.Network) [][]string {
				return networkTable(n)
			})
		},
	}
	cmd.AddCommand(create, list, show, del)
	return cmd
}

func (c *cli) findingsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "findings",
		Short: "List cabling findings: planned neighbours missing or mismatched, unplanned neighbours",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.api()
			if err != nil {
				return err
			}
			return call(c, cmd, api.ListFindings, &apiv1.ListFindingsRequest{}, findingsTable)
		},
	}
}

func (c *cli) deviceCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "device", Aliases: []string{"devices", "switch"}, Short: "Switches and firewalls"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List registered devices with their config versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.api()
			if err != nil {
				return err
			}
			return call(c, cmd, api.ListDevices, &apiv1.ListDevicesRequest{}, deviceTable)
		},
	}
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a device: sync status, last error, drift, ports and LLDP neighbours",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.api()
			if err != nil {
				return err
			}
			return call(c, cmd, api.GetDevice, &apiv1.GetDeviceRequest{Hostname: args[0]}, deviceShowTable)
		},
	}
	var planned []string
	plan := &cobra.Command{
		Use:   "plan NAME --port PORT=NEIGHBOUR [--port ...]",
		Short: "Set a device's cabling plan (replaces it; no --port removes it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ports, err := parsePlan(planned)
			if err != nil {
				return err
			}
			api, err := c.api()
			if err != nil {
				return err
			}
			return call(c, cmd, api.SetCablingPlan, &apiv1.SetCablingPlanRequest{Device: args[0], Ports: ports}, planTable)
		},
	}
	plan.Flags().StringArrayVar(&planned, "port", nil, "PORT=NEIGHBOUR: the LLDP system name expected on the port (repeat)")
	cmd.AddCommand(list, show, plan)
	return cmd
}

func parsePlan(ports []string) ([]*apiv1.PlannedPort, error) {
	out := make([]*apiv1.PlannedPort, 0, len(ports))
	for _, p := range ports {
		port, nbr, ok := strings.Cut(p, "=")
		if !ok || port == "" || nbr == "" {
			return nil, fmt.Errorf("bad --port %q: want PORT=NEIGHBOUR, e.g. swp1=machine01", p)
		}
		out = append(out, &apiv1.PlannedPort{Port: port, Neighbor: nbr})
	}
	return out, nil
}

func (c *cli) machineCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "machine", Aliases: []string{"machines"}, Short: "Machines, their cabling and allocations"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List machines",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			api, err := c.api()
			if err != nil {
				return err
			}
			return call(c, cmd, api.ListMachines, &apiv1.ListMachinesRequest{}, func(r *apiv1.ListMachinesResponse) [][]string {
				return machineTable(r.GetMachines()...)
			})
		},
	}
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a machine: wiring (learned/manual), liveness, allocation",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.api()
			if err != nil {
				return err
			}
			return call(c, cmd, api.GetMachine, &apiv1.GetMachineRequest{Name: args[0]}, machineShowTable)
		},
	}
	var ports []string
	cable := &cobra.Command{
		Use:   "cable NAME --port SWITCH:PORT [--port SWITCH:PORT]",
		Short: "Override the machine's LLDP-learned wiring with these ports (no --port: back to learned)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conns, err := parseConnections(ports)
			if err != nil {
				return err
			}
			api, err := c.api()
			if err != nil {
				return err
			}
			return call(c, cmd, api.CableMachine, &apiv1.CableMachineRequest{Machine: args[0], Connections: conns}, func(m *apiv1.Machine) [][]string {
				return machineTable(m)
			})
		},
	}
	cable.Flags().StringArrayVar(&ports, "port", nil, "SWITCH:PORT the machine is cabled to (repeat for each NIC)")
	var network, allocReq, freeReq string
	var announce []string
	allocate := &cobra.Command{
		Use:   "allocate NAME --network NETWORK",
		Short: "Allocate a machine into a network (an IP from its prefix)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.api()
			if err != nil {
				return err
			}
			return call(c, cmd, api.AllocateMachine, &apiv1.AllocateMachineRequest{Machine: args[0], Network: network, RequestId: allocReq, Announce: announce}, func(m *apiv1.Machine) [][]string {
				return machineTable(m)
			})
		},
	}
	allocate.Flags().StringVar(&network, "network", "", "network to allocate the machine into")
	allocate.Flags().StringArrayVar(&announce, "announce", nil, "extra CIDR the machine may announce over BGP besides its address (repeat), e.g. 0.0.0.0/0 for an exit router")
	allocate.Flags().StringVar(&allocReq, "request-id", "", "idempotency key: a retry with the same id returns the first result")
	_ = allocate.MarkFlagRequired("network")
	free := &cobra.Command{
		Use:   "free NAME",
		Short: "Release a machine's allocation",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.api()
			if err != nil {
				return err
			}
			return call(c, cmd, api.FreeMachine, &apiv1.FreeMachineRequest{Machine: args[0], RequestId: freeReq}, func(m *apiv1.Machine) [][]string {
				return machineTable(m)
			})
		},
	}
	free.Flags().StringVar(&freeReq, "request-id", "", "idempotency key: a retry with the same id returns the first result")
	var wait time.Duration
	conv := &cobra.Command{
		Use:   "convergence NAME [--wait DURATION]",
		Short: "Show which devices have applied the machine's last allocate/free",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.api()
			if err != nil {
				return err
			}
			conv, err := waitConverged(cmd.Context(), api, args[0], wait, c.timeout)
			if err != nil {
				return err
			}
			if err := render(c.out, c.output, conv, convergenceTable(conv)); err != nil {
				return err
			}
			if wait > 0 && !conv.GetConverged() {
				return fmt.Errorf("machine %s did not converge within %s", args[0], wait)
			}
			return nil
		},
	}
	conv.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for all devices to converge (non-zero exit if they do not)")
	cmd.AddCommand(list, show, cable, allocate, free, conv)
	return cmd
}

// waitConverged asks for a machine's convergence until it is converged or
// wait has passed; with wait 0 it asks once.
func waitConverged(ctx context.Context, api apiv1.OperatorServiceClient, machine string, wait, timeout time.Duration) (*apiv1.Convergence, error) {
	deadline := time.Now().Add(wait)
	for {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		conv, err := api.GetConvergence(cctx, &apiv1.GetConvergenceRequest{Machine: machine})
		cancel()
		if err != nil {
			return nil, err
		}
		if conv.GetConverged() || !time.Now().Before(deadline) {
			return conv, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func parseConnections(ports []string) ([]*apiv1.Connection, error) {
	conns := make([]*apiv1.Connection, 0, len(ports))
	for _, p := range ports {
		dev, port, ok := strings.Cut(p, ":")
		if !ok || dev == "" || port == "" {
			return nil, fmt.Errorf("bad --port %q: want SWITCH:PORT, e.g. leaf01:swp1", p)
		}
		conns = append(conns, &apiv1.Connection{Device: dev, Port: port})
	}
	return conns, nil
}
