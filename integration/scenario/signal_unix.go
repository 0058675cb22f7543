package scenario

import "syscall"

// interruptSignal makes ping print its summary and exit.
var interruptSignal = syscall.SIGINT

var (
	sigQuit     = syscall.SIGQUIT
	syscallKill = syscall.Kill
)
