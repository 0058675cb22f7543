package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// Kernel is an unpacked Debian kernel with its modules and an initramfs,
// ready to boot.
type Kernel struct {
	Version string // kernel release, e.g. "6.1.0-56-amd64"
	Dir     string // CacheDir/Version
	Vmlinuz string // the kernel image (bzImage) from the package
	// Vmlinux is the uncompressed kernel, booted instead of Vmlinuz because
	// it starts five seconds faster under TCG; empty if it could not be
	// extracted.
	Vmlinux    string
	Initrd     string // the initramfs (busybox + 9p/virtio/overlay modules)
	ModulesDir string // the directory holding Version/, shared as the guest's /lib/modules
}

// kernelMetaPackage is Debian's package that depends on the current kernel.
const kernelMetaPackage = "linux-image-amd64"

// currentFile in the cache names the kernel version EnsureKernel prepared
// last; later calls use it without asking apt.
const currentFile = "current"

func kernelAt(cacheDir, kver string) Kernel {
	dir := filepath.Join(cacheDir, kver)
	root := filepath.Join(dir, "root")
	return Kernel{
		Version: kver,
		Dir:     dir,
		Vmlinuz: filepath.Join(root, "boot", "vmlinuz-"+kver),
		Vmlinux: filepath.Join(dir, "vmlinux"),
		// The format is part of the name so that binaries built from
		// different versions of this package can share a cache.
		Initrd:     filepath.Join(dir, "initrd-v"+initrdFormat+".img"),
		ModulesDir: filepath.Join(root, "lib", "modules"),
	}
}

// unpacked reports whether the kernel and its module index are in place.
func (k Kernel) unpacked() bool {
	return exists(k.Vmlinuz) && exists(filepath.Join(k.ModulesDir, k.Version, "modules.dep"))
}

// ready reports whether k can boot: unpacked, with an initramfs of the
// current format (written atomically, so it is complete if it exists).
func (k Kernel) ready() bool {
	return k.unpacked() && exists(k.Initrd)
}

func exists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

// EnsureKernel prepares the kernel that Debian's linux-image-amd64
// metapackage points to in cacheDir: it downloads the package with apt-get,
// unpacks it with dpkg, indexes the modules with depmod and builds the
// initramfs. Every step is cached and written so that an interrupted run
// never leaves a partial result that looks finished; once a kernel is
// prepared, later calls return it without any work (delete cacheDir to pick
// up a newer Debian kernel). Concurrent callers are serialised with a lock
// file in cacheDir.
func EnsureKernel(ctx context.Context, cacheDir string) (Kernel, error) {
	cacheDir, err := filepath.Abs(cacheDir)
	if err != nil {
		return Kernel{}, fmt.Errorf("resolving cache dir: %w", err)
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return Kernel{}, fmt.Errorf("creating cache dir: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cacheDir, ".lock"))
	if err != nil {
		return Kernel{}, fmt.Errorf("locking cache dir: %w", err)
	}
	defer unlock()

	var current Kernel
	if b, err := os.ReadFile(filepath.Join(cacheDir, currentFile)); err == nil {
		if current = kernelAt(cacheDir, strings.TrimSpace(string(b))); current.Version != "" && current.ready() {
			return current.withVmlinux(), nil
		}
	}

	tools, err := ensureTools(ctx, toolDpkg, toolDepmod, toolModprob, toolBusybox, toolXz)
	if err != nil {
		return Kernel{}, fmt.Errorf("checking tools: %w", err)
	}
	var k Kernel
	pkg, err := kernelPackage(ctx)
	switch {
	case err == nil:
		k = kernelAt(cacheDir, strings.TrimPrefix(pkg, "linux-image-"))
	case current.Version != "" && current.unpacked():
		// Offline, with an unpacked kernel whose initramfs is of an older
		// format: rebuild that instead of failing.
		slog.Warn("vm: kernel lookup failed, using the cached kernel", "kernel", current.Version, "err", err)
		k = current
	default:
		return Kernel{}, fmt.Errorf("finding the kernel package: %w", err)
	}
	log := slog.With("kernel", k.Version)
	if !k.unpacked() {
		deb, err := downloadDeb(ctx, cacheDir, pkg)
		if err != nil {
			return Kernel{}, fmt.Errorf("downloading %s: %w", pkg, err)
		}
		log.Info("vm: unpacking kernel", "deb", deb)
		if err := unpackKernel(ctx, tools, deb, k); err != nil {
			return Kernel{}, fmt.Errorf("unpacking kernel deb: %w", err)
		}
		if err := os.Remove(deb); err != nil {
			log.Warn("vm: removing kernel deb", "err", err)
		}
	}
	if !exists(k.Vmlinux) {
		if err := extractVmlinux(ctx, k.Vmlinuz, k.Vmlinux); err != nil {
			// Not fatal: the bzImage boots too, only slower.
			log.Warn("vm: extracting vmlinux failed, booting the compressed kernel", "err", err)
		}
	}
	if !k.ready() {
		log.Info("vm: building initramfs", "initrd", k.Initrd)
		if err := buildInitrd(ctx, tools, filepath.Join(k.Dir, "root"), k.Version, k.Initrd); err != nil {
			return Kernel{}, fmt.Errorf("building initramfs: %w", err)
		}
	}
	if err := writeFileAtomic(filepath.Join(cacheDir, currentFile), []byte(k.Version+"\n"), 0o644); err != nil {
		return Kernel{}, fmt.Errorf("recording current kernel: %w", err)
	}
	return k.withVmlinux(), nil
}

// withVmlinux clears Vmlinux when it was not extracted.
func (k Kernel) withVmlinux() Kernel {
	if !exists(k.Vmlinux) {
		k.Vmlinux = ""
	}
	return k
}

// kernelPackage returns the linux-image-* package linux-image-amd64 depends
// on, updating apt's package lists once if the first lookup fails.
func kernelPackage(ctx context.Context) (string, error) {
	out, err := runTool(ctx, "", nil, "apt-cache", "depends", kernelMetaPackage)
	if err == nil {
		if pkg, perr := parseDepends(string(out)); perr == nil {
			return pkg, nil
		} else {
			err = perr
		}
	}
	slog.Info("vm: kernel lookup failed, running apt-get update", "err", err)
	if uerr := aptGet(ctx, "", "update"); uerr != nil {
		return "", fmt.Errorf("apt-get update after %v: %w", err, uerr)
	}
	out, err = runTool(ctx, "", nil, "apt-cache", "depends", kernelMetaPackage)
	if err != nil {
		return "", err
	}
	return parseDepends(string(out))
}

// parseDepends extracts the kernel image package from the output of
// `apt-cache depends linux-image-amd64`.
func parseDepends(out string) (string, error) {
	for _, line := range strings.Split(out, "\n") {
		dep, ok := strings.CutPrefix(strings.TrimSpace(line), "Depends:")
		if !ok {
			continue
		}
		dep = strings.TrimSpace(dep)
		if strings.HasPrefix(dep, "linux-image-") && !strings.ContainsAny(dep, " <>/") {
			return dep, nil
		}
	}
	return "", errors.New("no linux-image-* dependency in apt-cache output")
}

// downloadDeb fetches pkg's .deb into cacheDir, reusing a finished download.
// apt-get runs in a temporary directory so a partial file never lands in
// cacheDir under the final name.
func downloadDeb(ctx context.Context, cacheDir, pkg string) (string, error) {
	if m, _ := filepath.Glob(filepath.Join(cacheDir, pkg+"_*.deb")); len(m) > 0 {
		return m[0], nil
	}
	tmp, err := os.MkdirTemp(cacheDir, ".download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	// apt drops privileges to _apt for downloading when it can reach the
	// directory; it warns and downloads as root otherwise.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	slog.Info("vm: downloading kernel package", "package", pkg)
	if err := aptGet(ctx, tmp, "download", pkg); err != nil {
		slog.Info("vm: download failed, running apt-get update", "err", err)
		if uerr := aptGet(ctx, "", "update"); uerr != nil {
			return "", fmt.Errorf("apt-get update after %v: %w", err, uerr)
		}
		if err := aptGet(ctx, tmp, "download", pkg); err != nil {
			return "", err
		}
	}
	m, _ := filepath.Glob(filepath.Join(tmp, pkg+"_*.deb"))
	if len(m) != 1 {
		return "", fmt.Errorf("apt-get download left %d files for %s", len(m), pkg)
	}
	dst := filepath.Join(cacheDir, filepath.Base(m[0]))
	if err := os.Rename(m[0], dst); err != nil {
		return "", err
	}
	return dst, nil
}

// unpackKernel extracts deb into k.Dir/root and indexes its modules. It
// works in a temporary directory renamed into place when complete.
func unpackKernel(ctx context.Context, tools map[string]string, deb string, k Kernel) error {
	if err := os.MkdirAll(k.Dir, 0o755); err != nil {
		return err
	}
	// Leftovers of interrupted runs; the cache lock keeps other builders out.
	if old, _ := filepath.Glob(filepath.Join(k.Dir, ".root-*")); len(old) > 0 {
		for _, o := range old {
			os.RemoveAll(o)
		}
	}
	root := filepath.Join(k.Dir, "root")
	if err := os.RemoveAll(root); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(k.Dir, ".root-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if _, err := runTool(ctx, "", nil, tools[toolDpkg.name], "-x", deb, tmp); err != nil {
		return err
	}
	if _, err := runTool(ctx, "", nil, tools[toolDepmod.name], "-b", tmp, k.Version); err != nil {
		return fmt.Errorf("indexing modules: %w", err)
	}
	return os.Rename(tmp, root)
}

// boot returns the kernel image to boot.
func (k Kernel) boot() string {
	if k.Vmlinux != "" {
		return k.Vmlinux
	}
	return k.Vmlinuz
}
