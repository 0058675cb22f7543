// Package vmtest lets a test package that needs a full kernel (VRF, 802.1Q,
// bridge VLAN filtering) run under plain `go test`: its TestMain calls Main,
// which runs the tests directly where the kernel can, and otherwise re-runs
// the same test binary, with the same flags, inside the qemu VM of package vm.
// Output is the test binary's own, so `go test -json` and gotestsum see the
// guest's results as if they ran on the host.
//
// It owns only that re-execution; it must not change the tests' behaviour.
package vmtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalfabric/fabric/integration/vm"
)

// Timeout bounds one VM run (boot, tests, power-off).
const Timeout = 26 * time.Minute

// Main runs m where the kernel has VRFs and returns the exit code for
// os.Exit. Without root it runs m directly, so the tests can skip with
// their own reason.
func Main(m *testing.M) int {
	if os.Geteuid() != 0 || vm.InGuest() || vm.HostSupportsVRF() || os.Getenv("FABRIC_NO_VM") != "" {
		return m.Run()
	}
	code, err := rerunInVM()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: running the tests in the full-kernel VM: %v\n", err)
		return 1
	}
	return code
}

func rerunInVM() (int, error) {
	cache, err := vm.DefaultCacheDir()
	if err != nil {
		return 0, err
	}
	// The test binary lives in a temporary build dir under /tmp, which the
	// guest covers with its own tmpfs: copy it next to the VM cache.
	dir := filepath.Join(cache, "testbin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("creating %s: %w", dir, err)
	}
	bin, err := copyExecutable(os.Args[0], dir)
	if err != nil {
		return 0, err
	}
	defer os.Remove(bin)
	argv := []string{shellQuote(bin)}
	for _, a := range os.Args[1:] {
		if dropFlag(a) {
			continue
		}
		argv = append(argv, shellQuote(a))
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	return vm.Run(ctx, vm.Config{
		Command:  strings.Join(argv, " "),
		Env:      []string{"FABRIC_IN_VM_TEST=1"},
		CacheDir: cache,
		Stdout:   os.Stdout,
		Timeout:  Timeout,
	})
}

// dropFlag reports flags that name host-only files under /tmp (go test's
// cache log and coverage dir), which the guest cannot write.
func dropFlag(a string) bool {
	for _, f := range []string{"-test.testlogfile=", "-test.gocoverdir="} {
		if strings.HasPrefix(a, f) {
			return true
		}
	}
	return false
}

func copyExecutable(src, dir string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("opening test binary: %w", err)
	}
	defer in.Close()
	out, err := os.CreateTemp(dir, filepath.Base(src)+"-*")
	if err != nil {
		return "", fmt.Errorf("copying test binary: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(out.Name())
		return "", fmt.Errorf("copying test binary: %w", err)
	}
	if err := out.Chmod(0o755); err != nil {
		out.Close()
		os.Remove(out.Name())
		return "", fmt.Errorf("copying test binary: %w", err)
	}
	return out.Name(), out.Close()
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
