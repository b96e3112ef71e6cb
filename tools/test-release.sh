#!/usr/bin/env bash
# The release files end to end (issue 16.1): tools/release.sh --reuse packs every rid-matrix.json entry (publishing
# the ones tools/test.sh and tools/test-arm64.sh did not), then each archive is checked against SHA256SUMS, unpacked
# into a clean folder and its edgellm run from another empty folder with an empty environment: x64 archives natively
# (an AVX-512 build only on an AVX-512 CPU), arm64 under qemu-aarch64-static against the bullseye sysroot. The stories
# it prints must be the reference greedy text. Then packaging/install.sh installs from dist/release into a temporary
# prefix and the installed binary runs. Ends with one line: "N passed, N failed, 0 skipped".
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "PASS $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() { echo "$passed passed, $failed failed, 0 skipped"; [ "$failed" -eq 0 ]; exit; }

t0=$SECONDS
tools/release.sh --reuse || { bad "tools/release.sh --reuse"; finish; }
echo "test-release: $(($SECONDS - t0)) s: tools/release.sh --reuse" >&2
rel="$root/dist/release"
version=$(sed -n 's:.*<Version>\([^<]*\)</Version>.*:\1:p' Directory.Build.props | head -n1)
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
ref=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generated_text"], end="")' tests/data/stories260K.reference_greedy.json)

if (cd "$rel" && sha256sum -c --quiet SHA256SUMS); then ok "SHA256SUMS verifies $(grep -c . "$rel/SHA256SUMS") files"
else bad "SHA256SUMS does not verify"; fi
rows=$(python3 -c 'import json; print(len(json.load(open("rid-matrix.json"))["binaries"]))')
if [ "$(grep -c . "$rel/MANIFEST")" -eq "$rows" ]; then ok "one archive per rid-matrix.json entry ($rows)"
else bad "MANIFEST has $(grep -c . "$rel/MANIFEST") archives for $rows entries"; fi

story_ok() {  # story_ok TEXT: TEXT is a long enough prefix of the reference story
  local got=$1
  [ ${#got} -gt 100 ] && [ "${ref:0:${#got}}" = "$got" ]
}

while read -r file name rid arch isa floor; do
  dir=$(mktemp -d); cwd=$(mktemp -d)
  tar -xzf "$rel/$file" -C "$dir"
  top="$dir/${file%.tar.gz}"
  bin="$top/bin/edgellm"
  if [ -x "$bin" ] && [ -x "$top/bin/edgellm-convert" ] && [ -f "$top/LICENSE" ] && [ -f "$top/README.md" ] &&
     [ -f "$top/share/edgellm/edgellm.service" ] && [ -f "$top/share/edgellm/edgellm.env" ]; then ok "$file: binaries, LICENSE, README, systemd unit and env file"
  else bad "$file: holds $(cd "$dir" && find . -type f | tr '\n' ' ')"; fi
  echo "test-release: $file $(stat -c %s "$rel/$file") bytes; edgellm $(stat -c %s "$bin") bytes" >&2
  runner=()
  case "$arch" in
    x86_64)
      if [ "$isa" = x86-64-v4 ] && ! grep -qw avx512bw /proc/cpuinfo; then echo "SKIP $file: no AVX-512 on this CPU"; rm -rf "$dir" "$cwd"; continue; fi ;;
    aarch64)
      if ! command -v qemu-aarch64-static >/dev/null || [ ! -d "$root/.sysroot/bullseye-arm64" ]; then bad "$file: qemu-aarch64-static or the bullseye sysroot is missing"; rm -rf "$dir" "$cwd"; continue; fi
      runner=(env QEMU_LD_PREFIX="$root/.sysroot/bullseye-arm64" QEMU_CPU=cortex-a76 qemu-aarch64-static) ;;
  esac
  v=$(cd "$cwd" && env -i ${runner[@]+"${runner[@]}"} "$bin" --version </dev/null 2>&1)
  if [[ "$v" == "edgellm $version (commit $commit, $name, "* ]]; then ok "$file: --version: $v"
  else bad "$file: --version printed '$v' (want edgellm $version (commit $commit, $name, ...)"; fi
  out=$(cd "$cwd" && env -i ${runner[@]+"${runner[@]}"} "$bin" run -n 64 --temp 0 </dev/null 2>/dev/null)
  if story_ok "$out" && [ -z "$(ls -A "$cwd")" ]; then ok "$file: the embedded stories260K greedy text from an empty folder"
  else bad "$file: run printed '${out:0:120}'"; fi
  c=$(cd "$cwd" && env -i ${runner[@]+"${runner[@]}"} "$top/bin/edgellm-convert" --version </dev/null 2>&1)
  if [[ "$c" == *"$version"* ]]; then ok "$file: edgellm-convert --version"; else bad "$file: edgellm-convert --version printed '$c'"; fi
  rm -rf "$dir" "$cwd"
done < "$rel/MANIFEST"

# install.sh from the release folder into a temporary prefix; the installed binary runs the embedded model.
home=$(mktemp -d); cwd=$(mktemp -d)
if log=$(env -i HOME="$home" PATH=/usr/bin:/bin sh "$rel/install.sh" 2>&1); then
  inst="$home/.local/bin/edgellm"
  out=$(cd "$cwd" && env -i "$inst" run -n 64 --temp 0 </dev/null 2>/dev/null)
  if story_ok "$out"; then ok "install.sh into ~/.local: $(echo "$log" | head -n1)"
  else bad "install.sh: the installed edgellm printed '${out:0:120}'"; fi
else bad "install.sh failed: $log"; fi
rm -rf "$home" "$cwd"
finish
