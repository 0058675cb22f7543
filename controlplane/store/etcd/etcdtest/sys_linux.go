package etcdtest

import (
	"os/exec"
	"syscall"
)

// dieWithParent kills the member when the test process dies without its
// cleanup (a test timeout's panic), so no etcd outlives its test.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
