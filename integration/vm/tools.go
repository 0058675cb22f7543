package vm

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
)

// tool is a host binary the package needs and the Debian package providing it.
type tool struct {
	name string // binary name looked up in PATH
	pkg  string // Debian package to install when missing
	// static requires a statically linked binary (it is copied into the
	// initramfs, which has no dynamic loader).
	static bool
}

var (
	toolBusybox = tool{name: "busybox", pkg: "busybox-static", static: true}
	toolDepmod  = tool{name: "depmod", pkg: "kmod"}
	toolModprob = tool{name: "modprobe", pkg: "kmod"}
	toolQemu    = tool{name: "qemu-system-x86_64", pkg: "qemu-system-x86"}
	toolDpkg    = tool{name: "dpkg", pkg: "dpkg"}
	toolXz      = tool{name: "xz", pkg: "xz-utils"}
)

// extraPath is searched after PATH: tools in sbin directories are often
// missing from a non-login root PATH.
var extraPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// lookTool returns the absolute path of t, or an error when it is missing or,
// for a static tool, dynamically linked.
func lookTool(t tool) (string, error) {
	p, err := exec.LookPath(t.name)
	if err != nil {
		for _, dir := range extraPath {
			cand := dir + "/" + t.name
			if fi, serr := os.Stat(cand); serr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				p, err = cand, nil
				break
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("%s not found", t.name)
	}
	if t.static {
		static, err := isStatic(p)
		if err != nil {
			return "", fmt.Errorf("checking %s: %w", p, err)
		}
		if !static {
			return "", fmt.Errorf("%s is dynamically linked", p)
		}
	}
	return p, nil
}

// isStatic reports whether the ELF binary at path has no program interpreter.
func isStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

// ensureTools returns the paths of tools, installing the Debian packages of
// missing ones with apt-get (as root only).
func ensureTools(ctx context.Context, tools ...tool) (map[string]string, error) {
	paths := make(map[string]string, len(tools))
	var missing []string
	seen := map[string]bool{}
	for _, t := range tools {
		p, err := lookTool(t)
		if err != nil {
			slog.Debug("vm: tool missing", "tool", t.name, "err", err)
			if !seen[t.pkg] {
				seen[t.pkg] = true
				missing = append(missing, t.pkg)
			}
			continue
		}
		paths[t.name] = p
	}
	if len(missing) == 0 {
		return paths, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("missing tools; install the Debian packages %s (as root)", strings.Join(missing, " "))
	}
	slog.Info("vm: installing packages", "packages", strings.Join(missing, " "))
	args := append([]string{"install", "-y", "--no-install-recommends"}, missing...)
	if err := aptGet(ctx, "", args...); err != nil {
		slog.Info("vm: apt-get install failed, updating package lists", "err", err)
		if err := aptGet(ctx, "", "update"); err != nil {
			return nil, fmt.Errorf("apt-get update: %w", err)
		}
		if err := aptGet(ctx, "", args...); err != nil {
			return nil, fmt.Errorf("installing %s: %w", strings.Join(missing, " "), err)
		}
	}
	for _, t := range tools {
		if _, ok := paths[t.name]; ok {
			continue
		}
		p, err := lookTool(t)
		if err != nil {
			return nil, fmt.Errorf("after installing %s: %w", t.pkg, err)
		}
		paths[t.name] = p
	}
	return paths, nil
}

// aptGet runs apt-get non-interactively in dir (the current directory when
// empty); its output goes into the error on failure.
func aptGet(ctx context.Context, dir string, args ...string) error {
	_, err := runTool(ctx, dir, []string{"DEBIAN_FRONTEND=noninteractive"}, "apt-get", args...)
	return err
}

// runTool runs name with args and returns its stdout. On failure the error
// holds the command and the tail of its stderr.
func runTool(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	slog.Debug("vm: exec", "cmd", name+" "+strings.Join(args, " "), "dir", dir)
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(lastLines(stderr.String(), 10))
		if msg == "" {
			msg = strings.TrimSpace(lastLines(stdout.String(), 10))
		}
		if msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return stdout.Bytes(), nil
}

// lastLines returns at most the last n lines of s.
func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var errNotLinux = errors.New("fabric-vm needs a Linux host")
