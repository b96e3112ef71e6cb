#!/usr/bin/env bash
# Publishes the Native AOT binaries listed in rid-matrix.json into dist/<name>/.
#   tools/publish.sh                 every entry
#   tools/publish.sh linux-x64 ...   only the named entries
# Each result is a single native file per program (no .dll), checked for its glibc floor. An entry with an
# embeddedImage (linux-x64: x86-64-v4) first publishes src/EdgeLlm.Cli.Avx512 for that instruction set as a Native AOT
# shared library, checks its glibc floor too, and embeds it in edgellm, which loads it at start on CPUs that have it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

command -v dotnet >/dev/null || { echo "publish: the .NET 10 SDK (dotnet) is not on PATH" >&2; exit 1; }
if ! command -v clang >/dev/null && ! command -v gcc >/dev/null; then
  echo "publish: Native AOT needs a C toolchain to link: apt-get install -y clang zlib1g-dev" >&2; exit 1
fi

# rid-matrix.json -> lines "name rid instructionSet glibcFloor sysroot embeddedImage" (python3 if present, else a
# strict sed parse).
matrix() {
  if command -v python3 >/dev/null; then
    python3 - "$root/rid-matrix.json" <<'PY'
import json, sys
for b in json.load(open(sys.argv[1]))["binaries"]:
    print(b["name"], b["rid"], b["instructionSet"], b.get("glibcFloor", "") or "-", b.get("sysroot", "") or "-",
          b.get("embeddedImage", "") or "-")
PY
  else
    tr -d '\n' < "$root/rid-matrix.json" | grep -o '{[^{}]*"name"[^{}]*}' | while read -r obj; do
      f() { echo "$obj" | sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p"; }
      echo "$(f name) $(f rid) $(f instructionSet) $(f glibcFloor | sed 's/^$/-/') $(f sysroot | sed 's/^$/-/') $(f embeddedImage | sed 's/^$/-/')"
    done
  fi
}

# check_floor NAME FLOOR FILE: fails when FILE needs a GLIBC symbol version newer than FLOOR (no check without objdump).
check_floor() {
  local name=$1 floor=$2 bin=$3 need
  [ "$floor" != "-" ] && command -v objdump >/dev/null || return 0
  need=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)
  if [ -n "$need" ] && [ "$(printf '%s\n%s\n' "$need" "$floor" | sort -V | tail -n1)" != "$floor" ]; then
    echo "publish: $name: $(basename "$bin") needs GLIBC_$need, newer than the floor $floor in rid-matrix.json" >&2; exit 1
  fi
}

mapfile -t entries < <(matrix)
want=("$@")
for w in "${want[@]}"; do
  printf '%s\n' "${entries[@]}" | awk '{print $1}' | grep -qx -- "$w" || { echo "publish: '$w' is not an entry of rid-matrix.json" >&2; exit 1; }
done

cli=src/EdgeLlm.Cli/EdgeLlm.Cli.csproj
projects=($cli)
for p in tools/*/*.csproj; do [ -f "$p" ] && grep -q '<PublishAot>true' "$p" && projects+=("$p"); done

for e in "${entries[@]}"; do
  read -r name rid isa floor sysroot embedded <<<"$e"
  if [ ${#want[@]} -gt 0 ] && ! printf '%s\n' "${want[@]}" | grep -qx -- "$name"; then continue; fi
  out="$root/dist/$name"
  rm -rf "$out"; mkdir -p "$out"
  extra=()
  # armv8-a is the arm64 default: no IlcInstructionSet, so Dp (sdot) stays a run-time check (armv8.2-a would abort
  # at startup on Cortex-A53/A57 boards).
  case "$isa" in armv8-a|default) ;; *) extra+=("-p:IlcInstructionSet=$isa");; esac
  if [ "$sysroot" != "-" ]; then
    if [ ! -f "$root/$sysroot/.edgellm-sysroot-done" ]; then
      case "$sysroot" in
        */bullseye-arm64) "$root/tools/arm64-sysroot.sh" "$root/$sysroot" ||
          { echo "publish: $name needs the sysroot $sysroot; tools/arm64-sysroot.sh could not create it" >&2; exit 1; } ;;
        *) echo "publish: $name needs the sysroot $sysroot, which is missing" >&2; exit 1 ;;
      esac
    fi
    extra+=("-p:SysRoot=$root/$sysroot")
  fi
  image=()
  if [ "$embedded" != "-" ]; then
    # The second image of edgellm (the whole CLI for $embedded, as a shared library), embedded as a resource.
    lib_out="$root/obj/publish/$name-$embedded"
    rm -rf "$lib_out"
    echo "publish: $name ($rid, embedded image $embedded) <- src/EdgeLlm.Cli.Avx512" >&2
    dotnet publish src/EdgeLlm.Cli.Avx512/EdgeLlm.Cli.Avx512.csproj -c Release -r "$rid" -p:IlcInstructionSet="$embedded" \
      -p:EdgeLlmBuildName="$name" -o "$lib_out" -nologo -v:q >&2
    lib="$lib_out/edgellm-avx512.so"
    [ -f "$lib" ] || { echo "publish: $name: $lib was not produced" >&2; exit 1; }
    check_floor "$name" "$floor" "$lib"
    echo "publish: $name: embedded image $embedded: $(stat -c %s "$lib") bytes" >&2
    image=("-p:EdgeLlmAvx512Image=$lib")
  fi
  for proj in "${projects[@]}"; do
    echo "publish: $name ($rid, $isa) <- $proj" >&2
    this=()
    [ "$proj" = "$cli" ] && this=(${image[@]+"${image[@]}"})
    dotnet publish "$proj" -c Release -r "$rid" \
      -p:EdgeLlmBuildName="$name" -o "$root/obj/publish/$name" ${extra[@]+"${extra[@]}"} ${this[@]+"${this[@]}"} -nologo -v:q >&2
  done
  for f in "$root/obj/publish/$name"/*; do
    case "$f" in *.dbg|*.pdb|*.json) continue;; esac
    [ -f "$f" ] && [ -x "$f" ] && cp "$f" "$out/"
  done
  rm -rf "$root/obj/publish/$name"
  if ls "$out" | grep -q '\.dll$'; then echo "publish: $name: unexpected .dll in output" >&2; exit 1; fi
  [ "$embedded" != "-" ] && rm -rf "$root/obj/publish/$name-$embedded"
  for bin in "$out"/*; do check_floor "$name" "$floor" "$bin"; done
  for bin in "$out"/*; do echo "publish: $bin ($(du -h "$bin" | cut -f1))" >&2; done
done
