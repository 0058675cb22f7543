// Command fabric-lab realises a containerlab topology file as network
// namespaces, veth links and processes on this host, without Docker.
//
//	fabric-lab up [-lab-dir DIR] TOPO.yml          bring the lab up and leave it running
//	fabric-lab down TOPO.yml | -name NAME           tear it down (also after a crash)
//	fabric-lab exec [-lab-dir DIR] TOPO.yml NODE -- CMD [ARG...]
//	fabric-lab inspect [-lab-dir DIR] TOPO.yml      show nodes, namespaces, processes
//	fabric-lab demo [-keep] [-bin DIR] TOPO.yml     what `make lab` runs (integration/scenario)
//	fabric-lab certs [-dir DIR] [TOPO.yml] [-devices A,B] [-controller-hosts H,IP] [-operators NAME]
//	                                                a throwaway CA and certificates for mutual TLS
//
// It needs root and iproute2. All the work is done by package
// integration/lab; this file only parses flags and prints.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/metalfabric/fabric/integration/lab"
	"github.com/metalfabric/fabric/integration/scenario"
	"github.com/metalfabric/fabric/pki"
)

const usage = `usage: fabric-lab [-v] COMMAND ...

commands:
  up [-lab-dir DIR] TOPO.yml                     bring the lab up, print its nodes, exit leaving it running
  down TOPO.yml | -name NAME                     stop its processes and delete its namespaces
  exec [-lab-dir DIR] TOPO.yml NODE -- CMD...    run CMD in NODE's namespace with its binds (like docker exec)
  inspect [-lab-dir DIR] TOPO.yml                show nodes, namespaces, mgmt addresses and processes
  demo [-keep] [-bin DIR] TOPO.yml               the mini-lab walk-through of make lab: up, allocate, check, down
  certs [-dir DIR] [TOPO.yml] [-devices A,B] [-controller-hosts H,IP] [-operators NAME]
                                                 a throwaway CA, controller/device/operator certificates and an
                                                 operator token (default dir: the topology's lab dir + /pki)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	global := flag.NewFlagSet("fabric-lab", flag.ContinueOnError)
	global.SetOutput(stderr)
	global.Usage = func() { fmt.Fprint(stderr, usage) }
	verbose := global.Bool("v", false, "debug logging")
	if err := global.Parse(args); err != nil {
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)
	if global.NArg() == 0 {
		global.Usage()
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cmd, rest := global.Arg(0), global.Args()[1:]
	var err error
	switch cmd {
	case "up":
		err = cmdUp(ctx, log, rest, stdout, stderr)
	case "down":
		err = cmdDown(ctx, log, rest, stderr)
	case "exec":
		var code int
		code, err = cmdExec(ctx, log, rest, stdout, stderr)
		if err == nil {
			return code
		}
	case "inspect":
		err = cmdInspect(log, rest, stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, log, rest, stdout, stderr)
	case "certs":
		err = cmdCerts(rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "fabric-lab: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "fabric-lab %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

// parseInterspersed parses flags that may come before or after positional
// arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, errUsage
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func newFlags(name string, stderr io.Writer, positional string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: fabric-lab %s %s\n", name, positional)
		fs.PrintDefaults()
	}
	return fs
}

func cmdUp(ctx context.Context, log *slog.Logger, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("up", stderr, "[-lab-dir DIR] TOPO.yml")
	labDir := fs.String("lab-dir", "", "lab directory (default clab-<name> next to TOPO.yml)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errUsage
	}
	t, err := lab.Load(pos[0])
	if err != nil {
		return err
	}
	start := time.Now()
	l, err := lab.Up(ctx, t, lab.WithLabDir(*labDir), lab.WithLogger(log))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "lab %s up in %s (lab dir %s, mgmt namespace %s)\n", t.Name,
		time.Since(start).Round(time.Millisecond), l.Dir(), l.MgmtNetNS())
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNETNS\tMGMT-IPV4\tCMD\tLOG")
	for _, n := range t.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s/%d\t%s\t%s\n", n.Name, l.NetNS(n.Name), n.MgmtIPv4,
			t.Mgmt.IPv4Subnet.Bits(), orDash(n.Cmd), l.NodeLog(n.Name))
	}
	return tw.Flush()
}

func cmdDown(ctx context.Context, log *slog.Logger, args []string, stderr io.Writer) error {
	fs := newFlags("down", stderr, "TOPO.yml | -name NAME")
	name := fs.String("name", "", "lab name (instead of a topology file)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch {
	case *name != "" && len(pos) == 0:
	case *name == "" && len(pos) == 1:
		t, err := lab.Load(pos[0])
		if err != nil {
			return err
		}
		*name = t.Name
	default:
		fs.Usage()
		return errUsage
	}
	// Teardown must finish even when interrupted: it is the cleanup.
	return lab.Down(context.WithoutCancel(ctx), *name, lab.WithLogger(log))
}

func cmdExec(ctx context.Context, log *slog.Logger, args []string, stdout, stderr io.Writer) (int, error) {
	fs := newFlags("exec", stderr, "[-lab-dir DIR] TOPO.yml NODE -- CMD [ARG...]")
	labDir := fs.String("lab-dir", "", "lab directory (default clab-<name> next to TOPO.yml)")
	// Flags only before NODE: everything after it (and after an optional
	// "--") is the command, whose own flags must stay untouched.
	var pos []string
	for len(pos) < 2 {
		if err := fs.Parse(args); err != nil {
			return 0, errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	argv := args
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(pos) != 2 || len(argv) == 0 {
		fs.Usage()
		return 0, errUsage
	}
	t, err := lab.Load(pos[0])
	if err != nil {
		return 0, err
	}
	l, err := lab.Attach(t, lab.WithLabDir(*labDir), lab.WithLogger(log))
	if err != nil {
		return 0, err
	}
	c, err := l.Command(ctx, pos[1], argv...)
	if err != nil {
		return 0, err
	}
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, stdout, stderr
	err = c.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitCode(), nil
	}
	if err != nil {
		return 0, err
	}
	return 0, nil
}

func cmdInspect(log *slog.Logger, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("inspect", stderr, "[-lab-dir DIR] TOPO.yml")
	labDir := fs.String("lab-dir", "", "lab directory (default clab-<name> next to TOPO.yml)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errUsage
	}
	t, err := lab.Load(pos[0])
	if err != nil {
		return err
	}
	l, err := lab.Attach(t, lab.WithLabDir(*labDir), lab.WithLogger(log))
	if err != nil {
		return err
	}
	st, err := l.Status()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNETNS\tMGMT-IPV4\tSTATE\tCMD-PID\tPIDS")
	for _, s := range st {
		state := "absent"
		switch {
		case !s.NetNSUp:
		case s.CmdPID != 0:
			state = "running"
		case s.HasCommand:
			state = "stopped"
		default:
			state = "up"
		}
		pid := "-"
		if s.CmdPID != 0 {
			pid = strconv.Itoa(s.CmdPID)
		}
		var pids []string
		for _, p := range s.Processes {
			pids = append(pids, strconv.Itoa(p))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s/%d\t%s\t%s\t%s\n", s.Node, s.NetNS, s.MgmtIPv4, t.Mgmt.IPv4Subnet.Bits(),
			state, pid, orDash(strings.Join(pids, ",")))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdCerts(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("certs", stderr, "[-dir DIR] [TOPO.yml]")
	dir := fs.String("dir", "", "where to write the bundle (default: <lab dir of TOPO.yml>/pki)")
	devices := fs.String("devices", "", "device hostnames to issue client certificates for, comma-separated (added to TOPO's nodes)")
	hosts := fs.String("controller-hosts", "", "names and IPs the controller is dialled by, comma-separated (added to TOPO's controller node)")
	operators := fs.String("operators", "", "operator names to issue client certificates for, comma-separated (TOPO: admin)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	var b pki.Bundle
	switch len(pos) {
	case 0:
		if *dir == "" {
			fmt.Fprintln(stderr, "fabric-lab certs: -dir is required without a topology")
			return errUsage
		}
	case 1:
		topo, err := lab.Load(pos[0])
		if err != nil {
			return err
		}
		b = scenario.CertBundle(topo)
		if *dir == "" {
			*dir = filepath.Join(lab.DefaultLabDir(topo), scenario.PKISubdir)
		}
	default:
		fs.Usage()
		return errUsage
	}
	b.Devices = append(b.Devices, splitList(*devices)...)
	b.ControllerHosts = append(b.ControllerHosts, splitList(*hosts)...)
	b.Operators = append(b.Operators, splitList(*operators)...)
	if len(b.ControllerHosts) == 0 {
		fmt.Fprintln(stderr, "fabric-lab certs: no controller host name: give TOPO.yml or -controller-hosts")
		return errUsage
	}
	if err := pki.Generate(*dir, b); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote ca.pem, controller.pem (%s), %d device and %d operator certificates and operator.token to %s\n",
		strings.Join(b.ControllerHosts, ","), len(b.Devices), len(b.Operators), *dir)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
