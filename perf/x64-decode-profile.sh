#!/usr/bin/env bash
# Where x64 decode time goes: `perf record -e cpu-clock` (a software clock: this VM exposes no hardware counters,
# `perf stat -e instructions` says <not supported>) over `edgellm bench -p 0 -n N -t T -r 1`, the samples sorted into
# the matmul kernels, activation quantization, attention, the element-wise ops, the worker pool's waiting, loading,
# and the rest. Samples count CPU time actually run (not wall time), so the shares and the CPU-ms per token hold on a
# loaded machine; the wait share does not (a busy machine makes spinning threads yield and reschedule more).
#   perf/x64-decode-profile.sh BIN MODEL THREADS [NGEN]
# BIN: an unstripped edgellm (dotnet publish src/EdgeLlm.Cli -c Release -r linux-x64 -p:IlcInstructionSet=x86-64-v4
#      -p:StripSymbols=false; the AVX-512 image that dist/linux-x64/edgellm embeds is loaded from a memfd, which perf
#      cannot symbolize). NGEN: tokens per tg run (default 64; bench runs a one-token warm-up and one repetition: NGEN + 1 tokens).
# Keeps the perf.data in $PROFILE_DIR (default a temporary dir, removed) for `perf annotate`; PERF_DATA=FILE (and
# WBYTES=weight bytes per token) re-reads a recorded file instead of running.
set -euo pipefail
bin=$1 model=$2 threads=$3 ngen=${4:-64}
dir=${PROFILE_DIR:-}
if [ -z "$dir" ]; then dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT; fi
data="$dir/decode-t$threads-$(basename "$model" .gguf).data"
hz=999
if [ -n "${PERF_DATA:-}" ]; then
  data=$PERF_DATA wbytes=${WBYTES:-0}
else
  perf record -q -e cpu-clock -F $hz -o "$data" "$bin" bench -m "$model" -p 0 -n "$ngen" -t "$threads" -r 1 --bw-mib 0 \
    > "$dir/bench.txt" 2>/dev/null
  wbytes=$(sed -n 's/^weights read per generated token: \([0-9,]*\) bytes.*/\1/p' "$dir/bench.txt" | tr -d ,)
fi
perf report -i "$data" --sort sym --stdio -F sample,sym 2>/dev/null | awk -v hz=$hz -v tokens=$((ngen + 1)) -v wb="$wbytes" '
  /^#/ || NF < 3 { next }
  { n = $1; s = $0; sub(/^ *[0-9]+ +\[[^]]*\] +/, "", s)
    if (s ~ /clear_page|_copy_to_iter|filemap_|folio_|Repack|ReadFile|GgufReader|copy_user|memcpy|page_fault|alloc_pages|ModelLoader/) c = "load"
    else if (s ~ /RhSpinWait|WorkerPool|sched_yield|finish_task_switch|futex|schedule|SpinWait|Monitor|irqentry_exit|__vdso|lowres_ticks|Thread__Yield|syscall/) c = "pool wait / yield"
    else if (s ~ /Kernels_Dot|RowDrivers|PackedDrivers|Backends_Cpu_MatMul|KernelRung|KernelTable/) c = "matmul kernels"
    else if (s ~ /ActivationQuant|Q8_0Panel/) c = "activation quantize"
    else if (s ~ /Attention|KvRows|ExpSingle|Softmax/) c = "attention"
    else if (s ~ /RmsNorm|Rope|Glu|Backends_Cpu_Add|Backends_Cpu_Scale|Softcap|GetRows|HalfConvert/) c = "norms, rope, glu, adds"
    else c = "other"
    cat[c] += n; total += n; if (c != "load") dec += n }
  END {
    printf "decode samples %d of %d (%.0f Hz): %.2f CPU-ms per token over %d tokens", dec, total, hz, 1000 * dec / hz / tokens, tokens
    if (wb > 0) printf "; %.1f GB of weights per CPU-second", wb * tokens / (dec / hz) / 1e9
    printf "\n"
    n = split("matmul kernels|activation quantize|attention|norms, rope, glu, adds|pool wait / yield|other", order, "|")
    for (i = 1; i <= n; i++) printf "  %-24s %5.1f%% of decode CPU time\n", order[i], dec ? 100 * cat[order[i]] / dec : 0 }'
