#!/usr/bin/env bash
# Builds the Debian packages fabric-agent and fabric-controller with nfpm
# (pinned) into dist/: binaries from bin/ (built when missing; `make deb`
# builds them first), the unit files from systemd/units, the default
# configs, modules-load.d and maintainer scripts from packaging/.
#
# Environment: VERSION (default: from `git describe --tags --always`, or
# 0.0.0~git<sha>), ARCH (default: go env GOARCH; bin/ must match), DIST
# (output dir, default dist), GO (default go).
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
DIST=${DIST:-dist}
NFPM_MODULE=github.com/goreleaser/nfpm/v2
NFPM_VERSION=v2.48.0
start=$(date +%s%N)

# version from `git describe --tags --always`: v1.2.3 -> 1.2.3,
# v1.2.3-4-gabc1234 -> 1.2.3+git4.abc1234; no tag (describe prints just the
# sha) -> 0.0.0~git<sha>, which sorts before any release.
if [ -z "${VERSION:-}" ]; then
  desc=$(git describe --tags --always 2>/dev/null || true)
  sha=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ "$desc" != "$sha" ] && [[ $desc =~ ^v?([0-9][0-9A-Za-z.~+]*)(-([0-9]+)-g([0-9a-f]+))?$ ]]; then
    VERSION=${BASH_REMATCH[1]}
    [ -n "${BASH_REMATCH[2]}" ] && VERSION+="+git${BASH_REMATCH[3]}.${BASH_REMATCH[4]}"
  else
    VERSION="0.0.0~git$sha"
  fi
fi
ARCH=${ARCH:-$($GO env GOARCH)}
export VERSION ARCH
# Reproducible file times: the commit's, not the build's.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

# Binaries.
for b in fabric-agent fabric-controller; do
  if [ ! -x "bin/$b" ]; then
    echo "deb: go build ./cmd/$b"
    GOOS=linux GOARCH=$ARCH $GO build -o "bin/$b" "./cmd/$b"
  fi
done

# nfpm, pinned, in bin/tools (like scripts/deps.sh). The full command of
# v2.48.0 may not build: its rpm and msix packagers need go.digitalxero.dev
# modules that the Go module proxy refuses (403). Then build nfpm-deb from
# packaging/nfpm instead: the same nfpm library at the same version with
# only the deb packager, a module of its own (nfpm stays out of go.mod).
mkdir -p bin/tools
nfpm=()
if [ -x bin/tools/nfpm ] && [ "$(cat bin/tools/.nfpm.version 2>/dev/null)" = "$NFPM_MODULE@$NFPM_VERSION" ]; then
  nfpm=(bin/tools/nfpm package --packager deb)
elif [ -x bin/tools/nfpm-deb ] && [ "$(cat bin/tools/.nfpm-deb.version 2>/dev/null)" = "$NFPM_MODULE@$NFPM_VERSION" ] &&
  [ bin/tools/nfpm-deb -nt packaging/nfpm/go.sum ] && [ bin/tools/nfpm-deb -nt packaging/nfpm/main.go ]; then
  nfpm=(bin/tools/nfpm-deb)
else
  echo "deb: go install $NFPM_MODULE/cmd/nfpm@$NFPM_VERSION"
  if log=$(GOBIN="$PWD/bin/tools" $GO install "$NFPM_MODULE/cmd/nfpm@$NFPM_VERSION" 2>&1); then
    echo "$NFPM_MODULE@$NFPM_VERSION" >bin/tools/.nfpm.version
    nfpm=(bin/tools/nfpm package --packager deb)
  else
    echo "deb: the nfpm command does not build here ($(grep -m1 -o '[^ ]*: [^:]*403 Forbidden' <<<"$log" || tail -n1 <<<"$log"))"
    echo "deb: building packaging/nfpm (nfpm $NFPM_VERSION, deb packager only)"
    (cd packaging/nfpm && $GO build -o ../../bin/tools/nfpm-deb .)
    echo "$NFPM_MODULE@$NFPM_VERSION" >bin/tools/.nfpm-deb.version
    nfpm=(bin/tools/nfpm-deb)
  fi
fi

mkdir -p "$DIST"
for pkg in agent controller; do
  name=fabric-$pkg
  out="$DIST/${name}_${VERSION}_${ARCH}.deb"
  rm -f "$out"
  if [ "${nfpm[0]}" = bin/tools/nfpm ]; then
    "${nfpm[@]}" --config "packaging/nfpm-$pkg.yaml" --target "$out" >/dev/null
  else
    "${nfpm[@]}" -f "packaging/nfpm-$pkg.yaml" -t "$out" >/dev/null
  fi
  printf 'deb: %-58s %6s KiB\n' "$out" "$(($(stat -c %s "$out") / 1024))"
done
echo "deb: version $VERSION ($ARCH) in $((($(date +%s%N) - start) / 1000000)) ms"
