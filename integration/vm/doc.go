// Package vm runs commands inside a qemu virtual machine that boots Debian's
// full kernel, for the features the host kernel lacks (VRF devices, 802.1Q
// VLAN sub-interfaces, bridge VLAN filtering).
//
// The guest shares the host's root filesystem read-only over 9p, with a tmpfs
// overlay on top, so every binary installed on the host runs in the guest at
// the same absolute path; nothing the guest writes reaches the host.
//
// The package owns its cache directory (the downloaded kernel package, the
// unpacked kernel and modules, the generated initramfs and per-run scripts)
// and the qemu processes it starts. It installs the Debian packages it needs
// (qemu-system-x86, busybox-static, kmod) with apt-get when they are missing,
// but it never installs a kernel into /boot, never touches the host's network
// configuration (HostSupportsVRF probes in a throwaway network namespace) and
// never leaves a qemu process behind.
package vm
