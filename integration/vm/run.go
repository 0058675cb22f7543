package vm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Config describes one command run in the VM.
type Config struct {
	// Command is a shell command (run with /bin/sh -c) in the guest. It may
	// be empty only when Interactive is set.
	Command string
	// Dir is the working directory in the guest; default the caller's
	// working directory. The guest sees the host's paths.
	Dir string
	// Env holds extra KEY=VALUE variables for the command.
	Env []string
	// MemoryMB is the guest's memory; default 2048.
	MemoryMB int
	// CPUs is the number of guest CPUs; default 2.
	CPUs int
	// Timeout bounds the whole run, boot included; zero means none.
	Timeout time.Duration
	// CacheDir holds the kernel and per-run files; default DefaultCacheDir.
	// It must be on the host's root filesystem shared into the guest.
	CacheDir string
	// Stdout receives the command's output, stdout and stderr merged;
	// default os.Stdout. In the guest they are a virtio serial port, not a
	// terminal (when Interactive: the serial console).
	Stdout io.Writer
	// Interactive attaches the serial console to the caller's terminal and,
	// after Command (or instead of it, when it is empty), starts an
	// interactive bash; the VM powers off when that shell exits.
	Interactive bool
	// Modules are modprobed in the guest before the command; default
	// DefaultModules. Failures are reported on the console, not fatal.
	Modules []string
}

// DefaultModules are the modules loaded in the guest unless Config.Modules
// says otherwise: the features the host kernel lacks, and the ones tests use.
var DefaultModules = []string{"vrf", "8021q", "bridge", "vxlan", "nf_tables", "veth", "dummy"}

// guestPath is the PATH of the guest command.
const guestPath = "/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// guestHostname is the guest's hostname.
const guestHostname = "fabric-vm"

// Marker lines the guest prints around the command; the nonce keeps the
// command's output from forging them.
const (
	startMarker = "FABRIC-VM-START-"
	exitMarker  = "FABRIC-VM-EXIT-"
)

// afterExitGrace is how long qemu may take to power off after the exit
// marker before it is killed.
const afterExitGrace = 15 * time.Second

// ErrNoExitMarker is returned (wrapped) by Run when the guest stopped
// without reporting the command's exit status.
var ErrNoExitMarker = errors.New("guest stopped without an exit marker")

// DefaultCacheDir returns $FABRIC_CACHE, or .cache/vm in the repository
// holding the working directory (the nearest directory with a go.mod).
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("FABRIC_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the cache dir: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if exists(filepath.Join(dir, "go.mod")) {
			return filepath.Join(dir, ".cache", "vm"), nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("finding the cache dir: no go.mod above %s; set FABRIC_CACHE", wd)
		}
	}
}

func (c Config) withDefaults() (Config, error) {
	if c.Command == "" && !c.Interactive {
		return c, errors.New("no command")
	}
	if c.Dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return c, fmt.Errorf("getting working dir: %w", err)
		}
		c.Dir = wd
	}
	if !filepath.IsAbs(c.Dir) {
		return c, fmt.Errorf("dir %q is not absolute", c.Dir)
	}
	if c.MemoryMB <= 0 {
		c.MemoryMB = 2048
	}
	if c.CPUs <= 0 {
		c.CPUs = 2
	}
	if c.CacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return c, err
		}
		c.CacheDir = d
	}
	d, err := filepath.Abs(c.CacheDir)
	if err != nil {
		return c, fmt.Errorf("resolving cache dir: %w", err)
	}
	c.CacheDir = d
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Modules == nil {
		c.Modules = DefaultModules
	}
	for _, kv := range c.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || !envName.MatchString(k) {
			return c, fmt.Errorf("env %q is not KEY=VALUE", kv)
		}
	}
	for _, m := range c.Modules {
		if !moduleName.MatchString(m) {
			return c, fmt.Errorf("bad module name %q", m)
		}
	}
	return c, nil
}

var (
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	moduleName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// Run boots the VM, runs cfg.Command in it and returns the command's exit
// status. An error means the status is unknown: the VM could not start, the
// context was cancelled or timed out, or the guest died without reporting.
// qemu is killed before Run returns in every case.
func Run(ctx context.Context, cfg Config) (exitCode int, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return -1, fmt.Errorf("vm config: %w", err)
	}
	if runtime.GOOS != "linux" {
		return -1, errNotLinux
	}
	begin := time.Now()
	k, err := EnsureKernel(ctx, cfg.CacheDir)
	if err != nil {
		return -1, err
	}
	tools, err := ensureTools(ctx, toolQemu, toolBusybox)
	if err != nil {
		return -1, fmt.Errorf("checking tools: %w", err)
	}

	runsDir := filepath.Join(cfg.CacheDir, "runs")
	if err := os.MkdirAll(runsDir, 0o755); err != nil {
		return -1, fmt.Errorf("creating run dir: %w", err)
	}
	cleanStaleRuns(runsDir)
	runDir, err := os.MkdirTemp(runsDir, "run-")
	if err != nil {
		return -1, fmt.Errorf("creating run dir: %w", err)
	}
	defer os.RemoveAll(runDir)
	if strings.ContainsAny(runDir, " \t\n'\"\\") {
		return -1, fmt.Errorf("cache dir %q: the path must not contain spaces or quotes (it goes on the kernel command line)", cfg.CacheDir)
	}
	nonce, err := newNonce()
	if err != nil {
		return -1, fmt.Errorf("creating run nonce: %w", err)
	}
	sp := scriptParams{
		Busybox:     tools[toolBusybox.name],
		Nonce:       nonce,
		Command:     cfg.Command,
		Dir:         cfg.Dir,
		Env:         cfg.Env,
		Modules:     cfg.Modules,
		Interactive: cfg.Interactive,
		Tmpfs:       tmpfsMounts([]string{runDir, cfg.Dir, cfg.CacheDir}, cfg.Command, cfg.Env),
		Term:        os.Getenv("TERM"),
	}
	if cfg.Interactive {
		sp.Rows, sp.Cols = terminalSize()
	}
	script := filepath.Join(runDir, "init.sh")
	if err := os.WriteFile(script, []byte(guestScript(sp)), 0o755); err != nil {
		return -1, fmt.Errorf("writing guest script: %w", err)
	}

	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
	}
	// qemuCtx is cancelled to kill qemu; also after the exit marker when it
	// does not power off in time.
	qemuCtx, killQemu := context.WithCancel(ctx)
	defer killQemu()

	// The command's output: the serial console when interactive, else the
	// virtio port, which is hundreds of times faster than the emulated UART
	// (about 40 KB/s under TCG) and is not a terminal.
	console := newConsoleFilter(cfg.Stdout, nonce)
	var serial io.Writer = console
	var port *outputPort
	if !cfg.Interactive {
		var serialTail tailBuffer
		serialTail.max = 30
		serial = &serialTail
		console.extraTail = &serialTail
		port, err = listenPort(console)
		if err != nil {
			return -1, fmt.Errorf("creating output port: %w", err)
		}
		defer port.close()
	}
	go func() {
		select {
		case <-console.exited:
			select {
			case <-time.After(afterExitGrace):
				slog.Warn("vm: guest did not power off after the command; killing qemu")
				killQemu()
			case <-qemuCtx.Done():
			}
		case <-qemuCtx.Done():
		}
	}()
	var stderr tailBuffer
	stderr.max = 20

	cmd := exec.CommandContext(qemuCtx, tools[toolQemu.name], qemuArgs(k, cfg, script, port.socketPath())...)
	cmd.Stdout = serial
	cmd.Stderr = &stderr
	if cfg.Interactive {
		cmd.Stdin = os.Stdin
	}
	// SIGTERM lets qemu restore the terminal; SIGKILL follows if it lingers.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = qemuSysProcAttr()

	slog.Debug("vm: starting qemu", "args", strings.Join(cmd.Args, " "))
	waitErr := startAndWait(cmd)
	port.drain()
	exitCode, sawExit := console.result()
	elapsed := time.Since(begin).Round(time.Millisecond)
	if sawExit {
		slog.Debug("vm: run finished", "exit", exitCode, "elapsed", elapsed)
		return exitCode, nil
	}
	tail := console.tails()
	if e := strings.TrimSpace(stderr.String()); e != "" {
		tail += "\nqemu: " + e
	}
	if ctx.Err() != nil {
		return -1, fmt.Errorf("vm run stopped after %s: %w; last output:\n%s", elapsed, ctx.Err(), tail)
	}
	how := "qemu exited"
	if waitErr != nil {
		how = "qemu: " + waitErr.Error()
	}
	return -1, fmt.Errorf("vm run: %w (%s after %s); last output:\n%s", ErrNoExitMarker, how, elapsed, tail)
}

// startAndWait runs cmd on a locked OS thread: qemu's parent-death signal
// is tied to the thread that started it, and Go may retire other threads.
func startAndWait(cmd *exec.Cmd) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			done <- fmt.Errorf("starting qemu: %w", err)
			return
		}
		done <- cmd.Wait()
	}()
	return <-done
}

// cleanStaleRuns removes run directories left by killed callers.
func cleanStaleRuns(runsDir string) {
	entries, err := os.ReadDir(runsDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > 24*time.Hour {
			os.RemoveAll(filepath.Join(runsDir, e.Name()))
		}
	}
}

func newNonce() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// qemuArgs returns qemu's command line for booting k and running script.
// With a non-empty outSock the guest gets the virtio serial port
// "fabric.out", connected to that unix socket.
func qemuArgs(k Kernel, cfg Config, script, outSock string) []string {
	serial := "stdio"
	if cfg.Interactive {
		// The monitor mux gives the user Ctrl-A x to kill a stuck guest.
		serial = "mon:stdio"
	}
	args := []string{
		"-accel", "tcg,thread=multi", // nested KVM hangs; TCG boots in seconds
		"-cpu", "max",
		"-smp", strconv.Itoa(cfg.CPUs),
		"-m", strconv.Itoa(cfg.MemoryMB),
		"-nodefaults", "-no-user-config",
		"-nographic",
		"-serial", serial,
		"-nic", "none",
		"-no-reboot",
		"-kernel", k.boot(),
		"-initrd", k.Initrd,
		"-append", kernelCmdline(script),
		"-virtfs", "local,path=/,mount_tag=" + tagRoot + ",security_model=none,readonly=on,multidevs=remap",
		"-virtfs", "local,path=" + qemuEscape(k.ModulesDir) + ",mount_tag=" + tagModules + ",security_model=none,readonly=on",
	}
	if outSock != "" {
		args = append(args,
			"-device", "virtio-serial-pci,id=vser",
			"-chardev", "socket,id=out,path="+qemuEscape(outSock),
			"-device", "virtserialport,bus=vser.0,chardev=out,name="+portName,
		)
	}
	return args
}

// qemuEscape escapes a value inside a qemu option list (commas double).
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// kernelCmdline boots quietly on the serial console; panic=-1 with
// -no-reboot makes a guest panic end qemu.
func kernelCmdline(script string) string {
	return "console=ttyS0 quiet loglevel=0 panic=-1 rdinit=/init " + cmdlineGuest + " " + cmdlineScript + script
}

// scriptParams are the inputs of the stage-2 guest script.
type scriptParams struct {
	Busybox     string // absolute host path of a static busybox
	Nonce       string
	Command     string
	Dir         string
	Env         []string
	Modules     []string
	Interactive bool     // serial console attached to a terminal; else output via the virtio port
	Tmpfs       []string // directories to mount a fresh tmpfs on
	Term        string   // TERM for the guest; "" means linux
	Rows, Cols  int      // terminal size for interactive shells; 0 if unknown
}

// guestFlagFile is created in the guest so processes can tell they run there.
const guestFlagFile = "/run/fabric-vm-guest"

// guestScript returns the stage-2 script that the initramfs switches root
// into. It runs as PID 1 on the overlay of the host root: it mounts the API
// filesystems, loads modules, runs the command with its output on the
// virtio port (or the console, when interactive), prints the exit marker
// and powers off.
func guestScript(p scriptParams) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("#!%s sh", p.Busybox)
	w("# fabric-vm stage 2, generated for one run.")
	w("bb=%s", shellQuote(p.Busybox))
	w(`$bb mount -t proc proc /proc`)
	w(`$bb mount -t sysfs sysfs /sys`)
	w(`$bb mount -t devtmpfs devtmpfs /dev`)
	w(`$bb mkdir -p /dev/pts /dev/shm`)
	w(`$bb mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts`)
	w(`[ -e /dev/ptmx ] || $bb ln -s pts/ptmx /dev/ptmx`)
	w(`$bb mount -t tmpfs -o mode=1777 tmpfs /dev/shm`)
	for _, d := range p.Tmpfs {
		mode := "0755"
		if d == "/tmp" {
			mode = "1777"
		}
		w(`$bb mount -t tmpfs -o mode=%s tmpfs %s`, mode, shellQuote(d))
	}
	w(`$bb mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null`)
	w(`$bb mkdir -p /run/lock`)
	w(`$bb touch %s`, guestFlagFile)
	w(`$bb hostname %s`, guestHostname)
	w(`$bb ip link set lo up`)
	if p.Interactive {
		// Kernel messages would interleave with the shell.
		w(`$bb dmesg -n 1`)
	} else {
		// From here on everything goes to the virtio port; fd 3 stays open
		// for the host's acknowledgement of the exit marker.
		w(`port=`)
		w(`for d in /sys/class/virtio-ports/*; do`)
		w(`	[ "$($bb cat "$d/name" 2>/dev/null)" = %s ] && port=/dev/${d##*/}`, portName)
		w(`done`)
		w(`[ -n "$port" ] || { echo "fabric-vm: virtio port %s not found"; $bb poweroff -f; }`, portName)
		w(`exec 3<>"$port" >&3 2>&3`)
	}
	w(`echo %s`, startMarker+p.Nonce)
	w(`export PATH=%s HOME=/root FABRIC_VM_GUEST=1`, guestPath)
	term := p.Term
	if term == "" {
		term = "linux"
	}
	w(`export TERM=%s`, shellQuote(term))
	if len(p.Modules) > 0 {
		w(`modprobe -a %s || echo "fabric-vm: loading modules failed"`, strings.Join(p.Modules, " "))
	}
	for _, kv := range p.Env {
		k, v, _ := strings.Cut(kv, "=")
		w(`export %s=%s`, k, shellQuote(v))
	}
	if p.Interactive && p.Rows > 0 && p.Cols > 0 {
		w(`$bb stty -F /dev/ttyS0 rows %d cols %d`, p.Rows, p.Cols)
	}
	w(`rc=0`)
	w(`if cd %s; then`, shellQuote(p.Dir))
	if p.Command != "" {
		redir := "</dev/null 3>&-"
		if p.Interactive {
			redir = "</dev/console"
		}
		w(`	/bin/sh -c %s %s`, shellQuote(p.Command), redir)
		w(`	rc=$?`)
	}
	if p.Interactive {
		if p.Command != "" {
			w(`	echo "fabric-vm: command exited with status $rc; interactive shell follows (exit to power off)"`)
		}
		// setsid -c makes the serial port bash's controlling terminal, so
		// job control and Ctrl-C work.
		w(`	$bb setsid -c /bin/bash -i </dev/ttyS0 >/dev/ttyS0 2>&1`)
		if p.Command == "" {
			w(`	rc=$?`)
		}
	}
	w(`else`)
	w(`	rc=1`)
	w(`fi`)
	w(`echo %s:$rc`, exitMarker+p.Nonce)
	if !p.Interactive {
		w(`$bb timeout 10 $bb head -n 1 <&3 >/dev/null`)
	}
	w(`$bb poweroff -f`)
	return b.String()
}

// shellQuote quotes s for POSIX sh.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+=:,@%", r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// absPath finds absolute paths in shell text.
var absPath = regexp.MustCompile(`(?:^|[\s'"=:;|&<>(])(/[^\s'";|&<>():]*)`)

// tmpfsMounts returns the directories of /tmp and /run that can get a fresh
// tmpfs in the guest: the ones that hold none of keep and none of the
// absolute paths mentioned in command or env values. A tmpfs over a
// directory holding the script, the working directory or the command's
// binaries would hide them; such a directory stays the (writable) overlay
// of the host's.
func tmpfsMounts(keep []string, command string, env []string) []string {
	paths := append([]string(nil), keep...)
	texts := []string{command}
	for _, kv := range env {
		_, v, _ := strings.Cut(kv, "=")
		texts = append(texts, v)
	}
	for _, t := range texts {
		for _, m := range absPath.FindAllStringSubmatch(t, -1) {
			paths = append(paths, m[1])
		}
	}
	var out []string
	for _, d := range []string{"/tmp", "/run"} {
		free := true
		for _, p := range paths {
			if p == d || strings.HasPrefix(p, d+"/") {
				free = false
				break
			}
		}
		if free {
			out = append(out, d)
		}
	}
	return out
}

// consoleFilter turns the guest's output stream into the command's output:
// it drops everything up to the start marker line (on the serial console:
// firmware and kernel messages), passes the command's output through,
// parses the exit marker and drops what follows. It keeps a tail of the raw
// stream for error reports.
type consoleFilter struct {
	out   io.Writer
	start []byte
	exit  []byte
	// exited is closed when the exit marker has been seen.
	exited chan struct{}
	// onExit, if set, runs (under the filter's lock) when the exit marker
	// has been seen.
	onExit func()
	// extraTail is the serial console's tail when the output comes through
	// the virtio port; it goes into error reports too.
	extraTail *tailBuffer

	mu       sync.Mutex
	state    int // filterBoot, filterRun, filterDone
	held     []byte
	exitCode int
	tail     tailBuffer
	writeErr error
}

const (
	filterBoot = iota
	filterRun
	filterDone
)

func newConsoleFilter(out io.Writer, nonce string) *consoleFilter {
	return &consoleFilter{
		out:    out,
		start:  []byte(startMarker + nonce),
		exit:   []byte(exitMarker + nonce + ":"),
		exited: make(chan struct{}),
		tail:   tailBuffer{max: 30},
	}
}

// Write never fails, so qemu's output keeps draining even when out does.
func (f *consoleFilter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tail.Write(p)
	f.held = append(f.held, p...)
	for f.step() {
	}
	return len(p), nil
}

// step consumes what it can of f.held and reports whether to call it again.
func (f *consoleFilter) step() bool {
	switch f.state {
	case filterBoot:
		i := bytes.Index(f.held, f.start)
		if i < 0 {
			f.held = append(f.held[:0], keepPartial(f.held, f.start)...)
			return false
		}
		nl := bytes.IndexByte(f.held[i:], '\n')
		if nl < 0 {
			f.held = append(f.held[:0], f.held[i:]...)
			return false
		}
		f.held = append(f.held[:0], f.held[i+nl+1:]...)
		f.state = filterRun
		return true
	case filterRun:
		i := bytes.Index(f.held, f.exit)
		if i < 0 {
			k := len(f.held) - len(keepPartial(f.held, f.exit))
			f.emit(f.held[:k])
			f.held = append(f.held[:0], f.held[k:]...)
			return false
		}
		f.emit(f.held[:i])
		f.held = append(f.held[:0], f.held[i:]...)
		nl := bytes.IndexByte(f.held, '\n')
		if nl < 0 {
			return false
		}
		code, err := strconv.Atoi(strings.TrimSpace(string(f.held[len(f.exit):nl])))
		if err != nil {
			code = -1
		}
		f.exitCode = code
		f.state = filterDone
		f.held = nil
		close(f.exited)
		if f.onExit != nil {
			f.onExit()
		}
		return false
	default:
		f.held = nil
		return false
	}
}

func (f *consoleFilter) emit(b []byte) {
	if len(b) == 0 || f.writeErr != nil {
		return
	}
	if _, err := f.out.Write(b); err != nil {
		f.writeErr = err
		slog.Warn("vm: writing guest output", "err", err)
	}
}

// result returns the exit code from the marker and whether it was seen.
func (f *consoleFilter) result() (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.exitCode, f.state == filterDone
}

// tails returns the last lines of the serial console and of the output.
func (f *consoleFilter) tails() string {
	out := strings.TrimSpace(f.tail.String())
	if f.extraTail == nil {
		return out
	}
	serial := strings.TrimSpace(f.extraTail.String())
	return "serial console:\n" + serial + "\ncommand output:\n" + out
}

// keepPartial returns the longest suffix of b that is a proper prefix of
// marker: bytes that may turn out to start the marker in the next write.
func keepPartial(b, marker []byte) []byte {
	n := min(len(b), len(marker)-1)
	for ; n > 0; n-- {
		if bytes.Equal(marker[:n], b[len(b)-n:]) {
			return b[len(b)-n:]
		}
	}
	return nil
}

// outputPort carries the command's output from the guest's virtio serial
// port "fabric.out" to a consoleFilter. qemu connects to a unix socket in a
// private host temp dir; after the exit marker the host answers "ok", which
// the guest waits for before powering off so no output is lost in flight.
type outputPort struct {
	dir    string
	ln     *net.UnixListener
	done   chan struct{}
	mu     sync.Mutex
	conn   *net.UnixConn
	filter *consoleFilter
}

// portName is the name of the virtio serial port in the guest.
const portName = "fabric.out"

func listenPort(filter *consoleFilter) (*outputPort, error) {
	dir, err := os.MkdirTemp("", "fabric-vm-")
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "out.sock"), Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p := &outputPort{dir: dir, ln: ln, done: make(chan struct{}), filter: filter}
	filter.onExit = p.ack
	go p.serve()
	return p, nil
}

func (p *outputPort) serve() {
	defer close(p.done)
	conn, err := p.ln.AcceptUnix()
	if err != nil {
		return
	}
	p.mu.Lock()
	p.conn = conn
	p.mu.Unlock()
	if _, err := io.Copy(p.filter, conn); err != nil {
		slog.Debug("vm: reading output port", "err", err)
	}
}

// ack tells the guest its output arrived (called with the exit marker).
func (p *outputPort) ack() {
	p.mu.Lock()
	conn := p.conn
	p.mu.Unlock()
	if conn == nil {
		return
	}
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("ok\n")); err != nil {
		slog.Debug("vm: acknowledging exit marker", "err", err)
	}
}

// socketPath is the socket qemu connects to; "" without a port.
func (p *outputPort) socketPath() string {
	if p == nil {
		return ""
	}
	return p.ln.Addr().String()
}

// drain waits, after qemu exited, until the output read so far is
// processed.
func (p *outputPort) drain() {
	if p == nil {
		return
	}
	p.ln.Close() // in case qemu never connected
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		slog.Warn("vm: output port did not close after qemu exited")
	}
}

func (p *outputPort) close() {
	if p == nil {
		return
	}
	p.ln.Close()
	p.mu.Lock()
	if p.conn != nil {
		p.conn.Close()
	}
	p.mu.Unlock()
	os.RemoveAll(p.dir)
}

// tailBuffer keeps the last max lines written to it, without CRs.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	lines []string
	cur   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range p {
		switch c {
		case '\r':
		case '\n':
			t.lines = append(t.lines, string(t.cur))
			t.cur = t.cur[:0]
			if len(t.lines) > t.max {
				t.lines = t.lines[len(t.lines)-t.max:]
			}
		default:
			t.cur = append(t.cur, c)
		}
	}
	return len(p), nil
}

// String returns the kept lines without terminal escape sequences.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.Join(t.lines, "\n")
	if len(t.cur) > 0 {
		s += "\n" + string(t.cur)
	}
	return ansiEscape.ReplaceAllString(s, "")
}

// ansiEscape matches the escape sequences firmware writes to the console.
var ansiEscape = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])`)
