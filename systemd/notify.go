package systemd

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends sd_notify(3) messages to the service manager. The zero
// value and a nil *Notifier are valid; every method is a no-op returning nil
// when the process was not started by systemd with a notify socket
// (NOTIFY_SOCKET unset), so the mains can call it unconditionally.
//
// Errors are returned for logging only: a daemon should never stop because
// a notification could not be sent.
type Notifier struct{}

// NewNotifier returns a Notifier for the socket in $NOTIFY_SOCKET. The
// variable is left in the environment: the units set NotifyAccess=main, so
// messages from child processes are ignored anyway.
func NewNotifier() *Notifier { return &Notifier{} }

// Enabled reports whether the process runs under systemd with a notify
// socket, i.e. whether the other methods send anything.
func (n *Notifier) Enabled() bool { return n != nil && os.Getenv("NOTIFY_SOCKET") != "" }

// Ready tells systemd that start-up (or a reload) is finished: READY=1.
// The agent sends it after its first successful apply, the controller once
// its gRPC listener is serving.
func (n *Notifier) Ready() error { return n.send("ready", daemon.SdNotifyReady) }

// Status sets the one-line status shown by `systemctl status`: STATUS=line.
// Newlines in line are replaced by spaces (the protocol is line based).
func (n *Notifier) Status(line string) error {
	line = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(line)
	return n.send("status", "STATUS="+line)
}

// Stopping tells systemd that the daemon is shutting down: STOPPING=1.
func (n *Notifier) Stopping() error { return n.send("stopping", daemon.SdNotifyStopping) }

// Reloading tells systemd that the daemon is reloading its configuration:
// RELOADING=1 with MONOTONIC_USEC (required by Type=notify-reload, harmless
// for Type=notify). Call Ready when the reload is done.
func (n *Notifier) Reloading() error {
	msg := daemon.SdNotifyReloading
	if mono := daemon.SdNotifyMonotonicUsec(); mono != "" {
		msg += "\n" + strings.TrimSuffix(mono, "\n")
	}
	return n.send("reloading", msg)
}

// WatchdogPing resets the service's watchdog timer: WATCHDOG=1. Daemons
// normally leave this to a Watchdog, which pings only while they are alive.
func (n *Notifier) WatchdogPing() error { return n.send("watchdog ping", daemon.SdNotifyWatchdog) }

// WatchdogInterval returns the watchdog timeout systemd enforces
// (WatchdogSec=, from $WATCHDOG_USEC) and whether it is enabled for this
// process. It is false without a notify socket, without WatchdogSec= and
// when $WATCHDOG_PID names another process.
func (n *Notifier) WatchdogInterval() (time.Duration, bool) {
	if !n.Enabled() {
		return 0, false
	}
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0, false
	}
	return d, true
}

func (n *Notifier) send(what, state string) error {
	if !n.Enabled() {
		return nil
	}
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %s: %w", what, err)
	}
	return nil
}
