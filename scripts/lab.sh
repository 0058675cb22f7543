#!/usr/bin/env bash
# `make lab`: bring up the mini-lab, allocate both machines, show the fabric
# and check the leaves' kernels. Runs directly when this kernel has VRFs,
# otherwise inside the full-kernel VM. LAB_KEEP=1 leaves the lab running.
# LAB_STORE=etcd picks the etcd variant (three etcd members, two controller
# replicas, and a failover demo at the end) when no topology is given.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${LAB_STORE:-bolt}" in
  bolt|bbolt|"") default_topo=containerlab/mini-lab.clab.yml ;;
  etcd) default_topo=containerlab/mini-lab-etcd.clab.yml ;;
  *) echo "lab: LAB_STORE=${LAB_STORE}: want bolt (the default) or etcd" >&2; exit 2 ;;
esac
topo=${1:-$default_topo}
if [ "${LAB_STORE:-}" = etcd ] && ! command -v etcd >/dev/null; then
  echo "lab: LAB_STORE=etcd needs the etcd server (Debian package etcd-server; make deps installs it)" >&2
  exit 1
fi

demo=(bin/fabric-lab demo)
[ -n "${LAB_KEEP:-}" ] && demo+=(--keep)
demo+=("$topo")

start=$(date +%s)
if bin/fabric-vm host-has-vrf >/dev/null; then
  "${demo[@]}"
else
  echo "lab: this kernel cannot create VRF devices; running the lab in a full-kernel VM (qemu, software emulation)"
  vmargs=(run)
  if [ -z "${LAB_KEEP:-}" ]; then
    vmargs+=(--timeout 30m)
  else
    vmargs+=(--interactive)
    echo "lab: LAB_KEEP=1: you get a shell in the VM with the lab running; 'exit' powers it off"
  fi
  bin/fabric-vm "${vmargs[@]}" -- "${demo[@]}"
fi
echo "lab: done in $(( $(date +%s) - start ))s"
