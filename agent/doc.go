// Package agent is the fabric-agent daemon runtime: it dials the controller,
// registers the device (hostname, role, chassis MAC, ports read from the
// kernel), watches the device's desired config, hands every snapshot to the
// subsystem reconcilers (today only package fabric's VRF reconciler) and
// reports the applied version, per-step errors and port states.
//
// Snapshots are applied latest-wins: when several arrive during an apply, only
// the newest is applied next. The connection is retried with exponential
// backoff and jitter; while the controller is unreachable, and on shutdown, the
// kernel is left as it is (no cleanup, no flush). After a restart the first
// snapshot is applied like any other: the diff-based reconciler makes no
// change to a kernel that already matches it.
//
// Drift: the agent watches the kernel's link, address and route events and,
// after a short debounce, re-applies the last applied config when a managed
// object was changed or removed by hand; changes to anything else are logged
// and counted, never reverted (drift.go). This also runs while the controller
// is unreachable, and never before the first successful apply.
//
// LLDP (lldp.go, with WithLLDP): package lldp runs on every registered port
// but the management interface, following link events; neighbour changes are
// debounced and the full table is reported with ReportNeighbors, never on a
// timer, and once per controller session. A restarted agent waits a settle
// time before its first report, so the controller never sees the briefly
// empty table.
//
// Protobuf types stay in this package's edge (convert.go); the reconcilers
// speak their own types. The package must not parse flags or config files
// (cmd/fabric-agent does) and never touches the kernel except through the
// reconcilers.
package agent
