#!/usr/bin/env bash
# Instructions per token, prefill and decode, of edgellm against llama.cpp on arm64 under qemu (issue 14: on arm64,
# count instructions, not times). Both engines run the same GGUF file, one thread, counted by perf/qemu-insn-count.sh
# (every executed translation block's instructions: the whole program, not only the matmuls).
#   perf/arm64-vs-llamacpp.sh LLAMA_A76_BUILD LLAMA_A53_BUILD EDGELLM_ARM64 MODEL.gguf [MODEL.gguf ...]
# LLAMA_A76_BUILD: a static aarch64 llama.cpp build dir (src/libllama.a, ggml/src/libggml*.a, CMakeCache.txt naming the
# source tree) compiled with the dot product, run as cortex-a76; LLAMA_A53_BUILD: one compiled for plain armv8-a, run
# as cortex-a53; EDGELLM_ARM64: dist/linux-arm64/edgellm. perf/llamacpp-count.cpp is compiled against each build
# (aarch64-linux-gnu-g++ -static) to drive llama.cpp through llama.h exactly as `edgellm logits` drives edgellm.
# Env: NPP (prefill tokens, default 9), NTG (decode tokens, default 9), CPUS (default "cortex-a53 cortex-a76"),
#      COUNT_TIMEOUT (seconds per counted run, default 1800), QEMU_LD_PREFIX (edgellm's arm64 root).
# Both engines: tokens 1,10,11,... from position 0, one thread, a context of 64, logits of every token;
#   edgellm   `logits -m M --tokens 1,10,11,.. -t 1 --top 1 -c 64` (all tokens in one batch; -b 1: token by token)
#   llama.cpp `llamacpp-count M N BATCH` (BATCH = N: one llama_decode of N tokens; 1: token by token)
# prefill = (c(NPP tokens, one batch) - c(1 token)) / (NPP - 1); decode = (c(NTG tokens one by one) - c(1 token)) /
# (NTG - 1), so start-up, loading and the per-call overhead of the batch cancel.
set -euo pipefail
[ $# -ge 4 ] || { sed -n 2,17p "$0" >&2; exit 2; }
a76=$1 a53=$2 ours=$3; shift 3
npp=${NPP:-9} ntg=${NTG:-9} cpus=${CPUS:-"cortex-a53 cortex-a76"}
here=$(cd "$(dirname "$0")" && pwd)
count() { "$here/qemu-insn-count.sh" "$@" | awk '/instructions/ { print $1; next } { print > "/dev/stderr"; exit 1 }'; }
toks() { local t=1 i; for ((i = 1; i < $1; i++)); do t+=",$((9 + i))"; done; echo "$t"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# driver BUILD OUT: compile perf/llamacpp-count.cpp against the static libraries of BUILD.
driver() {
  local b=$1 src
  src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$b/CMakeCache.txt")
  aarch64-linux-gnu-g++ -O2 -static -o "$2" "$here/llamacpp-count.cpp" -I"$src/include" -I"$src/ggml/include" \
    -Wl,--start-group "$b/src/libllama.a" "$b/ggml/src/libggml.a" "$b/ggml/src/libggml-cpu.a" "$b/ggml/src/libggml-base.a" \
    -Wl,--end-group -lpthread -lm 2> "$tmp/link.log" || { cat "$tmp/link.log" >&2; exit 1; }
}
driver "$a76" "$tmp/count-a76"
driver "$a53" "$tmp/count-a53"
rows=()
for m in "$@"; do
  for cpu in $cpus; do
    case $cpu in cortex-a53 | cortex-a55 | cortex-a57 | cortex-a72) llama=$tmp/count-a53 ;; *) llama=$tmp/count-a76 ;; esac
    o1=$(count "$cpu" "$ours" logits -m "$m" --tokens 1 -t 1 --top 1 -c 64)
    opp=$(count "$cpu" "$ours" logits -m "$m" --tokens "$(toks "$npp")" -t 1 --top 1 -c 64)
    otg=$(count "$cpu" "$ours" logits -m "$m" --tokens "$(toks "$ntg")" -t 1 --top 1 -c 64 -b 1)
    echo "edgellm   $(basename "$m") $cpu: 1 token $o1, $npp in one batch $opp, $ntg one by one $otg" >&2
    l1=$(count "$cpu" "$llama" "$m" 1 1)
    lpp=$(count "$cpu" "$llama" "$m" "$npp" "$npp")
    ltg=$(count "$cpu" "$llama" "$m" "$ntg" 1)
    echo "llama.cpp $(basename "$m") $cpu: 1 token $l1, $npp in one batch $lpp, $ntg one by one $ltg" >&2
    rows+=("$(awk -v m="$(basename "$m")" -v c="$cpu" -v o1="$o1" -v opp="$opp" -v otg="$otg" -v l1="$l1" \
      -v lpp="$lpp" -v ltg="$ltg" -v np="$npp" -v ng="$ntg" 'BEGIN {
        opt = (opp - o1) / (np - 1); ott = (otg - o1) / (ng - 1)
        lpt = (lpp - l1) / (np - 1); ltt = (ltg - l1) / (ng - 1)
        printf "| %s | %s | %.0f | %.0f | %.2fx | %.0f | %.0f | %.2fx |", m, c, lpt, opt, opt / lpt, ltt, ott, ott / ltt }')")
  done
done
echo "| model | CPU | prefill llama.cpp | prefill edgellm | edgellm / llama.cpp | decode llama.cpp | decode edgellm | edgellm / llama.cpp |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
