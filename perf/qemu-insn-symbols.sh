#!/usr/bin/env bash
# Per-function guest instruction counts from perf/qemu-insn-count.sh's BY_BLOCK file.
#   perf/qemu-insn-symbols.sh BLOCKS SYMBOLS [BASE] [TOP]
# BLOCKS: the BY_BLOCK file; SYMBOLS: an ELF with the symbol table of the program counted (for dist/linux-arm64/edgellm
# the edgellm.dbg that publishing writes next to it before tools/publish.sh drops it; for a static llama.cpp driver the
# binary itself); BASE: where qemu-aarch64 loaded it (hex; default 5500000000, qemu's place for a PIE executable; 0 for
# a static non-PIE one); TOP: rows to print (default 25). Blocks outside the file's symbols (the C library, the
# dynamic loader) are summed as "(outside SYMBOLS)".
set -euo pipefail
blocks=$1 syms=$2 base=${3:-5500000000} top=${4:-25}
nm=$(command -v aarch64-linux-gnu-nm || command -v nm)
"$nm" -n --defined-only "$syms" | python3 -c '
import bisect, sys
base, top, blocks = int(sys.argv[1], 16), int(sys.argv[2]), sys.argv[3]
addrs, names = [], []
for line in sys.stdin:
    p = line.split(None, 2)
    if len(p) == 3 and p[1] in "tTwW":
        addrs.append(int(p[0], 16)); names.append(p[2].strip())
end = addrs[-1] + (1 << 20) if addrs else 0
per, total = {}, 0
for line in open(blocks):
    pc, n = line.split(); pc = int(pc, 16) - base; n = int(n); total += n
    i = bisect.bisect_right(addrs, pc) - 1
    name = names[i] if 0 <= i and pc < end else "(outside SYMBOLS)"
    per[name] = per.get(name, 0) + n
print(f"{total:,} instructions")
for name, n in sorted(per.items(), key=lambda kv: -kv[1])[:top]:
    print(f"{n:>14,} {100 * n / total:5.1f}%  {name[:150]}")
' "$base" "$top" "$blocks"
