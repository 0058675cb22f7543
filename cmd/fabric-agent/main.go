// Command fabric-agent is the daemon that runs on every switch and firewall:
// it registers with the controller, watches the device's desired config and
// reconciles the kernel to it.
//
//	fabric-agent --role leaf|spine|firewall --controller HOST:PORT[,HOST:PORT...] [--hostname NAME] [--log-level info]
//	    [--lldp=true] [--lldp-interval 30s] [--mgmt-interface eth0] [--lldp-mgmt-addr IP,...]
//	    [--tls-ca CA.pem --tls-cert CERT.pem --tls-key KEY.pem] [--metrics-listen :9101] [--commit-confirm 0s]
//	    [--config /etc/fabric/agent.yaml]
//	fabric-agent plan --controller HOST:PORT [--hostname NAME] [--role ROLE] [--timeout 30s] [--log-level warn] [--tls-*]
//	fabric-agent cleanup [--state-dir /var/lib/fabric-agent] [--hostname NAME] [--dry-run] [--force]
//
// cleanup is for decommissioning: with the agent stopped, it removes what
// the agent created (routes of protocol 200, the inet fabric nftables table,
// marked links, the addresses it added, the cached config) and nothing else.
//
// plan takes one snapshot and prints the kernel changes applying it would
// make, one per line, without changing anything. --controller takes several
// controller replicas (comma-separated or repeated); the daemon moves to the
// next one when its session ends. The daemon runs LLDP on every
// port but the management interface and reports the neighbours to the
// controller when they change, and (--bgp, on by default) runs the embedded
// BGP speaker: underlay and machine sessions, EVPN type-5, received routes
// programmed into the kernel. SIGINT and SIGTERM stop the daemon; the kernel
// is left as it is and BGP peers keep our routes (graceful restart). SIGHUP
// re-reads --config: log level, LLDP interval and commit-confirm change
// live, other changes are logged as needing a restart, a bad file changes
// nothing. With --tls-ca the agent talks mutual TLS, identified by its
// client certificate; Prometheus metrics are on --metrics-listen.
//
// This package owns flags and process setup only; package agent does the work.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/metalfabric/fabric/agent"
	"github.com/metalfabric/fabric/bgp"
	"github.com/metalfabric/fabric/bgp/fib"
	"github.com/metalfabric/fabric/bgp/gobgp"
	"github.com/metalfabric/fabric/cmd/internal/flagfile"
	"github.com/metalfabric/fabric/fabric"
	"github.com/metalfabric/fabric/lldp"
	"github.com/metalfabric/fabric/metrics"
	"github.com/metalfabric/fabric/nft"
	"github.com/metalfabric/fabric/pki"
	"github.com/metalfabric/fabric/systemd"
)

const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  fabric-agent --role leaf|spine|firewall --controller HOST:PORT[,HOST:PORT...] [--hostname NAME] [--vlan-range MIN-MAX] [--log-level LEVEL]
               [--lldp=BOOL] [--lldp-interval D] [--mgmt-interface NAME] [--lldp-mgmt-addr IP,...]
               [--tls-ca FILE --tls-cert FILE --tls-key FILE] [--metrics-listen ADDR] [--commit-confirm D] [--config FILE]
  fabric-agent plan --controller HOST:PORT [--hostname NAME] [--role ROLE] [--timeout D] [--log-level LEVEL] [--tls-ca FILE --tls-cert FILE --tls-key FILE]
  fabric-agent cleanup [--state-dir DIR] [--hostname NAME] [--dry-run] [--force]
`)
}

// common holds the flags of both modes.
type common struct {
	role       string
	controller addrList
	hostname   string
	logLevel   string
	vlanRange  string
}

func (c *common) register(fs *flag.FlagSet, defaultLevel string) {
	fs.StringVar(&c.role, "role", "", "device role: leaf, spine or firewall")
	fs.Var(&c.controller, "controller", "controller gRPC address, HOST:PORT; several replicas comma-separated or with the flag repeated")
	fs.StringVar(&c.hostname, "hostname", "", "device hostname (default: the OS hostname)")
	fs.StringVar(&c.logLevel, "log-level", defaultLevel, "log level: debug, info, warn, error")
	def := fabric.DefaultVLANRange
	fs.StringVar(&c.vlanRange, "vlan-range", fmt.Sprintf("%d-%d", def.Min, def.Max), "VLANs this switch picks for L3VNIs, MIN-MAX")
}

func parseVLANRange(s string) (fabric.VLANRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	a, errA := strconv.ParseUint(lo, 10, 16)
	b, errB := strconv.ParseUint(hi, 10, 16)
	if !ok || errA != nil || errB != nil || a < 1 || b > 4094 || a > b {
		return fabric.VLANRange{}, fmt.Errorf("%q is not a VLAN range MIN-MAX within 1-4094", s)
	}
	return fabric.VLANRange{Min: uint16(a), Max: uint16(b)}, nil
}

// config checks the flags; roleRequired is false for plan.
func (c *common) config(roleRequired bool) (agent.Config, slog.Level, error) {
	if len(c.controller) == 0 {
		return agent.Config{}, 0, errors.New("--controller HOST:PORT is required")
	}
	role := agent.RoleLeaf
	if c.role != "" || roleRequired {
		r, err := agent.ParseRole(c.role)
		if err != nil {
			return agent.Config{}, 0, fmt.Errorf("--role: %w", err)
		}
		role = r
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return agent.Config{}, 0, fmt.Errorf("--log-level: %w", err)
	}
	vlans, err := parseVLANRange(c.vlanRange)
	if err != nil {
		return agent.Config{}, 0, fmt.Errorf("--vlan-range: %w", err)
	}
	return agent.Config{Controllers: c.controller, Hostname: c.hostname, Role: role, VLANRange: vlans}, level, nil
}

// addrList is a flag of addresses: comma-separated, and the flag may be
// repeated (a YAML config gives them comma-separated).
type addrList []string

func (l *addrList) String() string { return strings.Join(*l, ",") }

func (l *addrList) Set(s string) error {
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%q is not HOST:PORT: %w", a, err)
		}
		*l = append(*l, a)
	}
	return nil
}

// lldpFlags are the daemon's LLDP flags.
type lldpFlags struct {
	enabled  bool
	interval time.Duration
	mgmtIf   string
	mgmtAddr string
}

func (l *lldpFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&l.enabled, "lldp", true, "run LLDP on the ports and report the neighbours to the controller")
	fs.DurationVar(&l.interval, "lldp-interval", lldp.DefaultInterval, "LLDP transmit interval (the announced TTL is 4 times it)")
	fs.StringVar(&l.mgmtIf, "mgmt-interface", "eth0", "management interface: no LLDP on it (\"\" for none)")
	fs.StringVar(&l.mgmtAddr, "lldp-mgmt-addr", "", "management addresses to announce over LLDP, comma-separated IPs")
}

// option returns the agent option for the flags, nil when LLDP is off.
func (l *lldpFlags) option(role agent.Role) (agent.Option, error) {
	if !l.enabled {
		return nil, nil
	}
	if l.interval < time.Second || l.interval > time.Hour {
		return nil, fmt.Errorf("--lldp-interval: %v is not between 1s and 1h", l.interval)
	}
	var addrs []netip.Addr
	for _, s := range strings.Split(l.mgmtAddr, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("--lldp-mgmt-addr: %w", err)
		}
		addrs = append(addrs, a)
	}
	return agent.WithLLDP(agent.LLDPConfig{
		Interval:          l.interval,
		MgmtInterface:     l.mgmtIf,
		MgmtAddrs:         addrs,
		SystemDescription: "metalfabric fabric-agent (" + string(role) + ")",
	}), nil
}

// settings are the daemon's flags after parsing the command line and the
// config file.
type settings struct {
	c             common
	lf            lldpFlags
	bgp           bool
	bgpPort       int
	stateDir      string
	metricsListen string
	tls           tlsFlags
	commitConfirm time.Duration
	config        string
	// values are every flag's value, for telling what a reload changed.
	values map[string]string
}

// parseSettings parses args and then the --config file they name.
func parseSettings(args []string, stderr io.Writer) (*settings, error) {
	fs := flag.NewFlagSet("fabric-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { usage(stderr); fs.PrintDefaults() }
	s := &settings{}
	s.c.register(fs, "info")
	s.lf.register(fs)
	s.tls.register(fs, "the controller's")
	fs.BoolVar(&s.bgp, "bgp", true, "run the embedded BGP speaker and program received routes into the kernel")
	fs.IntVar(&s.bgpPort, "bgp-listen-port", 179, "TCP port the BGP speaker listens on (-1: none)")
	fs.StringVar(&s.stateDir, "state-dir", "/var/lib/fabric-agent", "where the last-known-good config is kept (\"\" for nowhere)")
	fs.StringVar(&s.metricsListen, "metrics-listen", metrics.DefaultAgentListen, "address of the Prometheus /metrics endpoint (\"\" for none)")
	fs.DurationVar(&s.commitConfirm, "commit-confirm", 0, "roll an applied config back to the previous one unless the controller is reached within this long after the apply (0: off)")
	fs.StringVar(&s.config, "config", "", "YAML file of these settings (keys are the flag names; flags given here win); SIGHUP re-reads it")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errPrinted{err}
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if s.config != "" {
		if err := flagfile.Load(fs, s.config); err != nil {
			return nil, err
		}
	}
	s.values = map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { s.values[f.Name] = f.Value.String() })
	return s, nil
}

// checked is what settings turn into once every value is valid.
type checked struct {
	cfg   agent.Config
	level slog.Level
	lldp  agent.Option // nil: LLDP off
	tls   *tls.Config  // nil: plaintext
}

func (s *settings) check() (checked, error) {
	cfg, level, err := s.c.config(true)
	if err != nil {
		return checked{}, err
	}
	lldpOpt, err := s.lf.option(cfg.Role)
	if err != nil {
		return checked{}, err
	}
	tlsCfg, err := s.tls.client(true)
	if err != nil {
		return checked{}, err
	}
	if s.commitConfirm < 0 {
		return checked{}, fmt.Errorf("--commit-confirm: %v is negative", s.commitConfirm)
	}
	return checked{cfg: cfg, level: level, lldp: lldpOpt, tls: tlsCfg}, nil
}

// tlsFlags are the client side of mutual TLS with the controller.
type tlsFlags struct{ cert, key, ca string }

func (t *tlsFlags) register(fs *flag.FlagSet, what string) {
	fs.StringVar(&t.cert, "tls-cert", "", "client certificate (PEM) for mutual TLS with the controller")
	fs.StringVar(&t.key, "tls-key", "", "the client certificate's private key (PEM)")
	fs.StringVar(&t.ca, "tls-ca", "", "CA certificates (PEM) to verify "+what+" certificate against; without it the connection is plaintext")
}

// client returns the TLS config, nil for plaintext; certRequired asks for
// a client certificate with the CA.
func (t *tlsFlags) client(certRequired bool) (*tls.Config, error) {
	if t.ca == "" {
		if t.cert != "" || t.key != "" {
			return nil, errors.New("--tls-cert and --tls-key need --tls-ca")
		}
		return nil, nil
	}
	if certRequired && (t.cert == "" || t.key == "") {
		return nil, errors.New("--tls-ca needs --tls-cert and --tls-key: the controller identifies the device by its certificate")
	}
	cfg, err := pki.ClientConfig(t.cert, t.key, t.ca)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return cfg, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "plan" {
		return runPlan(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "cleanup" {
		return runCleanup(ctx, args[1:], stdout, stderr)
	}
	// SIGHUP reloads the config file; caught from the start, so an early
	// one does not kill the daemon.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	set, err := parseSettings(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		if !errors.As(err, new(errPrinted)) {
			fmt.Fprintf(stderr, "fabric-agent: %v\n", err)
		}
		return exitUsage
	}
	chk, err := set.check()
	if err != nil {
		fmt.Fprintf(stderr, "fabric-agent: %v\n", err)
		return exitUsage
	}
	level := new(slog.LevelVar)
	level.Set(chk.level)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg := chk.cfg
	// systemd: READY after the first fully applied snapshot, STATUS after
	// each, the watchdog fed by the agent's session loop, STOPPING at the
	// end. All no-ops outside systemd.
	notify := systemd.NewNotifier()
	wd := notify.Watchdog(systemd.WithLogger(log))
	go wd.Run(ctx)
	var ready sync.Once
	var isReady atomic.Bool
	applied := func(version uint64, err error) {
		if err != nil {
			_ = notify.Status(fmt.Sprintf("version %d applied with errors: %v", version, err))
			return
		}
		ready.Do(func() {
			if err := notify.Ready(); err != nil {
				log.Warn("sd_notify", "err", err)
			}
			isReady.Store(true)
		})
		_ = notify.Status(fmt.Sprintf("version %d applied", version))
	}
	opts := []agent.Option{agent.WithLogger(log), agent.WithLifecycle(applied, wd.Alive, wd.Period()),
		agent.WithStateDir(set.stateDir), agent.WithCommitConfirm(set.commitConfirm)}
	if chk.tls != nil {
		opts = append(opts, agent.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(chk.tls))))
	} else {
		log.Warn("no --tls-ca: talking to the controller in plaintext, without authentication")
	}
	var agentMetrics *metrics.Agent
	if set.metricsListen != "" {
		reg := metrics.NewRegistry()
		agentMetrics = metrics.NewAgent(reg)
		ms, err := metrics.Listen(set.metricsListen, reg, log)
		if err != nil {
			fmt.Fprintf(stderr, "fabric-agent: --metrics-listen: %v\n", err)
			return exitError
		}
		go func() {
			if err := ms.Run(ctx); err != nil {
				log.Error("metrics server stopped", "err", err)
			}
		}()
		opts = append(opts, agent.WithObserver(agentMetrics))
	}
	if chk.lldp != nil {
		opts = append(opts, chk.lldp)
	}
	var routing *bgp.Reconciler
	if set.bgp {
		if err := agent.SetRouterSysctls(); err != nil {
			log.Warn("kernel settings for routing", "err", err)
		}
		prog, err := fib.New(fib.WithLogger(log))
		if err != nil {
			fmt.Fprintf(stderr, "fabric-agent: FIB programmer: %v\n", err)
			return exitError
		}
		defer prog.Close()
		// Routes of ours still in the kernel: the agent restarted and the
		// dataplane kept forwarding, so BGP restarts gracefully.
		restarting := false
		if _, err := prog.Apply(ctx, fib.Batch{}); err != nil {
			log.Warn("reading the kernel's routes", "err", err)
		} else if n := len(prog.Installed()); n > 0 {
			restarting = true
			log.Info("routes of a previous run in the kernel: graceful restart", "routes", n)
		}
		routing = bgp.NewReconciler(gobgp.New(gobgp.WithLogger(log)), bgp.ProgrammerFIB{P: prog},
			bgp.WithLogger(log), bgp.WithListenPort(int32(set.bgpPort)), bgp.WithRestarting(restarting))
		opts = append(opts, agent.WithRouting(routing))
	}
	if cfg.Role == agent.RoleFirewall {
		// The firewall role: policies in the nftables table inet fabric,
		// route leaking between tenant VRFs and the external VRF.
		fw, err := nft.New(nft.WithLogger(log))
		if err != nil {
			fmt.Fprintf(stderr, "fabric-agent: firewall: %v\n", err)
			return exitError
		}
		opts = append(opts, agent.WithFirewall(fw, nil))
	}
	a, err := agent.New(cfg, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "fabric-agent: %v\n", err)
		return exitError
	}
	if agentMetrics != nil {
		agentMetrics.SetSource(a)
	}
	rl := &reloader{args: args, cur: set, level: level, target: a, log: log}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if isReady.Load() {
					_ = notify.Reloading()
				}
				rl.reload()
				if isReady.Load() {
					_ = notify.Ready()
				}
			}
		}
	}()
	err = a.Run(ctx)
	_ = notify.Stopping()
	if routing != nil {
		// Graceful restart: peers keep our routes, the kernel keeps theirs.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := routing.Stop(sctx); err != nil {
			log.Warn("stopping BGP", "err", err)
		}
		cancel()
	}
	if err != nil {
		fmt.Fprintf(stderr, "fabric-agent: %v\n", err)
		return exitError
	}
	return exitOK
}

// errPrinted is an error the flag package has printed already.
type errPrinted struct{ error }

// liveTarget is what a reload changes in the running agent.
type liveTarget interface {
	SetLLDPInterval(d time.Duration) error
	SetCommitConfirm(d time.Duration)
}

// reloader re-reads the config file on SIGHUP. The settings that can change
// while the agent runs are applied; the others are logged as needing a
// restart. A file that does not parse or check is rejected as a whole and
// nothing changes.
type reloader struct {
	args   []string
	cur    *settings
	level  *slog.LevelVar
	target liveTarget
	log    *slog.Logger
}

// liveSettings are the flags a reload applies.
var liveSettings = map[string]bool{"log-level": true, "lldp-interval": true, "commit-confirm": true}

func (r *reloader) reload() {
	path := r.cur.config
	if path == "" {
		r.log.Warn("config reload: no --config file; nothing to re-read")
		return
	}
	next, err := parseSettings(r.args, io.Discard)
	var chk checked
	if err == nil {
		chk, err = next.check()
	}
	if err != nil {
		r.log.Error("config reload rejected; nothing changed", "config", path, "err", err)
		return
	}
	var changed, restart []string
	for _, name := range slices.Sorted(maps.Keys(next.values)) {
		from, to := r.cur.values[name], next.values[name]
		if from == to {
			continue
		}
		if !liveSettings[name] {
			restart = append(restart, name)
			r.log.Warn("config reload: setting changed, needs restart to take effect", "setting", name, "from", from, "to", to)
			continue
		}
		changed = append(changed, name)
	}
	for _, name := range changed {
		switch name {
		case "log-level":
			r.level.Set(chk.level)
		case "lldp-interval":
			if err := r.target.SetLLDPInterval(next.lf.interval); err != nil {
				r.log.Warn("config reload: lldp-interval not applied", "err", err)
			}
		case "commit-confirm":
			r.target.SetCommitConfirm(next.commitConfirm)
		}
		r.log.Info("config reload: setting applied", "setting", name, "from", r.cur.values[name], "to", next.values[name])
	}
	// What needs a restart keeps its running value, so a later reload
	// still reports it.
	for _, name := range restart {
		next.values[name] = r.cur.values[name]
	}
	r.cur = next
	r.log.Info("config reloaded", "config", path, "applied", changed, "needs_restart", restart)
}

func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fabric-agent plan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { usage(stderr); fs.PrintDefaults() }
	var c common
	c.register(fs, "warn")
	var tf tlsFlags
	tf.register(fs, "the controller's")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fabric-agent plan: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	cfg, level, err := c.config(false)
	if err != nil {
		fmt.Fprintf(stderr, "fabric-agent plan: %v\n", err)
		return exitUsage
	}
	tlsCfg, err := tf.client(true)
	if err != nil {
		fmt.Fprintf(stderr, "fabric-agent plan: %v\n", err)
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts := []agent.Option{agent.WithLogger(log)}
	if tlsCfg != nil {
		opts = append(opts, agent.WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg))))
	}
	a, err := agent.New(cfg, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "fabric-agent plan: %v\n", err)
		return exitError
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	version, changes, err := a.Plan(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "fabric-agent plan: %v\n", err)
		return exitError
	}
	for _, ch := range changes {
		fmt.Fprintln(stdout, ch.String())
	}
	fmt.Fprintf(stderr, "version %d: %d change(s)\n", version, len(changes))
	return exitOK
}

func runCleanup(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fabric-agent cleanup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: fabric-agent cleanup [--state-dir DIR] [--hostname NAME] [--dry-run] [--force]

Removes everything the agent created, for decommissioning the device: the
routes of protocol 200 and the EVPN neighbour/FDB entries of the FIB
programmer, the nftables table inet fabric, the links marked fabric-agent
and the addresses the agent added (ports are released from marked masters,
otherwise left as they are), and the cached last-known-good config, in that
order. Nothing the agent did not create is touched. IPv6 addresses the agent
added to ports are not recognisable once it stopped and are left.

Stop the agent first (systemctl stop fabric-agent): a running agent would put
it all back. cleanup refuses to run while another fabric-agent process
exists, unless --force. Exits 1 if any step failed (the others still run).

`)
		fs.PrintDefaults()
	}
	stateDir := fs.String("state-dir", "/var/lib/fabric-agent", "where the agent keeps the last-known-good config (\"\": leave it)")
	hostname := fs.String("hostname", "", "device hostname the cached config is named after (default: the OS hostname)")
	dryRun := fs.Bool("dry-run", false, "print what would be removed, change nothing")
	force := fs.Bool("force", false, "run even though another fabric-agent process runs")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fabric-agent cleanup: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if pids := otherAgents(); len(pids) > 0 && !*force && !*dryRun {
		fmt.Fprintf(stderr, "fabric-agent cleanup: fabric-agent is running (pid %s); stop it first (or --force)\n", strings.Join(pids, ", "))
		return exitError
	}
	err := agent.Cleanup(ctx, agent.CleanupConfig{
		OpenFIB: func() (agent.CleanupFIB, error) {
			p, err := fib.New()
			if err != nil {
				return nil, err
			}
			context.AfterFunc(ctx, func() { p.Close() })
			return p, nil
		},
		OpenFirewall:  func() (agent.CleanupFirewall, error) { return nft.New() },
		FirewallTable: nft.DefaultTable,
		OpenKernel:    func() (fabric.Kernel, error) { return fabric.OpenKernel() },
		StateDir:      *stateDir,
		Hostname:      *hostname,
		DryRun:        *dryRun,
		Out:           stdout,
	})
	if err != nil {
		fmt.Fprintf(stderr, "fabric-agent cleanup: %v\n", err)
		return exitError
	}
	return exitOK
}

// otherAgents returns the pids of the processes named fabric-agent other
// than this one (none where there is no /proc).
func otherAgents() []string {
	self := strconv.Itoa(os.Getpid())
	entries, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range entries {
		pid := e.Name()
		if pid == self || strings.Trim(pid, "0123456789") != "" {
			continue
		}
		if b, err := os.ReadFile("/proc/" + pid + "/comm"); err == nil && strings.TrimSpace(string(b)) == "fabric-agent" {
			pids = append(pids, pid)
		}
	}
	return pids
}
