#!/usr/bin/env bash
# Guest instructions an arm64 edgellm executes under qemu for one `edgellm logits` pass (issue 14.3: under qemu, count
# instructions, not times). Debian's qemu-user-static has no TCG plugins, so: -d exec,nochain logs every translation
# block executed, -d in_asm each block's instructions when translated; the sum over executed blocks of their size is
# the count (within 0.02% of a -singlestep run, which logs one line per instruction and is ten times slower).
#   perf/arm64-insn-count.sh BIN MODEL NTOKENS CPU [BATCH]
# BIN: an arm64 edgellm; tokens 1,10,11,... (NTOKENS of them), 1 thread, context 64; BATCH = -b (default: all at once;
# 1 = the decode path token by token). Per-token cost: (count(N) - count(1)) / (N - 1).
# QEMU_LD_PREFIX: the arm64 root (default .sysroot/bullseye-arm64, what tools/arm64-sysroot.sh makes).
set -euo pipefail
bin=$1 model=$2 n=$3 cpu=$4 batch=${5:-}
toks=1
for ((i = 1; i < n; i++)); do toks+=",$((9 + i))"; done
root=$(cd "$(dirname "$0")/.." && pwd)
export QEMU_LD_PREFIX=${QEMU_LD_PREFIX:-$root/.sysroot/bullseye-arm64}
QEMU_CPU=$cpu qemu-aarch64-static -d exec,nochain,in_asm -D /dev/stderr "$bin" logits -m "$model" --tokens "$toks" \
  -t 1 --top 1 -c 64 ${batch:+-b "$batch"} 2>&1 >/dev/null | awk '
  /^IN:/ { inb = 1; key = ""; cnt = 0; next }
  inb && /^0x[0-9a-f]+:/ { if (key == "") { key = substr($1, 3, length($1) - 3); sub(/^0+/, "", key) } cnt++; next }
  inb { if (key != "") size[key] = cnt; inb = 0 }
  /^Trace/ { split($4, a, "/"); k = a[2]; sub(/^0+/, "", k); if (!(k in size)) miss++; total += size[k]; next }
  END { printf "%d instructions%s\n", total, miss ? sprintf(" (%d blocks of unknown size)", miss) : "" }'
