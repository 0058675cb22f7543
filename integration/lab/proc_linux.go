//go:build linux

package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// netnsDir is where "ip netns" keeps its named namespaces.
const netnsDir = "/run/netns"

// nsID identifies a namespace by the device and inode of its nsfs file.
type nsID struct{ dev, ino uint64 }

// namedNetNSID returns the identity of the named namespace.
func namedNetNSID(name string) (nsID, error) {
	return statNS(filepath.Join(netnsDir, name))
}

func statNS(path string) (nsID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nsID{}, err
	}
	return nsID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

// listNetNS returns the names of all named namespaces.
func listNetNS() ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// netNSExists reports whether the named namespace exists.
func netNSExists(name string) bool {
	_, err := namedNetNSID(name)
	return err == nil
}

// pidsInNetNS scans /proc once and returns, per namespace name, the live
// processes whose network namespace it is (what "ip netns pids" does) and
// the "ip netns exec" processes about to enter it. Zombies have no namespace
// any more and are not listed.
func pidsInNetNS(names []string) (map[string][]int, error) {
	ids := map[nsID]string{}
	for _, n := range names {
		id, err := namedNetNSID(n)
		if err != nil {
			continue // gone already
		}
		ids[id] = n
	}
	out := map[string][]int{}
	if len(ids) == 0 {
		return out, nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("scanning /proc: %w", err)
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		id, err := statNS("/proc/" + e.Name() + "/ns/net")
		if err != nil {
			continue // exited, or a zombie
		}
		if n, ok := ids[id]; ok {
			out[n] = append(out[n], pid)
			continue
		}
		if n, ok := enteringNetNS(pid); ok && slices.Contains(names, n) {
			out[n] = append(out[n], pid)
		}
	}
	return out, nil
}

// enteringNetNS returns the namespace an "ip netns exec NS ..." process is
// about to enter: started a moment ago, it is still in its parent's
// namespace, and a teardown must not miss it.
func enteringNetNS(pid int) (string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return "", false
	}
	argv := strings.Split(string(b), "\x00")
	if len(argv) < 4 || filepath.Base(argv[0]) != "ip" || argv[1] != "netns" || argv[2] != "exec" {
		return "", false
	}
	return argv[3], true
}

// procStat returns a process's state letter and process group.
func procStat(pid int) (state byte, pgrp int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// "pid (comm) S ppid pgrp ..."; comm may contain ')' and spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	pgrp, err = strconv.Atoi(string(f[2]))
	if err != nil {
		return 0, 0, fmt.Errorf("parsing /proc/%d/stat: %w", pid, err)
	}
	return f[0][0], pgrp, nil
}

// groupMembers returns the live (non-zombie) processes of a process group.
func groupMembers(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, pg, err := procStat(pid)
		if err == nil && pg == pgid && st != 'Z' && st != 'X' {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pidAlive reports whether pid exists and is not a zombie.
func pidAlive(pid int) bool {
	st, _, err := procStat(pid)
	return err == nil && st != 'Z' && st != 'X'
}

// pidInNetNS reports whether pid is alive and in (or entering) the named
// namespace: guards against a recycled pid from a stale pid file.
func pidInNetNS(pid int, ns string) bool {
	want, err := namedNetNSID(ns)
	if err != nil || !pidAlive(pid) {
		return false
	}
	if got, err := statNS("/proc/" + strconv.Itoa(pid) + "/ns/net"); err == nil && got == want {
		return true
	}
	entering, ok := enteringNetNS(pid)
	return ok && entering == ns
}

func sig(kill bool) syscall.Signal {
	if kill {
		return syscall.SIGKILL
	}
	return syscall.SIGTERM
}

// signalPID sends SIGTERM (or SIGKILL) to one process; a process that is
// gone already is not an error.
func signalPID(pid int, kill bool) error {
	if err := syscall.Kill(pid, sig(kill)); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// signalGroup sends SIGTERM (or SIGKILL) to a process group.
func signalGroup(pgid int, kill bool) error {
	if pgid <= 1 {
		return fmt.Errorf("refusing to signal process group %d", pgid)
	}
	return signalPID(-pgid, kill)
}

// detachedAttr puts a node process in its own process group, so a Ctrl-C on
// the CLI does not reach it and StopNode can signal the whole group.
func detachedAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
