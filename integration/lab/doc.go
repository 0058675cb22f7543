// Package lab realises a containerlab topology file without Docker: one
// network namespace per node ("clab-<lab>-<node>"), a management network
// (a bridge inside its own namespace "clab-<lab>-mgmt", every node's eth0 a
// veth to it), one veth pair per link, and each node's cmd and exec commands
// run inside the node's namespace with its binds in a private mount
// namespace (via "ip netns exec").
//
// The package is split into a pure part (Parse/Load, validation, defaults and
// kind merging, mgmt address assignment, the plan of kernel steps, the shell
// wrapper for binds) and a small side-effect part (running "ip", starting and
// signalling processes, scanning /proc) so the pure part is unit-tested
// without privileges.
//
// It owns: namespaces named "clab-<lab>-*", the veths and the bridge inside
// them, the processes running in them, the lab directory "clab-<lab>/" and
// the state file /run/fabric-lab/<lab>.json. It must not touch anything in
// the host's root network namespace (no address, route or interface of the
// lab lives there), nor namespaces or processes of other labs, nor the
// topology file itself. Teardown (Down) works by lab name alone, so it also
// cleans up after a crashed run or a lab started by another process.
//
// Only the containerlab kind "linux" is supported; the image is recorded but
// not used: node commands run from the host's filesystem.
package lab
