#!/usr/bin/env bash
# `make lab`: bring up the mini-lab, allocate both machines, show the fabric
# and check the leaves' kernels. Runs directly when this kernel has VRFs,
# otherwise inside the full-kernel VM. LAB_KEEP=1 leaves the lab running.
set -euo pipefail
cd "$(dirname "$0")/.."
topo=${1:-containerlab/mini-lab.clab.yml}

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
