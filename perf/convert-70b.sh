#!/usr/bin/env bash
# Converter benchmark (not a test): a Llama-2-70B-shaped checkpoint cut to a few layers (dim 8192, 64 heads,
# 8 KV heads, FFN 28672, vocab 32000), written with seeded random bf16 weights as 8 Meta shards and then as
# sharded safetensors into a scratch directory outside the repository, each converted by the published
# dist/linux-x64/edgellm-convert. Reports input MB/s and peak RSS for every step; the scratch directory is deleted
# at the end (one format on disk at a time: about 4.5 GB of input plus the output for 2 layers).
#
#   perf/convert-70b.sh                       2 layers, --type q4_0
#   LAYERS=4 TYPE=q4_k_m perf/convert-70b.sh
#   SCRATCH=/mnt/big/tmp KEEP_CACHE=1 perf/convert-70b.sh
#
# Environment: LAYERS (2), TYPE (q4_0), THREADS (converter default), SCRATCH (a new dir under $TMPDIR or /tmp),
# TOKENIZER (Llama-2 tokenizer.model; default ../shared/models/llama2-tokenizer/tokenizer.model beside the
# repository), CONVERT (the converter binary), KEEP_CACHE=1 to skip evicting the input from the page cache
# before each read (by default every read is cold: the files are dropped from the cache with posix_fadvise).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

layers=${LAYERS:-2}
type=${TYPE:-q4_0}
conv=${CONVERT:-$root/dist/linux-x64/edgellm-convert}
scratch=${SCRATCH:-$(mktemp -d "${TMPDIR:-/tmp}/edgellm-convert-70b.XXXXXX")}
mkdir -p "$scratch"
case "$scratch" in "$root"/*) echo "convert-70b: SCRATCH must be outside the repository" >&2; exit 1;; esac
trap 'rm -rf "$scratch"' EXIT

tokenizer=${TOKENIZER:-}
if [ -z "$tokenizer" ]; then
  for t in "$root/../shared/models/llama2-tokenizer/tokenizer.model"; do
    [ -f "$t" ] && { tokenizer=$t; break; }
  done
fi

echo "convert-70b: building the checkpoint writer (perf/EdgeLlm.CheckpointGen, Release)" >&2
dotnet build -c Release perf/EdgeLlm.CheckpointGen -nologo -v:q >/dev/null
gen=(dotnet "$root/perf/EdgeLlm.CheckpointGen/bin/Release/net10.0/EdgeLlm.CheckpointGen.dll")
shape=(--dim 8192 --heads 64 --kv-heads 8 --vocab 32000 --multiple-of 4096 --ffn-multiplier 1.3 --layers "$layers")

# Is a converter there that can run? (the skeleton answers "not built yet")
can_convert=1
if [ ! -x "$conv" ]; then
  echo "convert-70b: $conv not found (run tools/publish.sh linux-x64): only the writing and reading steps run" >&2; can_convert=0
elif "$conv" --help 2>&1 | grep -q "not built yet"; then
  echo "convert-70b: $conv is the skeleton: only the writing and reading steps run" >&2; can_convert=0
fi
if [ -z "$tokenizer" ] && [ $can_convert = 1 ]; then
  echo "convert-70b: no Llama-2 tokenizer.model found (set TOKENIZER): conversion skipped" >&2; can_convert=0
fi

# Drops a directory's files from the page cache so the next read comes from disk (only our files).
evict() {
  [ "${KEEP_CACHE:-0}" = 1 ] && return 0
  sync
  python3 - "$1" <<'PY' || echo "convert-70b: could not evict the page cache (python3 missing?): reads are warm" >&2
import os, sys
for name in os.listdir(sys.argv[1]):
    p = os.path.join(sys.argv[1], name)
    if os.path.isfile(p):
        fd = os.open(p, os.O_RDONLY)
        try: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally: os.close(fd)
PY
}

# Runs a command under /usr/bin/time -v; prints wall seconds, peak RSS and MB/s over the given input bytes.
measure() {
  local label=$1 bytes=$2; shift 2
  local log="$scratch/time.log" rc=0
  /usr/bin/time -v -o "$log" "$@" || rc=$?
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  awk -v l="$label" -v w="$wall" -v r="$rss" -v b="$bytes" -v rc="$rc" 'BEGIN {
    printf "RESULT %-28s %8.1f s  %8.0f MB/s input  peak RSS %6.0f MiB%s\n", l, w, (w > 0 ? b / 1e6 / w : 0), r / 1024, (rc != 0 ? "  (exit " rc ")" : "") }'
  return 0
}

input_bytes() { du -sb "$1" | cut -f1; }

run_format() {
  local fmt=$1 dir="$scratch/$1"
  echo "convert-70b: writing the $fmt checkpoint ($layers layers) into $dir" >&2
  if [ "$fmt" = meta ]; then
    "${gen[@]}" meta "$dir" "${shape[@]}" --shards 8
  else
    "${gen[@]}" hf "$dir" "${shape[@]}" --max-shard-mb 2000
  fi
  [ -n "$tokenizer" ] && cp "$tokenizer" "$dir/tokenizer.model"
  local bytes; bytes=$(input_bytes "$dir")
  echo "convert-70b: $fmt input: $((bytes / 1000000)) MB in $(ls "$dir" | wc -l) files; free disk: $(df -h --output=avail "$scratch" | tail -1)" >&2
  if [ "$fmt" = meta ]; then
    evict "$dir"
    measure "read $fmt (source only)" "$bytes" "${gen[@]}" read-meta "$dir"
  fi
  if [ $can_convert = 1 ]; then
    evict "$dir"
    local out="$scratch/$fmt.gguf" targs=()
    [ -n "${THREADS:-}" ] && targs=(-t "$THREADS")
    measure "convert $fmt -> $type" "$bytes" "$conv" "$dir" -o "$out" --type "$type" "${targs[@]}"
    [ -f "$out" ] && echo "convert-70b: output $((($(stat -c %s "$out")) / 1000000)) MB" >&2
    rm -f "$out"
  fi
  rm -rf "$dir"
}

echo "convert-70b: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, scratch $scratch" >&2
run_format meta
run_format hf
