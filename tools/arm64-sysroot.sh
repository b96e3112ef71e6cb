#!/usr/bin/env bash
# Makes the Debian bullseye arm64 sysroot (glibc 2.31) that the linux-arm64 binary links against, so it runs on
# JetPack 5 (Ubuntu 20.04) as well as newer systems, and installs the cross toolchain and qemu when missing.
#   tools/arm64-sysroot.sh [DIR]     default DIR: <repo>/.sysroot/bullseye-arm64 (git-ignored)
# Idempotent: does nothing when DIR already holds a finished sysroot.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sysroot=${1:-$root/.sysroot/bullseye-arm64}
# The Debian mirror this machine's apt already uses (first URIs: of the main archive), or $EDGELLM_DEBIAN_MIRROR.
mirror=${EDGELLM_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v -- '-security' | head -n1 || true)
  [ -n "$mirror" ] || mirror=$(awk '$1=="deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || { echo "arm64-sysroot: no Debian mirror found in the apt sources; set EDGELLM_DEBIAN_MIRROR" >&2; exit 1; }

pkgs=()
for p in clang llvm binutils-aarch64-linux-gnu gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static debootstrap; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || pkgs+=("$p")
done
if [ ${#pkgs[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || { echo "arm64-sysroot: missing packages ${pkgs[*]} (run as root or apt-get install them)" >&2; exit 1; }
  echo "arm64-sysroot: installing ${pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # A transient dpkg "cannot stat" error has been seen on the first try; a plain re-run works.
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2 || apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
fi

if [ -f "$sysroot/.edgellm-sysroot-done" ]; then exit 0; fi
[ "$(id -u)" -eq 0 ] || { echo "arm64-sysroot: debootstrap needs root to create $sysroot" >&2; exit 1; }
echo "arm64-sysroot: creating $sysroot (debootstrap bullseye arm64, ~210 MB)" >&2
rm -rf "$sysroot"; mkdir -p "$sysroot"
# --foreign: only download and unpack the base; the dev packages are unpacked by hand below (no arm64 chroot needed).
debootstrap --foreign --arch=arm64 --variant=minbase --include=libc6-dev,libgcc-10-dev,linux-libc-dev \
  bullseye "$sysroot" "$mirror" >&2
for d in "$sysroot"/var/cache/apt/archives/{libc6-dev,libgcc-10-dev,linux-libc-dev,libcrypt-dev,libgcc-s1}_*.deb; do
  dpkg -x "$d" "$sysroot"
done
# dpkg -x replaced the merged-/usr /lib symlink with a directory: merge it back into usr/lib.
if [ -d "$sysroot/lib" ] && [ ! -L "$sysroot/lib" ]; then
  cp -a "$sysroot/lib/." "$sysroot/usr/lib/" && rm -rf "$sysroot/lib" && ln -s usr/lib "$sysroot/lib"
fi
# Absolute symlinks (libpthread.so -> /lib/...) would resolve to the HOST's arm64 cross libc: make them relative.
# Links into the host's virtual filesystems (debootstrap's proc -> /proc) are dropped: a relative link to the host's
# /proc inside the repository makes tools that walk the tree (BenchmarkDotNet's project search) fail on /proc/*/map_files.
find "$sysroot" -type l | while read -r l; do
  t=$(readlink "$l")
  case $t in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/run|/run/*) rm -f "$l"; continue;; esac
  case $t in /*) ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$sysroot$t")" "$l";; esac
done
touch "$sysroot/.edgellm-sysroot-done"
echo "arm64-sysroot: done ($(du -sh "$sysroot" | cut -f1))" >&2
