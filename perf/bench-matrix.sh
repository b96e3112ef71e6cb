#!/usr/bin/env bash
# The issue-3 performance table: `edgellm bench` (pp512 / tg128 by default) for each model × binary × thread count,
# one JSON line per run into OUT (default perf/out/bench-matrix.jsonl), then a markdown table on stdout.
#
#   perf/bench-matrix.sh                                  1.1B and 7B Q4_0 under /tmp, made with edgellm-modelgen if missing
#   MODELS="/tmp/a.gguf /tmp/b.gguf" BINS="linux-x64" THREADS="2" P=128 N=32 REPS=2 perf/bench-matrix.sh
#
# BINS names rid-matrix.json entries (dist/<name>/edgellm); NAME:avx2 runs that binary with EDGELLM_ISA=avx2, its
# x86-64-v3 image, where plain NAME runs the image the CPU picks (the embedded AVX-512 one on AVX-512 CPUs).
# Publishes the binaries named in BINS with tools/publish.sh unless NO_PUBLISH=1. Runs one at a
# time; measure on an otherwise idle machine (the table is only as quiet as the machine was).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
P=${P:-512}; N=${N:-128}; REPS=${REPS:-3}; BW_MIB=${BW_MIB:-1024}
BINS=${BINS:-"linux-x64 linux-x64:avx2"}
THREADS=${THREADS:-"2 1"}
MODELS=${MODELS:-"/tmp/mg-1.1b-q4_0.gguf /tmp/mg-7b-q4_0.gguf"}
OUT=${OUT:-perf/out/bench-matrix.jsonl}
mkdir -p "$(dirname "$OUT")"

for m in $MODELS; do
  [ -f "$m" ] && continue
  case "$(basename "$m")" in
    mg-1.1b-q4_0.gguf) shape=1.1b;; mg-7b-q4_0.gguf) shape=7b;;
    *) echo "bench-matrix: $m is missing (only mg-1.1b-q4_0.gguf / mg-7b-q4_0.gguf are generated)" >&2; exit 1;;
  esac
  dotnet run -c Release --project tools/EdgeLlm.ModelGen -- --shape "$shape" --type q4_0 --seed 1 -o "$m" >&2
done
if [ "${NO_PUBLISH:-0}" != 1 ]; then
  # shellcheck disable=SC2086
  tools/publish.sh $(printf '%s\n' $BINS | sed 's/:.*//' | sort -u) >&2
fi

: > "$OUT"
for m in $MODELS; do
  for b in $BINS; do
    for t in $THREADS; do
      echo "bench-matrix: $(basename "$m") $b -t $t (load $(cut -d' ' -f1 /proc/loadavg))" >&2
      isa=auto; case "$b" in *:avx2) isa=avx2;; esac
      line=$(EDGELLM_ISA=$isa "dist/${b%%:*}/edgellm" bench -m "$m" -p "$P" -n "$N" -r "$REPS" -t "$t" --bw-mib "$BW_MIB" --json 2>/dev/null | tail -n1)
      printf '%s\n' "$line" | python3 -c 'import json,sys; d=json.load(sys.stdin); d["binary"]=sys.argv[1]; d["load_before"]=float(sys.argv[2]); print(json.dumps(d))' \
        "$b" "$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT"
    done
  done
done

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| model | binary | threads | pp%d tok/s (min..max) | tg%d tok/s (min..max) | tg GB/s | bandwidth GB/s (best / median) | tg / best bw | tg / median bw |" % (rows[0]["p"], rows[0]["n"]))
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for d in rows:
    print("| %s | %s | %d | %.1f (%.1f..%.1f) | %.1f (%.1f..%.1f) | %.1f | %.1f / %.1f | %.0f%% | %.0f%% |" % (
        d["model_name"], d["binary"], d["threads"], d["pp_tok_s"], d["pp_tok_s_min"], d["pp_tok_s_max"],
        d["tg_tok_s"], d["tg_tok_s_min"], d["tg_tok_s_max"], d["tg_gb_s"], d["mem_bw_gb_s"], d["mem_bw_median_gb_s"],
        100 * d["tg_gb_s"] / d["mem_bw_gb_s"], 100 * d["tg_gb_s"] / d["mem_bw_median_gb_s"]))
PY
