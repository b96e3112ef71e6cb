#!/usr/bin/env bash
# Builds the release files into dist/release/ (or --out DIR):
#   edgellm-VERSION-NAME.tar.gz   one per rid-matrix.json entry: bin/edgellm, bin/edgellm-convert, LICENSE, README.md,
#                                 share/edgellm/{edgellm.service,edgellm.env}, share/edgellm/install.sh
#   MANIFEST                      one line per archive: "file name rid arch instructionSet glibcFloor" (install.sh reads it)
#   install.sh                    picks and installs the right archive for a machine
#   SHA256SUMS                    sha256sum of all of the above
# VERSION is <Version> of Directory.Build.props. Each entry is published with tools/publish.sh NAME unless
# --reuse is given and dist/NAME/edgellm already exists (CI reuses what the test scripts published from the same
# checkout; `edgellm --version` names the commit a binary was built from, and tools/test-release.sh checks it is HEAD).
#   tools/release.sh [--reuse] [--out DIR] [--dist DIR] [NAME ...]
# --dist DIR takes the published binaries from DIR/NAME/ instead of dist/NAME/ and never publishes (tests).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

reuse=0 out="$root/dist/release" dist="" want=()
while [ $# -gt 0 ]; do
  case "$1" in
    --reuse) reuse=1 ;;
    --out) out=$2; shift ;;
    --dist) dist=$2; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "release: unknown option '$1' (see tools/release.sh --help)" >&2; exit 2 ;;
    *) want+=("$1") ;;
  esac
  shift
done

version=$(sed -n 's:.*<Version>\([^<]*\)</Version>.*:\1:p' Directory.Build.props | head -n1)
[ -n "$version" ] || { echo "release: no <Version> in Directory.Build.props" >&2; exit 1; }

# rid-matrix.json -> "name rid instructionSet glibcFloor" per entry (python3 if present, else a strict sed parse).
matrix() {
  if command -v python3 >/dev/null; then
    python3 - "$root/rid-matrix.json" <<'PY'
import json, sys
for b in json.load(open(sys.argv[1]))["binaries"]:
    print(b["name"], b["rid"], b.get("instructionSet", "") or "default", b.get("glibcFloor", "") or "-")
PY
  else
    tr -d '\n' < "$root/rid-matrix.json" | grep -o '{[^{}]*"name"[^{}]*}' | while read -r obj; do
      f() { echo "$obj" | sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p"; }
      echo "$(f name) $(f rid) $(f instructionSet | sed 's/^$/default/') $(f glibcFloor | sed 's/^$/-/')"
    done
  fi
}
mapfile -t entries < <(matrix)
[ ${#entries[@]} -gt 0 ] || { echo "release: rid-matrix.json lists no binaries" >&2; exit 1; }
for w in ${want[@]+"${want[@]}"}; do
  printf '%s\n' "${entries[@]}" | awk '{print $1}' | grep -qx -- "$w" || { echo "release: '$w' is not an entry of rid-matrix.json" >&2; exit 1; }
done

# Reproducible archives: fixed owner, sorted names, every mtime the commit's time (now, outside git).
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}
rm -rf "$out"; mkdir -p "$out"
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
: > "$out/MANIFEST"

for e in "${entries[@]}"; do
  read -r name rid isa floor <<<"$e"
  if [ ${#want[@]} -gt 0 ] && ! printf '%s\n' "${want[@]}" | grep -qx -- "$name"; then continue; fi
  case "$rid" in
    linux-x64) arch=x86_64 ;;
    linux-arm64) arch=aarch64 ;;
    *) echo "release: $name: rid $rid has no install.sh architecture (linux-x64, linux-arm64)" >&2; exit 1 ;;
  esac
  if [ -n "$dist" ]; then bins="$dist/$name"
  else
    bins="$root/dist/$name"
    if [ "$reuse" -eq 0 ] || [ ! -x "$bins/edgellm" ]; then "$root/tools/publish.sh" "$name"; fi
  fi
  for b in edgellm edgellm-convert; do
    [ -x "$bins/$b" ] || { echo "release: $name: $bins/$b is missing (tools/publish.sh $name)" >&2; exit 1; }
  done
  base="edgellm-$version-$name"
  d="$stage/$base"
  mkdir -p "$d/bin" "$d/share/edgellm"
  # The user programs; edgellm-modelgen (random-weight models for benchmarks) stays a developer tool.
  cp "$bins/edgellm" "$bins/edgellm-convert" "$d/bin/"
  cp LICENSE README.md "$d/"
  cp packaging/edgellm.service packaging/edgellm.env packaging/install.sh "$d/share/edgellm/"
  chmod 755 "$d/bin/"* "$d/share/edgellm/install.sh"; chmod 644 "$d/LICENSE" "$d/README.md" "$d/share/edgellm/edgellm."*
  tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -cf - "$base" | gzip -9n > "$out/$base.tar.gz"
  echo "$base.tar.gz $name $rid $arch $isa $floor" >> "$out/MANIFEST"
  echo "release: $out/$base.tar.gz ($(du -h "$out/$base.tar.gz" | cut -f1); edgellm $(du -h "$bins/edgellm" | cut -f1))" >&2
done
cp packaging/install.sh "$out/install.sh"; chmod 755 "$out/install.sh"
(cd "$out" && sha256sum -- *.tar.gz MANIFEST install.sh > SHA256SUMS)
echo "release: $out/SHA256SUMS ($(grep -c . "$out/SHA256SUMS") files), version $version" >&2
