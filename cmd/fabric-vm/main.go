// Command fabric-vm runs commands in a qemu VM with Debian's full kernel
// (VRF, 802.1Q, bridge VLAN filtering), sharing the host's filesystem.
//
//	fabric-vm run [--interactive] [--timeout D] [--cache DIR] [--mem MB] [--cpus N] -- CMD [ARGS...]
//	fabric-vm kernel [--cache DIR]
//	fabric-vm host-has-vrf
//
// run exits with the guest command's exit status (125 when the VM itself
// failed); a single CMD argument is taken as a shell command. kernel
// prepares (downloads, unpacks) the kernel and prints its paths.
// host-has-vrf exits 0 when the host kernel can create VRFs, 1 otherwise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/metalfabric/fabric/integration/vm"
)

// exitVMFailed is the exit status when the VM could not report the command's
// status (like env(1) and podman's 125 for "the runner failed").
const exitVMFailed = 125

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  fabric-vm run [--interactive] [--timeout D] [--cache DIR] [--mem MB] [--cpus N] [--dir DIR] [--env K=V]... [-v] -- CMD [ARGS...]
  fabric-vm kernel [--cache DIR]
  fabric-vm host-has-vrf

run boots Debian's full kernel under qemu with the host's / shared read-only
(plus a tmpfs overlay) and runs CMD in the current directory. A single CMD
argument is a shell command ('make x && make y'); several are quoted and
joined. The exit status is CMD's, or 125 when the VM failed.

The cache dir defaults to $FABRIC_CACHE or <repo>/.cache/vm.
`)
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1], os.Args[2:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, sub string, args []string) int {
	switch sub {
	case "run":
		return cmdRun(ctx, args)
	case "kernel":
		return cmdKernel(ctx, args)
	case "host-has-vrf":
		if vm.HostSupportsVRF() {
			fmt.Println("yes")
			return 0
		}
		fmt.Println("no")
		return 1
	case "-h", "-help", "--help", "help":
		usage()
		return 0
	default:
		fmt.Fprintf(os.Stderr, "fabric-vm: unknown command %q\n", sub)
		usage()
		return 2
	}
}

type envFlag []string

func (e *envFlag) String() string { return strings.Join(*e, " ") }
func (e *envFlag) Set(v string) error {
	if !strings.Contains(v, "=") {
		return errors.New("want KEY=VALUE")
	}
	*e = append(*e, v)
	return nil
}

func setupLogging(verbose bool) {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
}

func cmdRun(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	interactive := fs.Bool("interactive", false, "attach the console and start a shell after the command (or instead of it)")
	timeout := fs.Duration("timeout", 0, "kill the VM after this long (0: no limit)")
	cache := fs.String("cache", "", "cache dir (default $FABRIC_CACHE or <repo>/.cache/vm)")
	mem := fs.Int("mem", 2048, "guest memory in MiB")
	cpus := fs.Int("cpus", 2, "guest CPUs")
	dir := fs.String("dir", "", "working directory in the guest (default the current one)")
	verbose := fs.Bool("v", false, "debug logging")
	var env envFlag
	fs.Var(&env, "env", "extra KEY=VALUE for the command (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	setupLogging(*verbose)
	command := shellJoin(fs.Args())
	if command == "" && !*interactive {
		fmt.Fprintln(os.Stderr, "fabric-vm run: no command (use --interactive for a shell)")
		return 2
	}
	code, err := vm.Run(ctx, vm.Config{
		Command:     command,
		Dir:         *dir,
		Env:         env,
		MemoryMB:    *mem,
		CPUs:        *cpus,
		Timeout:     *timeout,
		CacheDir:    *cache,
		Stdout:      os.Stdout,
		Interactive: *interactive,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "fabric-vm run: %v\n", err)
		return exitVMFailed
	}
	return code
}

func cmdKernel(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("kernel", flag.ContinueOnError)
	cache := fs.String("cache", "", "cache dir (default $FABRIC_CACHE or <repo>/.cache/vm)")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	setupLogging(*verbose)
	dir := *cache
	if dir == "" {
		d, err := vm.DefaultCacheDir()
		if err != nil {
			fmt.Fprintf(os.Stderr, "fabric-vm kernel: %v\n", err)
			return 1
		}
		dir = d
	}
	start := time.Now()
	k, err := vm.EnsureKernel(ctx, dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "fabric-vm kernel: %v\n", err)
		return 1
	}
	fmt.Printf("version: %s\nvmlinuz: %s\nvmlinux: %s\ninitrd:  %s\nmodules: %s\ntook:    %s\n",
		k.Version, k.Vmlinuz, k.Vmlinux, k.Initrd, k.ModulesDir, time.Since(start).Round(time.Millisecond))
	return 0
}

// shellJoin quotes args for /bin/sh -c. A single argument is taken as a
// shell command as is, so `fabric-vm run -- 'a && b'` works.
func shellJoin(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = quote(a)
	}
	return strings.Join(q, " ")
}

func quote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:,@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
