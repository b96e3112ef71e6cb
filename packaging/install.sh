#!/bin/sh
# Installs EdgeLlm from a release: picks the archive that fits this machine (x86_64 or aarch64, the glibc floor of
# each build, the x64 instruction set), verifies it against SHA256SUMS, and installs it under a prefix.
#
#   install.sh [--from DIR|URL] [--prefix DIR] [--arch x86_64|aarch64] [--name NAME] [--dry-run] [--list]
#
#   --from     where the release files are (MANIFEST, SHA256SUMS, *.tar.gz): a folder, or an http(s) URL fetched with
#              curl or wget. Default: $EDGELLM_RELEASE, else the folder this script is in.
#   --prefix   install root (default ~/.local): PREFIX/bin/edgellm, PREFIX/bin/edgellm-convert,
#              PREFIX/share/edgellm/{edgellm.service,edgellm.env}, PREFIX/share/doc/edgellm/{LICENSE,README.md}
#   --arch     install for another machine (default: uname -m); its glibc and CPU are then not checked
#   --name     a MANIFEST entry by name (e.g. linux-arm64) instead of the best fit
#   --dry-run  say which archive would be installed, install nothing
#   --list     list the archives and whether each fits this machine
# EDGELLM_INSTALL_GLIBC and EDGELLM_INSTALL_CPUFLAGS stand in for the machine's glibc version and /proc/cpuinfo flags.
set -eu

from=${EDGELLM_RELEASE:-}
prefix=${HOME:-}/.local
arch= name= dry=0 list=0
die() { echo "install.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --from) [ $# -ge 2 ] || die "--from needs a folder or URL"; from=$2; shift ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; prefix=$2; shift ;;
    --arch) [ $# -ge 2 ] || die "--arch needs x86_64 or aarch64"; arch=$2; shift ;;
    --name) [ $# -ge 2 ] || die "--name needs a MANIFEST name"; name=$2; shift ;;
    --dry-run) dry=1 ;;
    --list) list=1 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see install.sh --help)" ;;
  esac
  shift
done
if [ -z "$from" ]; then
  here=$(cd "$(dirname "$0")" && pwd)
  [ -f "$here/SHA256SUMS" ] || die "no release given: use --from DIR|URL (or run the install.sh that sits next to SHA256SUMS)"
  from=$here
fi
from=${from%/}
[ -n "$prefix" ] || die "no --prefix and no \$HOME"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/edgellm-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

fetch() {  # fetch NAME -> $tmp/NAME
  case "$from" in
    http://*|https://*)
      if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 3 -o "$tmp/$1" "$from/$1" || die "could not download $from/$1"
      elif command -v wget >/dev/null 2>&1; then wget -q -O "$tmp/$1" "$from/$1" || die "could not download $from/$1"
      else die "neither curl nor wget is installed: download the release files and use --from DIR"; fi ;;
    *) [ -f "$from/$1" ] || die "$from/$1 not found"; cp "$from/$1" "$tmp/$1" ;;
  esac
}
sha256() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
  else openssl dgst -sha256 "$1" | sed 's/.*= *//'; fi
}
verify() {  # verify NAME: its sha256 must be the one SHA256SUMS lists
  want=$(awk -v f="$1" '{n=$2; sub(/^\*/, "", n); if (n == f) print $1}' "$tmp/SHA256SUMS")
  [ -n "$want" ] || die "$1 is not listed in SHA256SUMS"
  got=$(sha256 "$tmp/$1")
  [ "$got" = "$want" ] || die "$1: checksum mismatch (SHA256SUMS says $want, the file is $got); nothing installed"
}
version_ge() {  # version_ge A B: A >= B
  [ "$(printf '%s\n%s\n' "$1" "$2" | sort -t. -k1,1n -k2,2n -k3,3n | tail -n1)" = "$1" ]
}

fetch SHA256SUMS
fetch MANIFEST
verify MANIFEST

# The machine.
check_host=1
if [ -n "$arch" ]; then check_host=0; else arch=$(uname -m); fi
case "$arch" in amd64|x64) arch=x86_64 ;; arm64) arch=aarch64 ;; esac
glibc=${EDGELLM_INSTALL_GLIBC:-}
if [ -z "$glibc" ]; then
  glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc \([0-9.]*\).*/\1/p' || true)
  [ -n "$glibc" ] || glibc=$(ldd --version 2>&1 | head -n1 | grep -o '[0-9][0-9]*\.[0-9][0-9]*$' || true)
fi
flags=${EDGELLM_INSTALL_CPUFLAGS:-}
if [ -z "$flags" ] && [ -r /proc/cpuinfo ]; then flags=$(grep -m1 '^flags' /proc/cpuinfo | sed 's/^[^:]*://' || true); fi
has_flags() { for f in "$@"; do case " $flags " in *" $f "*) ;; *) return 1 ;; esac; done; }

# why_not ROW-FIELDS: prints why the archive does not fit (nothing when it does); level: how good a fit it is.
why_not() {  # rid-arch isa floor
  [ "$1" = "$arch" ] || { echo "built for $1, this machine is $arch"; return; }
  [ "$check_host" -eq 1 ] || return 0
  if [ "$3" != "-" ]; then
    [ -n "$glibc" ] || { echo "needs glibc $3 or newer; no glibc found here (musl or static system?)"; return; }
    version_ge "$glibc" "$3" || { echo "needs glibc $3 or newer, this system has $glibc"; return; }
  fi
  case "$2" in
    x86-64-v4) has_flags avx2 fma bmi2 f16c movbe avx512f avx512bw avx512cd avx512dq avx512vl || echo "needs AVX-512 (F/BW/CD/DQ/VL), which this CPU lacks" ;;
    x86-64-v3) has_flags avx2 fma bmi2 f16c movbe || echo "needs AVX2 and FMA (Haswell, Zen 1 or newer), which this CPU lacks" ;;
    x86-64-v2) has_flags sse4_2 popcnt || echo "needs SSE4.2, which this CPU lacks" ;;
  esac
}
level() { case "$1" in x86-64-v4) echo 4 ;; x86-64-v3) echo 3 ;; x86-64-v2) echo 2 ;; *) echo 1 ;; esac; }

best= best_level=0 reasons=
while read -r file row_name rid row_arch isa floor; do
  [ -n "$file" ] || continue
  why=$(why_not "$row_arch" "$isa" "$floor")
  if [ "$list" -eq 1 ]; then
    if [ -z "$why" ]; then echo "$file: fits"; else echo "$file: $why"; fi
    continue
  fi
  if [ -n "$name" ]; then
    [ "$row_name" = "$name" ] || continue
    [ -z "$why" ] || die "$file: $why"
    best=$file; break
  fi
  if [ -n "$why" ]; then reasons="$reasons
  $file: $why"; continue; fi
  l=$(level "$isa")
  if [ "$l" -gt "$best_level" ]; then best=$file; best_level=$l; fi
done < "$tmp/MANIFEST"
[ "$list" -eq 0 ] || exit 0
[ -n "$name" ] && [ -z "$best" ] && die "no archive named '$name' in MANIFEST"
[ -n "$best" ] || die "no archive in this release fits this machine ($arch, glibc ${glibc:-none}):$reasons"

if [ "$dry" -eq 1 ]; then echo "would install $best into $prefix"; exit 0; fi
fetch "$best"
verify "$best"
mkdir -p "$tmp/x"
tar -xzf "$tmp/$best" -C "$tmp/x"
src="$tmp/x/${best%.tar.gz}"
[ -x "$src/bin/edgellm" ] || die "$best holds no bin/edgellm"

mkdir -p "$prefix/bin" "$prefix/share/edgellm" "$prefix/share/doc/edgellm"
for b in "$src"/bin/*; do
  # Copy then rename: replacing a binary that is running (a serve) must not fail with 'text file busy'.
  cp "$b" "$prefix/bin/.$(basename "$b").new"
  chmod 755 "$prefix/bin/.$(basename "$b").new"
  mv -f "$prefix/bin/.$(basename "$b").new" "$prefix/bin/$(basename "$b")"
done
bin=$(cd "$prefix/bin" && pwd)/edgellm
sed "s|^ExecStart=[^ ]*edgellm |ExecStart=$bin |" "$src/share/edgellm/edgellm.service" > "$prefix/share/edgellm/edgellm.service"
cp "$src/share/edgellm/edgellm.env" "$src/share/edgellm/install.sh" "$prefix/share/edgellm/"
cp "$src/LICENSE" "$src/README.md" "$prefix/share/doc/edgellm/"

echo "installed $best into $prefix"
if [ "$check_host" -eq 1 ]; then "$bin" --version; fi
case ":${PATH:-}:" in *":$prefix/bin:"*) ;; *) echo "add $prefix/bin to PATH, e.g.: export PATH=\"$prefix/bin:\$PATH\"" ;; esac
echo "try: edgellm run \"Once upon a time\"   (the demo model is built in)"
echo "service: $prefix/share/edgellm/edgellm.service (copy edgellm.env to /etc/edgellm/, the unit to /etc/systemd/system/)"
