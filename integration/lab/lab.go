package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Default timings.
const (
	// DefaultStopTimeout is how long processes get between SIGTERM and SIGKILL.
	DefaultStopTimeout = 5 * time.Second
	// killWait bounds the wait for processes to vanish after SIGKILL.
	killWait = 3 * time.Second
	// teardownTimeout bounds the cleanup after a failed or cancelled Up.
	teardownTimeout = 30 * time.Second
	pollInterval    = 20 * time.Millisecond
)

// Option configures Up and Attach.
type Option func(*options)

type options struct {
	labDir      string
	log         *slog.Logger
	stopTimeout time.Duration
}

// WithLabDir sets the lab directory (default "clab-<lab>" next to the topology file).
func WithLabDir(dir string) Option { return func(o *options) { o.labDir = dir } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithStopTimeout sets the grace period between SIGTERM and SIGKILL when
// stopping nodes and tearing down (default DefaultStopTimeout).
func WithStopTimeout(d time.Duration) Option { return func(o *options) { o.stopTimeout = d } }

// Lab is a running lab.
type Lab struct {
	topo        *Topology
	labDir      string
	baseLog     *slog.Logger
	log         *slog.Logger // baseLog with the lab name
	stopTimeout time.Duration

	mu    sync.Mutex
	procs map[string]*proc // node -> its cmd, when started by this Lab

	loggedDst sync.Map // bind destinations already reported as created
}

// proc is a node's cmd started by this process.
type proc struct {
	pid  int
	done chan struct{} // closed once the process is reaped
	err  error         // Wait's result, valid after done
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Attach returns a handle to the lab of t without creating anything, e.g.
// to Exec into or inspect a lab brought up by another process.
func Attach(t *Topology, opts ...Option) (*Lab, error) {
	o := options{log: slog.Default(), stopTimeout: DefaultStopTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if t == nil {
		return nil, errors.New("lab: nil topology")
	}
	dir := o.labDir
	if dir == "" {
		dir = DefaultLabDir(t)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving lab dir %s: %w", dir, err)
	}
	return &Lab{
		topo:        t,
		labDir:      abs,
		baseLog:     o.log,
		log:         o.log.With("lab", t.Name),
		stopTimeout: o.stopTimeout,
		procs:       map[string]*proc{},
	}, nil
}

// Up realises t: it tears down an old lab of the same name, creates the
// namespaces, the management network and the links, starts every node's cmd
// and then runs every node's exec list. If any step fails, or ctx is
// cancelled while Up runs, everything created is torn down again and the
// error names the step. ctx only bounds Up: the lab keeps running after Up
// returns, until Down.
func Up(ctx context.Context, t *Topology, opts ...Option) (*Lab, error) {
	start := time.Now()
	l, err := Attach(t, opts...)
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("lab needs iproute2: %w", err)
	}
	// Checks that need no kernel change come first: a bad bind must not
	// cost a running lab of the same name.
	if err := l.prepare(); err != nil {
		return nil, err
	}
	if err := Down(ctx, t.Name, WithLogger(l.baseLog), WithStopTimeout(l.stopTimeout)); err != nil {
		return nil, fmt.Errorf("tearing down the previous lab %s: %w", t.Name, err)
	}
	if err := l.up(ctx); err != nil {
		l.log.Error("lab up failed, tearing down", "err", err)
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
		defer cancel()
		if derr := l.Down(tctx); derr != nil {
			err = errors.Join(err, fmt.Errorf("tearing down after failure: %w", derr))
		}
		return nil, err
	}
	l.log.Info("lab up", "nodes", len(t.Nodes), "links", len(t.Links), "dir", l.labDir, "took", time.Since(start).Round(time.Millisecond))
	return l, nil
}

// prepare creates the lab and node dirs and checks every bind source.
func (l *Lab) prepare() error {
	t := l.topo
	home, _ := os.UserHomeDir()
	if err := os.MkdirAll(l.labDir, 0o755); err != nil {
		return fmt.Errorf("creating lab dir: %w", err)
	}
	for _, n := range t.Nodes {
		if err := os.MkdirAll(l.nodeDir(n.Name), 0o755); err != nil {
			return fmt.Errorf("creating node dir %s: %w", n.Name, err)
		}
	}
	for _, n := range t.Nodes {
		for _, b := range resolveBinds(t, n, l.labDir, home) {
			_, err := os.Stat(b.Src)
			switch {
			case err == nil:
			case b.Src == l.topologyDataPath():
				// written before any cmd starts, as containerlab does
			case errors.Is(err, os.ErrNotExist) && strings.HasPrefix(b.Src, l.labDir+string(filepath.Separator)):
				// A missing source inside the lab dir (__clabNodeDir__/state)
				// is the lab's own scratch space: create it.
				l.log.Info("creating missing bind source in the lab dir", "node", n.Name, "path", b.Src)
				if err := os.MkdirAll(b.Src, 0o755); err != nil {
					return fmt.Errorf("node %s: bind %s: creating source: %w", n.Name, b, err)
				}
			default:
				return fmt.Errorf("node %s: bind %s: source: %w", n.Name, b, err)
			}
		}
	}
	return nil
}

func (l *Lab) topologyDataPath() string { return filepath.Join(l.labDir, "topology-data.json") }

func (l *Lab) up(ctx context.Context) error {
	t := l.topo
	if err := writeState(state{Name: t.Name, LabDir: l.labDir, Topology: t.Path, Namespaces: namespaces(t)}); err != nil {
		return err
	}
	for _, s := range planUp(t) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("lab up cancelled: %w", err)
		}
		if err := runIP(ctx, s.args...); err != nil {
			return fmt.Errorf("%s: %w", s.desc, err)
		}
		l.log.Debug("lab step", "step", s.desc)
	}
	for _, n := range t.Nodes {
		l.log.Info("node up", "node", n.Name, "netns", NetNSName(t.Name, n.Name), "mgmt_ipv4", n.MgmtIPv4)
	}
	if err := l.writeTopologyData(); err != nil {
		return err
	}
	// cmds after all namespaces and links exist, so a daemon sees its ports.
	for _, n := range t.Nodes {
		if n.Cmd == "" {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("lab up cancelled: %w", err)
		}
		if err := l.startNode(n, true); err != nil {
			return err
		}
	}
	for _, n := range t.Nodes {
		for _, e := range n.Exec {
			argv, err := splitWords(e)
			if err != nil {
				return fmt.Errorf("node %s: exec %q: %w", n.Name, e, err)
			}
			l.log.Info("exec", "node", n.Name, "cmd", e)
			if out, err := l.Exec(ctx, n.Name, argv...); err != nil {
				return fmt.Errorf("%w\n%s", err, strings.TrimSpace(string(out)))
			}
		}
	}
	// A cmd that failed at once (not found, bad flags) fails Up.
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range t.Nodes {
		p := l.procs[n.Name]
		if p == nil || p.running() || p.err == nil {
			continue
		}
		return fmt.Errorf("node %s: cmd %q exited: %w\n%s", n.Name, n.Cmd, p.err, tail(l.NodeLog(n.Name), 20))
	}
	return nil
}

// Down stops the lab's processes and deletes its namespaces.
func (l *Lab) Down(ctx context.Context) error {
	l.mu.Lock()
	procs := slices.Collect(maps.Values(l.procs))
	l.mu.Unlock()
	// Signal our own cmds by process group first: one started a moment ago
	// may not have entered its namespace yet, so a namespace scan misses it.
	for _, p := range procs {
		if p.running() {
			_ = signalGroup(p.pid, false)
		}
	}
	err := Down(ctx, l.topo.Name, WithLogger(l.baseLog), WithStopTimeout(l.stopTimeout))
	for _, p := range procs {
		select {
		case <-p.done:
			continue
		case <-time.After(l.stopTimeout):
		}
		_ = signalGroup(p.pid, true)
		select {
		case <-p.done:
		case <-time.After(killWait):
			err = errors.Join(err, fmt.Errorf("process %d did not exit", p.pid))
		}
	}
	return err
}

// Down tears down the lab called labName, whoever started it and whatever
// state it is in: every process in one of its namespaces gets SIGTERM, then
// SIGKILL after the stop timeout, then the namespaces are deleted (their
// veths and the mgmt bridge go with them). A lab that does not exist is not
// an error. Only WithLogger and WithStopTimeout apply.
func Down(ctx context.Context, labName string, opts ...Option) error {
	o := options{log: slog.Default(), stopTimeout: DefaultStopTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if !nameRE.MatchString(labName) {
		return fmt.Errorf("invalid lab name %q", labName)
	}
	log := o.log.With("lab", labName)
	start := time.Now()
	nss, err := labNamespaces(labName)
	if err != nil {
		return err
	}
	if len(nss) == 0 {
		return removeState(labName)
	}
	log.Info("tearing down lab", "namespaces", len(nss))
	var errs []error
	if err := killNetNS(ctx, log, nss, o.stopTimeout); err != nil {
		errs = append(errs, err)
	}
	for _, ns := range nss {
		if !netNSExists(ns) {
			continue
		}
		if err := runIP(context.WithoutCancel(ctx), "netns", "del", ns); err != nil {
			errs = append(errs, fmt.Errorf("deleting namespace %s: %w", ns, err))
		}
	}
	if len(errs) == 0 {
		if err := removeState(labName); err != nil {
			errs = append(errs, err)
		}
	}
	log.Info("lab down", "took", time.Since(start).Round(time.Millisecond))
	return errors.Join(errs...)
}

// labNamespaces returns the existing namespaces of a lab: those its state
// file lists, plus any "clab-<lab>-*" namespace that no other lab's state
// file claims (lab "a" must not take "clab-a-b-x" of lab "a-b").
func labNamespaces(lab string) ([]string, error) {
	all, err := listNetNS()
	if err != nil {
		return nil, err
	}
	own, claimed, err := stateClaims(lab)
	if err != nil {
		return nil, err
	}
	prefix := NetNSName(lab, "")
	var out []string
	for _, ns := range all {
		if own[ns] || (strings.HasPrefix(ns, prefix) && !claimed[ns]) {
			out = append(out, ns)
		}
	}
	return out, nil
}

// killNetNS terminates every process in the namespaces: SIGTERM, wait up to
// grace, SIGKILL, wait.
func killNetNS(ctx context.Context, log *slog.Logger, nss []string, grace time.Duration) error {
	termed := map[int]bool{}
	// remaining: processes in the namespaces, plus signalled ones that are
	// still exiting (they leave their namespace before they are zombies).
	remaining := func() ([]int, error) {
		m, err := pidsInNetNS(nss)
		if err != nil {
			return nil, err
		}
		var pids []int
		for _, p := range m {
			pids = append(pids, p...)
		}
		for pid := range termed {
			if pidAlive(pid) && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
		slices.Sort(pids)
		return pids, nil
	}
	// SIGTERM every process found, including ones that enter a namespace
	// while we wait (a process being started right now).
	term := func() ([]int, error) {
		pids, err := remaining()
		if err != nil {
			return nil, err
		}
		var fresh []int
		for _, pid := range pids {
			if !termed[pid] {
				termed[pid] = true
				fresh = append(fresh, pid)
			}
		}
		if len(fresh) > 0 {
			log.Info("stopping processes", "pids", fresh)
		}
		for _, pid := range fresh {
			if err := signalPID(pid, false); err != nil {
				return nil, fmt.Errorf("sending SIGTERM to %d: %w", pid, err)
			}
		}
		return pids, nil
	}
	pids, err := term()
	if err != nil || len(pids) == 0 {
		return err
	}
	pids, err = waitUntil(ctx, grace, term)
	if err != nil || len(pids) == 0 {
		return err
	}
	log.Warn("processes ignored SIGTERM, killing", "pids", pids)
	for range 10 { // a process may fork while we kill
		for _, pid := range pids {
			if err := signalPID(pid, true); err != nil {
				return fmt.Errorf("sending SIGKILL to %d: %w", pid, err)
			}
		}
		pids, err = waitUntil(context.WithoutCancel(ctx), killWait, remaining)
		if err != nil || len(pids) == 0 {
			return err
		}
	}
	return fmt.Errorf("processes %v survived SIGKILL", pids)
}

// waitUntil polls check until it returns no pids, d passes or ctx ends, and
// returns what is left.
func waitUntil(ctx context.Context, d time.Duration, check func() ([]int, error)) ([]int, error) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		pids, err := check()
		if err != nil || len(pids) == 0 {
			return pids, err
		}
		select {
		case <-ctx.Done():
			return pids, nil
		case <-deadline.C:
			return pids, nil
		case <-tick.C:
		}
	}
}

// NetNS returns the namespace name of node.
func (l *Lab) NetNS(node string) string { return NetNSName(l.topo.Name, node) }

// MgmtNetNS returns the namespace holding the management bridge; a process
// started there (e.g. a controller) reaches every node's mgmt address.
func (l *Lab) MgmtNetNS() string { return MgmtNetNSName(l.topo.Name) }

// MgmtIP returns node's eth0 address (invalid for an unknown node).
func (l *Lab) MgmtIP(node string) netip.Addr {
	n, _ := l.topo.Node(node)
	return n.MgmtIPv4
}

// Topology returns the lab's topology.
func (l *Lab) Topology() *Topology { return l.topo }

// Dir returns the lab directory.
func (l *Lab) Dir() string { return l.labDir }

func (l *Lab) nodeDir(node string) string { return filepath.Join(l.labDir, node) }

// NodeLog returns the path of node's console.log (its cmd's output).
func (l *Lab) NodeLog(node string) string { return filepath.Join(l.nodeDir(node), "console.log") }

func (l *Lab) pidFile(node string) string { return filepath.Join(l.nodeDir(node), "cmd.pid") }

// Command returns an unstarted command that runs argv in node's namespace
// with its binds (in a private mount namespace), in the node dir, with the
// caller's environment plus the node's env. The caller sets
// Stdin/Stdout/Stderr (like "docker exec"); cancelling ctx kills it.
func (l *Lab) Command(ctx context.Context, node string, argv ...string) (*exec.Cmd, error) {
	n, ok := l.topo.Node(node)
	if !ok {
		return nil, fmt.Errorf("unknown node %q", node)
	}
	if len(argv) == 0 {
		return nil, errors.New("empty command")
	}
	if !netNSExists(l.NetNS(node)) {
		return nil, fmt.Errorf("node %s: namespace %s does not exist (is lab %s up?)", node, l.NetNS(node), l.topo.Name)
	}
	full := nodeArgv(l.NetNS(node), l.binds(n), argv)
	c := exec.CommandContext(ctx, full[0], full[1:]...)
	c.Env = nodeEnv(os.Environ(), n.Env)
	c.Dir = l.nodeDir(node)
	return c, nil
}

// binds resolves node's binds and logs the destinations that will be created.
func (l *Lab) binds(n Node) []Bind {
	home, _ := os.UserHomeDir()
	bs := resolveBinds(l.topo, n, l.labDir, home)
	for _, b := range bs {
		if _, err := os.Lstat(b.Dst); errors.Is(err, os.ErrNotExist) {
			if _, seen := l.loggedDst.LoadOrStore(b.Dst, true); seen {
				continue
			}
			l.log.Info("creating missing bind destination", "node", n.Name, "path", b.Dst)
		}
	}
	return bs
}

// Exec runs argv in node's namespace with its binds and env and returns the
// combined output. Processes it leaves behind (daemons) keep running.
func (l *Lab) Exec(ctx context.Context, node string, argv ...string) ([]byte, error) {
	c, err := l.Command(ctx, node, argv...)
	if err != nil {
		return nil, err
	}
	// A file, not a pipe: a daemon that inherits it must not make us wait.
	f, err := os.CreateTemp("", "fabric-lab-exec-*")
	if err != nil {
		return nil, fmt.Errorf("creating exec output file: %w", err)
	}
	defer f.Close()
	_ = os.Remove(f.Name())
	c.Stdout, c.Stderr = f, f
	runErr := c.Run()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("reading exec output: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading exec output: %w", err)
	}
	if runErr != nil {
		return out, fmt.Errorf("node %s: exec %q: %w", node, strings.Join(argv, " "), runErr)
	}
	return out, nil
}

// StartNode starts node's cmd again (after StopNode or after it exited).
func (l *Lab) StartNode(ctx context.Context, node string) error {
	n, ok := l.topo.Node(node)
	if !ok {
		return fmt.Errorf("unknown node %q", node)
	}
	if n.Cmd == "" {
		return fmt.Errorf("node %s has no cmd", node)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !netNSExists(l.NetNS(node)) {
		return fmt.Errorf("node %s: namespace %s does not exist (lab not up?)", node, l.NetNS(node))
	}
	return l.startNode(n, false)
}

func (l *Lab) startNode(n Node, truncate bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.procs[n.Name]; p != nil && p.running() {
		return fmt.Errorf("node %s: cmd already running (pid %d)", n.Name, p.pid)
	}
	if pid, ok := l.filePID(n.Name); ok {
		return fmt.Errorf("node %s: cmd already running (pid %d)", n.Name, pid)
	}
	argv, err := splitWords(n.Cmd)
	if err != nil {
		return fmt.Errorf("node %s: cmd: %w", n.Name, err)
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if truncate {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(l.NodeLog(n.Name), flags, 0o644)
	if err != nil {
		return fmt.Errorf("node %s: opening console log: %w", n.Name, err)
	}
	fmt.Fprintf(f, "--- fabric-lab %s: starting %s\n", time.Now().Format(time.RFC3339), n.Cmd)
	full := nodeArgv(l.NetNS(n.Name), l.binds(n), argv)
	c := exec.Command(full[0], full[1:]...)
	c.Env = nodeEnv(os.Environ(), n.Env)
	c.Dir = l.nodeDir(n.Name)
	c.Stdout, c.Stderr = f, f
	c.SysProcAttr = detachedAttr()
	if err := c.Start(); err != nil {
		f.Close()
		return fmt.Errorf("node %s: starting cmd: %w", n.Name, err)
	}
	f.Close() // the child has its own copy
	p := &proc{pid: c.Process.Pid, done: make(chan struct{})}
	l.procs[n.Name] = p
	if err := os.WriteFile(l.pidFile(n.Name), []byte(strconv.Itoa(p.pid)+"\n"), 0o644); err != nil {
		l.log.Warn("writing pid file", "node", n.Name, "err", err)
	}
	log := l.log.With("node", n.Name, "pid", p.pid)
	log.Info("node cmd started", "cmd", n.Cmd, "log", l.NodeLog(n.Name))
	go func() {
		p.err = c.Wait()
		close(p.done)
		log.Info("node cmd exited", "err", p.err)
	}()
	return nil
}

// filePID returns the pid in node's pid file if that process still runs in
// the node's namespace (a lab brought up by another process).
func (l *Lab) filePID(node string) (int, bool) {
	b, err := os.ReadFile(l.pidFile(node))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 || !pidInNetNS(pid, l.NetNS(node)) {
		return 0, false
	}
	return pid, true
}

// StopNode stops node's cmd: SIGTERM to its process group, SIGKILL after the
// stop timeout. The namespace, its links and processes started by exec stay.
// Stopping a node whose cmd is not running is not an error.
func (l *Lab) StopNode(ctx context.Context, node string) error { return l.stopNode(ctx, node, false) }

// KillNode kills node's cmd with SIGKILL at once (a crash, for fault
// tests). The namespace, its links and processes started by exec stay.
func (l *Lab) KillNode(ctx context.Context, node string) error { return l.stopNode(ctx, node, true) }

func (l *Lab) stopNode(ctx context.Context, node string, kill bool) error {
	if _, ok := l.topo.Node(node); !ok {
		return fmt.Errorf("unknown node %q", node)
	}
	l.mu.Lock()
	p := l.procs[node]
	l.mu.Unlock()
	var pgid int
	if p != nil && p.running() {
		pgid = p.pid
	} else {
		p = nil
		pid, ok := l.filePID(node)
		if !ok {
			l.log.Debug("node cmd not running", "node", node)
			return nil
		}
		pgid = pid
	}
	log := l.log.With("node", node, "pid", pgid)
	log.Info("stopping node cmd")
	// The leader counts until reaped (by us) or gone (someone else's child).
	left := func() ([]int, error) {
		pids := groupMembers(pgid)
		if p != nil && p.running() && !slices.Contains(pids, pgid) {
			pids = append(pids, pgid)
		}
		return pids, nil
	}
	if err := signalGroup(pgid, kill); err != nil {
		return fmt.Errorf("stopping node %s: %w", node, err)
	}
	wait := l.stopTimeout
	if kill {
		wait = killWait
	}
	pids, _ := waitUntil(ctx, wait, left)
	if len(pids) > 0 {
		log.Warn("node cmd ignored SIGTERM, killing", "pids", pids)
		if err := signalGroup(pgid, true); err != nil {
			return fmt.Errorf("killing node %s: %w", node, err)
		}
		if pids, _ = waitUntil(context.WithoutCancel(ctx), killWait, left); len(pids) > 0 {
			return fmt.Errorf("stopping node %s: processes %v survived SIGKILL", node, pids)
		}
	}
	_ = os.Remove(l.pidFile(node))
	log.Info("node cmd stopped")
	return nil
}

// NodeStatus is what Status reports per node.
type NodeStatus struct {
	Node       string
	NetNS      string
	MgmtIPv4   netip.Addr
	NetNSUp    bool  // the namespace exists
	CmdPID     int   // 0 when the cmd is not running
	Processes  []int // every process in the namespace
	HasCommand bool
}

// Status reports the namespaces and processes of every node.
func (l *Lab) Status() ([]NodeStatus, error) {
	var nss []string
	for _, n := range l.topo.Nodes {
		nss = append(nss, l.NetNS(n.Name))
	}
	pids, err := pidsInNetNS(nss)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []NodeStatus
	for _, n := range l.topo.Nodes {
		s := NodeStatus{
			Node: n.Name, NetNS: l.NetNS(n.Name), MgmtIPv4: n.MgmtIPv4,
			NetNSUp: netNSExists(l.NetNS(n.Name)), Processes: pids[l.NetNS(n.Name)], HasCommand: n.Cmd != "",
		}
		if p := l.procs[n.Name]; p != nil && p.running() {
			s.CmdPID = p.pid
		} else if pid, ok := l.filePID(n.Name); ok {
			s.CmdPID = pid
		}
		out = append(out, s)
	}
	return out, nil
}

// runIP runs "ip args..." and returns its stderr as the error.
func runIP(ctx context.Context, args ...string) error {
	c := exec.CommandContext(ctx, "ip", args...)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	if err := c.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("ip %s: %s: %w", strings.Join(args, " "), msg, err)
		}
		return fmt.Errorf("ip %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// topologyData is written to <labdir>/topology-data.json: what was realised,
// including auto-assigned mgmt addresses.
type topologyData struct {
	Name     string         `json:"name"`
	Topology string         `json:"topology,omitempty"`
	MgmtNS   string         `json:"mgmt-netns"`
	Subnet   string         `json:"mgmt-ipv4-subnet"`
	Gateway  string         `json:"mgmt-ipv4-gw"`
	Nodes    []nodeData     `json:"nodes"`
	Links    []linkDataJSON `json:"links"`
}

type nodeData struct {
	Name       string `json:"name"`
	NetNS      string `json:"netns"`
	MgmtIPv4   string `json:"mgmt-ipv4"`
	Image      string `json:"image,omitempty"`
	Cmd        string `json:"cmd,omitempty"`
	ConsoleLog string `json:"console-log"`
}

type linkDataJSON struct {
	A   string `json:"a"`
	B   string `json:"b"`
	MTU int    `json:"mtu"`
}

func (l *Lab) writeTopologyData() error {
	t := l.topo
	d := topologyData{
		Name: t.Name, Topology: t.Path, MgmtNS: l.MgmtNetNS(),
		Subnet: t.Mgmt.IPv4Subnet.String(), Gateway: t.Mgmt.IPv4Gateway.String(),
		Nodes: []nodeData{}, Links: []linkDataJSON{},
	}
	for _, n := range t.Nodes {
		d.Nodes = append(d.Nodes, nodeData{Name: n.Name, NetNS: l.NetNS(n.Name), MgmtIPv4: n.MgmtIPv4.String(),
			Image: n.Image, Cmd: n.Cmd, ConsoleLog: l.NodeLog(n.Name)})
	}
	for _, k := range t.Links {
		d.Links = append(d.Links, linkDataJSON{A: k.A.String(), B: k.B.String(), MTU: k.MTU})
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding topology data: %w", err)
	}
	if err := os.WriteFile(l.topologyDataPath(), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing topology data: %w", err)
	}
	return nil
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
