package vm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// vmCacheDir skips the test unless a VM can be booted here, and returns the
// cache dir to use (shared with `make`, so the kernel is prepared once).
func vmCacheDir(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	if InGuest() {
		t.Skip("already inside the fabric VM")
	}
	if os.Geteuid() != 0 {
		t.Skip("booting the VM needs root (qemu shares / read-only; apt-get installs what is missing)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	dir, err := DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	if _, err := EnsureKernel(ctx, dir); err != nil {
		t.Fatalf("EnsureKernel: %v", err)
	}
	t.Logf("EnsureKernel took %s", time.Since(start).Round(time.Millisecond))
	return dir
}

// runVM runs cfg with a deadline and returns the exit code and output.
func runVM(t *testing.T, cfg Config) (int, string, error) {
	t.Helper()
	var out bytes.Buffer
	cfg.Stdout = &out
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Minute
	}
	start := time.Now()
	code, err := Run(context.Background(), cfg)
	t.Logf("VM run of %q: exit %d in %s", cfg.Command, code, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { noQemuChildren(t) })
	return code, out.String(), err
}

// noQemuChildren fails the test if a qemu started by this process is alive.
func noQemuChildren(t *testing.T) {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	me := strconv.Itoa(os.Getpid())
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) > 1 && fields[1] == me && bytes.Contains(b[:i], []byte("qemu")) {
			t.Errorf("qemu process left behind: %s", strings.TrimSpace(string(b[:i+1])))
		}
	}
}

func TestRunVRF(t *testing.T) {
	cache := vmCacheDir(t)
	code, out, err := runVM(t, Config{
		Command:  "ip link add vrf9 type vrf table 9 && ip -d link show vrf9",
		CacheDir: cache,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if code != 0 {
		t.Errorf("exit code %d, want 0; output:\n%s", code, out)
	}
	if !strings.Contains(out, "vrf9:") || !strings.Contains(out, "vrf table 9") {
		t.Errorf("output lacks the VRF:\n%s", out)
	}
	if strings.Contains(out, "FABRIC-VM-") {
		t.Errorf("output contains a marker:\n%s", out)
	}
}

func TestRunExitCode(t *testing.T) {
	cache := vmCacheDir(t)
	code, out, err := runVM(t, Config{
		Command:  `echo "to stdout"; echo "to stderr" >&2; exit 7`,
		CacheDir: cache,
		Env:      []string{"GREETING=it's me"},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if code != 7 {
		t.Errorf("exit code %d, want 7; output:\n%s", code, out)
	}
	if want := "to stdout\nto stderr\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
}

func TestRunGuestDies(t *testing.T) {
	cache := vmCacheDir(t)
	code, _, err := runVM(t, Config{
		Command:  "echo before; echo c >/proc/sysrq-trigger",
		CacheDir: cache,
	})
	if !errors.Is(err, ErrNoExitMarker) {
		t.Fatalf("Run = %d, %v; want ErrNoExitMarker", code, err)
	}
	if !strings.Contains(err.Error(), "sysrq: Trigger a crash") {
		t.Errorf("error lacks the guest's last console lines: %v", err)
	}
}

// TestRunGuestSide runs this test binary (under /tmp when built by go test)
// in the VM, where TestGuestSide checks InGuest and HostSupportsVRF.
func TestRunGuestSide(t *testing.T) {
	cache := vmCacheDir(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	code, out, err := runVM(t, Config{
		Command:  shellQuote(exe) + " -test.run '^TestGuestSide$' -test.v",
		CacheDir: cache,
		Env:      []string{"FABRIC_VM_TEST_GUEST=1"},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if code != 0 || !strings.Contains(out, "--- PASS: TestGuestSide") {
		t.Errorf("guest side failed (exit %d):\n%s", code, out)
	}
}

func TestGuestSide(t *testing.T) {
	if os.Getenv("FABRIC_VM_TEST_GUEST") == "" {
		t.Skip("runs inside the VM, started by TestRunGuestSide")
	}
	if !InGuest() {
		t.Error("InGuest() = false inside the VM")
	}
	if !HostSupportsVRF() {
		t.Error("HostSupportsVRF() = false on the full kernel")
	}
	if _, err := os.Stat(guestFlagFile); err != nil {
		t.Errorf("guest flag file: %v", err)
	}
}

func TestRunTimeoutKillsQemu(t *testing.T) {
	cache := vmCacheDir(t)
	start := time.Now()
	_, _, err := runVM(t, Config{Command: "sleep 600", CacheDir: cache, Timeout: 2 * time.Second})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run error %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run returned %s after a 2s timeout", d)
	}
	noQemuChildren(t)
}

func TestHostSupportsVRF(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("probing needs root")
	}
	t.Logf("HostSupportsVRF() = %v (in guest: %v)", HostSupportsVRF(), InGuest())
	if _, err := os.Stat("/sys/class/net/vrfprobe"); err == nil {
		t.Error("the probe device leaked into the host's namespace")
	}
}
