#!/usr/bin/env bash
# Installs what `make lab` and `make test` need on a fresh Debian-based machine
# (as root): Debian packages via apt-get, only when something is missing, and
# the Go tools at pinned versions into bin/tools. Safe to run again.
set -euo pipefail

cd "$(dirname "$0")/.."

# command -> Debian package
declare -A need=(
  [protoc]=protobuf-compiler
  [qemu-system-x86_64]=qemu-system-x86
  [busybox]=busybox-static
  [cpio]=cpio
  [depmod]=kmod
  [ip]=iproute2
  [ping]=iputils-ping
  [nft]=nftables
  # The mini-lab machines run lldpd (lldpcli comes with it).
  [lldpd]=lldpd
  # The mini-lab machines and the exit router run FRR (zebra + bgpd), and
  # the BGP tests and benchmarks use it as the peer.
  [vtysh]=frr
  # The unit files are checked with systemd-analyze verify.
  [systemd-analyze]=systemd
  # make deb's test inspects the packages.
  [dpkg-deb]=dpkg
  # The etcd store backend's tests, the replica tests and LAB_STORE=etcd
  # start throw-away etcd servers (3.4; the client is v3.5, same v3 API).
  [etcd]=etcd-server
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
# Well-known protobuf types for `make generate`.
[ -f /usr/include/google/protobuf/timestamp.proto ] || missing+=(libprotobuf-dev)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing Debian packages ${missing[*]}; run as root (or install them) first" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go tools, pinned.
mkdir -p bin/tools
install_tool() { # binary module@version
  if [ ! -x "bin/tools/$1" ] || [ "$(cat "bin/tools/.$1.version" 2>/dev/null)" != "$2" ]; then
    echo "deps: go install $2"
    GOBIN="$PWD/bin/tools" go install "$2"
    echo "$2" >"bin/tools/.$1.version"
  fi
}
install_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
install_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
install_tool gotestsum gotest.tools/gotestsum@v1.13.0
