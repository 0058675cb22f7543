// Package systemd owns what fabric-agent and fabric-controller need to run
// as systemd services: the unit files (embedded, and copied into the .deb
// packages by scripts/deb.sh) and the sd_notify / watchdog glue over
// github.com/coreos/go-systemd/v22/daemon.
//
// It must not hold or call any fabric logic: the mains decide when the
// daemon is ready, healthy, reloading or stopping, and this package only
// tells systemd. Everything here is a no-op when the process does not run
// under systemd (NOTIFY_SOCKET unset), so the mains may call it
// unconditionally.
//
// Typical use in a main (errors from the Notifier are only worth a log line):
//
//	n := systemd.NewNotifier()
//	wd := n.Watchdog(systemd.WithLogger(log)) // disabled without WatchdogSec=
//	go wd.Run(ctx)
//	// The reconcile loop calls wd.Alive() on every turn, and from a ticker
//	// of period wd.Period() while idle, so only a hung loop stops the pings.
//	// After the first successful apply: n.Ready(); on every apply:
//	// n.Status("applied version 42").
//	// On SIGHUP: n.Reloading(); re-read the config; n.Ready().
//	// When ctx is cancelled: n.Stopping().
package systemd
