#!/usr/bin/env bash
# Installs what UnionFs needs on a fresh Debian 12 machine: FUSE 3, a C compiler for the native
# probes, the tools the tests and benchmarks drive, and the NuGet packages. Idempotent and quiet.
set -euo pipefail

packages=(fuse3 gcc make attr acl e2fsprogs util-linux coreutils findutils tar xz-utils zstd
          hyperfine fio fuse-overlayfs busybox-static skopeo docker-registry libsqlite3-0
          apache2-utils openssl python3   # htpasswd, and a JWT token server, for scripts/test-registry.sh
          xfsprogs)                        # xfs_io, for the native tests' mmap-write case
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages (${missing[*]}); run as root" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v dotnet >/dev/null || { echo "install-deps: the .NET SDK (dotnet) is not on PATH" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "install-deps: /dev/fuse is missing (modprobe fuse)" >&2; exit 1; }
cd "$(dirname "$0")/.."
dotnet restore UnionFs.sln --verbosity quiet >/dev/null
