// Package systemd will own the unit files and the sd_notify / watchdog glue
// of fabric-agent and fabric-controller. It must not hold any fabric logic.
//
// Nothing is implemented yet: the production issue builds it.
package systemd
