#!/usr/bin/env bash
# Guest instructions one arm64 command executes under qemu-aarch64-static, the same count as perf/arm64-insn-count.sh
# but for any program (used by perf/arm64-vs-llamacpp.sh for edgellm and llama.cpp alike):
#   perf/qemu-insn-count.sh CPU COMMAND [ARGS...]
# CPU: a QEMU_CPU model (cortex-a53, cortex-a76, ...). Prints "<count> instructions" on stdout; the command's own
# stdout and stderr are dropped. -d exec,nochain logs every translation block executed, -d in_asm each block's
# instructions when translated; the sum over executed blocks of their size is the count. The log goes to fd 3 (a
# pipe into awk), never to a file, so a long run needs no disk. Count single-threaded runs only: the blocks of
# several guest threads would still be counted, but their interleaved translation logs could be mis-parsed.
# QEMU_LD_PREFIX: the arm64 root for dynamically linked programs (default .sysroot/bullseye-arm64).
# COUNT_TIMEOUT: seconds before the run is killed and reported as failed (default 1800).
# BY_BLOCK=FILE: also write "<guest pc in hex> <instructions executed in the block starting there>" lines to FILE
# (perf/qemu-insn-symbols.sh turns them into a per-function table).
set -euo pipefail
cpu=$1; shift
root=$(cd "$(dirname "$0")/.." && pwd)
export QEMU_LD_PREFIX=${QEMU_LD_PREFIX:-$root/.sysroot/bullseye-arm64}
{ QEMU_CPU=$cpu timeout "${COUNT_TIMEOUT:-1800}" qemu-aarch64-static -d exec,nochain,in_asm -D /dev/fd/3 "$@" >/dev/null 2>&1 || echo "STATUS $?" >&3; } 3>&1 | awk -v byblock="${BY_BLOCK:-}" '
  /^IN:/ { inb = 1; key = ""; cnt = 0; next }
  inb && /^0x[0-9a-f]+:/ { if (key == "") { key = substr($1, 3, length($1) - 3); sub(/^0+/, "", key) } cnt++; next }
  inb { if (key != "") size[key] = cnt; inb = 0 }
  /^Trace/ { split($4, a, "/"); k = a[2]; sub(/^0+/, "", k); if (!(k in size)) miss++; total += size[k]; if (byblock != "") per[k] += size[k]; next }
  /^STATUS/ { status = $2 }
  END { if (status) { printf "command failed (exit %s)\n", status; exit 1 }
        if (byblock != "") for (k in per) printf "%s %d\n", k, per[k] > byblock
        printf "%d instructions%s\n", total, miss ? sprintf(" (%d blocks of unknown size)", miss) : "" }'
