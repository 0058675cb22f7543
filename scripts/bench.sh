#!/usr/bin/env bash
# `make bench`: every benchmark runs the project and a named peer side by side
# in one run and prints `bench: NAME project=... peer=... ratio=...` lines.
# The full output of each run is kept in .cache/bench/ for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache/bench

run() { # name, then the command
  local name=$1; shift
  local log=.cache/bench/$name.log
  echo "bench: running $name ($*)" >&2
  if ! "$@" >"$log" 2>&1; then
    echo "bench: $name failed; last lines of $log:" >&2
    tail -n 30 "$log" >&2
    return 1
  fi
  grep '^bench: ' "$log" || { echo "bench: $name printed no bench line (see $log)" >&2; return 1; }
}

# Dataplane: the agent's reconciler vs an equivalent ip -batch / bridge -batch
# script (1000 VLANs, 100 VRFs with L3VNIs, 48 ports), in the full-kernel VM.
run dataplane go test ./fabric/ -run '^TestBenchDataplane$' -count=1 -v -args -fabric.bench
# Controller: fan-out to 1000 agents over real gRPC streams, allocation
# latency and throughput, vs metal-core's 10 s polling.
run controller go test ./controlplane/server/ -run '^$' -bench '^Benchmark(ControllerFanout|AllocationThroughput)$' -benchtime 1x -count=1
# Store backends: the controller on a 3-member etcd cluster (3 replicas)
# vs on bbolt: allocation rate and p99, fan-out p99 to 1000 agents.
run etcd go test ./controlplane/server/ -run '^$' -bench '^BenchmarkEtcdVsBolt$' -benchtime 1x -count=1 -timeout 30m
# FIB: install then delete 100k /32 routes in a table with bgp/fib's batched
# netlink programmer vs `ip -batch` (same routes and next hop), fresh
# namespaces, on the host kernel (needs root).
run fib go test ./bgp/fib/ -run '^TestBenchFIB$' -count=1 -v -args -fib.bench
# Firewall: 50k (CIDR, port range) entries as sets and verdict maps in one
# netlink batch vs `nft -f` of the equivalent linear ruleset (one rule per
# entry): load, change one entry (peer: nft -f of a one-line replace rule),
# and the round trip of a new UDP flow through each (fresh namespaces, host
# kernel, needs root).
run nft go test ./nft/ -run '^TestBenchNFT$' -count=1 -v -timeout 20m -args -nft.bench
# BGP to kernel: an FRR feeder announces 100k IPv4 /32s over an unnumbered
# eBGP session; time until all are in the main table, our agent's stack
# (reconciler + GoBGP + FIB programmer) vs FRR bgpd+zebra, plus RSS and CPU
# after the load (needs root and FRR; host kernel).
run bgpfeed go test ./bgp/ -run '^TestBenchBGPToKernel$' -count=1 -v -args -bgp.bench
