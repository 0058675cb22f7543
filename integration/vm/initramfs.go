package vm

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// bootModules are the modules the initramfs loads so it can mount the host's
// root over 9p and put an overlay on top. 9pnet_virtio is not a dependency of
// 9p (the transport is chosen at mount time) and virtio_pci is not one of
// 9pnet_virtio, so all of them are named.
// virtio_console provides the port the command's output goes through.
var bootModules = []string{"virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_console"}

// 9p mount tags shared by qemu.
const (
	tagRoot    = "hostroot"
	tagModules = "modules"
)

// Kernel command line tokens the guest's init scripts read. Names with a dot
// are not passed on to init as arguments or environment by the kernel.
const (
	cmdlineGuest  = "fabric_vm.guest=1"
	cmdlineScript = "fabric_vm.script="
)

// initrdFormat is bumped whenever the initramfs layout or its init script
// changes; it is part of the cached image's file name.
const initrdFormat = "3"

// parseShowDepends parses the output of `modprobe --show-depends` (one or
// more runs) into the module files to insmod, in load order, without
// duplicates. Built-in modules ("builtin NAME") need no file and are skipped.
func parseShowDepends(out []byte) ([]string, error) {
	var files []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "insmod":
			if len(fields) < 2 {
				return nil, fmt.Errorf("malformed line %q", sc.Text())
			}
			// Module options may follow the path; the initramfs needs none.
			if f := fields[1]; !seen[f] {
				seen[f] = true
				files = append(files, f)
			}
		case "builtin":
		default:
			return nil, fmt.Errorf("unexpected line %q", sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return files, nil
}

// moduleOrder returns the .ko files needed to load mods, dependencies first.
func moduleOrder(ctx context.Context, modprobe, root, kver string, mods []string) ([]string, error) {
	args := append([]string{"--show-depends", "-d", root, "-S", kver, "-a"}, mods...)
	out, err := runTool(ctx, "", nil, modprobe, args...)
	if err != nil {
		return nil, err
	}
	files, err := parseShowDepends(out)
	if err != nil {
		return nil, fmt.Errorf("parsing modprobe --show-depends: %w", err)
	}
	return files, nil
}

// initScript returns the initramfs /init: it loads the given modules (file
// names under /modules, in order), mounts the host root read-only over 9p
// with a tmpfs overlay on top, mounts the kernel's modules on
// /lib/modules and switches root into the overlay, executing the stage-2
// script named on the kernel command line.
func initScript(modules []string) string {
	var b strings.Builder
	b.WriteString(`#!/bin/busybox sh
# fabric-vm stage 1 (initramfs): host root over 9p + tmpfs overlay, then the
# run's stage-2 script from the kernel command line.
/bin/busybox mkdir -p /bin /proc /sys /dev /lower /rw /newroot
/bin/busybox --install -s /bin
export PATH=/bin
fail() {
	echo "fabric-vm stage 1: $*"
	poweroff -f
}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
`)
	for _, m := range modules {
		fmt.Fprintf(&b, "insmod /modules/%s || fail \"insmod %s\"\n", m, m)
	}
	fmt.Fprintf(&b, `script=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	%[1]s*) script="${arg#%[1]s}" ;;
	esac
done
[ -n "$script" ] || fail "no %[1]s on the kernel command line"
opts=trans=virtio,version=9p2000.L,msize=512000,cache=loose
mount -t 9p -o "$opts,ro" %[2]s /lower || fail "mounting the host root"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "mounting the overlay tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail "mounting the overlay"
mkdir -p /newroot/lib/modules
mount -t 9p -o "$opts,ro" %[3]s /newroot/lib/modules || fail "mounting the kernel modules"
[ -x "/newroot$script" ] || fail "stage-2 script $script not found in the host root"
umount /proc /sys /dev 2>/dev/null
exec switch_root /newroot "$script"
`, cmdlineScript, tagRoot, tagModules)
	return b.String()
}

// cpioFile is one entry of a newc cpio archive.
type cpioFile struct {
	name  string // without leading slash
	mode  uint32 // file type and permission bits (syscall.S_IF* values)
	data  []byte // file content or symlink target
	major uint32 // device major, for device nodes
	minor uint32
}

// File type bits of the cpio mode field (as in <sys/stat.h>).
const (
	cpioDir     = 0o040000
	cpioRegular = 0o100000
	cpioChar    = 0o020000
)

// writeCpio writes files as an uncompressed newc ("070701") cpio archive,
// the format the kernel unpacks as initramfs.
func writeCpio(w io.Writer, files []cpioFile) error {
	pad := func(n int) []byte { return make([]byte, (4-n%4)%4) }
	write := func(ino int, f cpioFile) error {
		name := f.name + "\x00"
		nlink := 1
		if f.mode&0o170000 == cpioDir {
			nlink = 2
		}
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, f.mode, 0, 0, nlink, 0, len(f.data), 0, 0, f.major, f.minor, len(name), 0)
		for _, chunk := range [][]byte{[]byte(hdr), []byte(name), pad(len(hdr) + len(name)), f.data, pad(len(f.data))} {
			if _, err := w.Write(chunk); err != nil {
				return err
			}
		}
		return nil
	}
	for i, f := range files {
		if err := write(i+1, f); err != nil {
			return err
		}
	}
	return write(0, cpioFile{name: "TRAILER!!!"})
}

// initrdFiles lays out the initramfs: busybox, the modules in load order and
// /init. Parent directories come before their entries.
func initrdFiles(busybox []byte, modules map[string][]byte, order []string) []cpioFile {
	files := []cpioFile{
		{name: "bin", mode: cpioDir | 0o755},
		{name: "dev", mode: cpioDir | 0o755},
		// The kernel opens /dev/console for init's stdio before anything is
		// mounted; without it init has no output.
		{name: "dev/console", mode: cpioChar | 0o600, major: 5, minor: 1},
		{name: "modules", mode: cpioDir | 0o755},
		{name: "bin/busybox", mode: cpioRegular | 0o755, data: busybox},
	}
	for _, m := range order {
		files = append(files, cpioFile{name: "modules/" + m, mode: cpioRegular | 0o644, data: modules[m]})
	}
	files = append(files, cpioFile{name: "init", mode: cpioRegular | 0o755, data: []byte(initScript(order))})
	return files
}

// buildInitrd writes the gzip-compressed initramfs for the kernel unpacked
// at root to dst (via a temporary file and rename).
func buildInitrd(ctx context.Context, tools map[string]string, root, kver, dst string) error {
	files, err := moduleOrder(ctx, tools[toolModprob.name], root, kver, bootModules)
	if err != nil {
		return fmt.Errorf("resolving boot modules: %w", err)
	}
	bb, err := os.ReadFile(tools[toolBusybox.name])
	if err != nil {
		return fmt.Errorf("reading busybox: %w", err)
	}
	mods := map[string][]byte{}
	var order []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("reading module: %w", err)
		}
		base := path.Base(f)
		if _, dup := mods[base]; dup {
			return fmt.Errorf("two boot modules named %s", base)
		}
		mods[base] = data
		order = append(order, base)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := writeCpio(zw, initrdFiles(bb, mods, order)); err != nil {
		return fmt.Errorf("writing cpio: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compressing cpio: %w", err)
	}
	return writeFileAtomic(dst, buf.Bytes(), 0o644)
}

// writeFileAtomic writes data to a temporary file next to name and renames
// it into place, so name either does not exist or is complete.
func writeFileAtomic(name string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
