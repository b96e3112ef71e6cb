#!/usr/bin/env bash
# Regenerates the files in this directory (not run by the tests). Needs llama.cpp's llama-quantize (built from
# llama.cpp c392e50: cmake -B build && cmake --build build --target llama-quantize) and edgellm-modelgen.
#   LLAMA_QUANTIZE=/path/llama-quantize MODELGEN=/path/edgellm-modelgen tests/data/llama-quant-policy/make.sh
# Three random F32 Llama models (synthetic 512-token vocab, written by edgellm-modelgen, deterministic):
#   s7b   7B-shaped layer list: 32 layers, 4/4 heads (n_gqa 1), dim 256, ffn 512
#   s70b  70B-shaped layer list: 80 layers, 8/1 heads (n_gqa 8, so llama.cpp's LLM_TYPE_70B), dim 256, ffn 512
#   sfb   fallbacks: 4 layers, 4/2 heads, dim 256, ffn 352 (ffn_down rows of 352 are not whole 256-blocks)
# each quantized by llama-quantize to every type below (2 threads, no imatrix). Output:
#   MODEL.types: one line per tensor in llama-quantize's order: name, then the ggml type llama-quantize gave it
#                under each file type in the header line
#   sfb.sha256:  name, file type, ggml type and the first 16 hex digits of the SHA-256 of the tensor's bytes
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
q=${LLAMA_QUANTIZE:?set LLAMA_QUANTIZE}; gen=${MODELGEN:?set MODELGEN}
types=(Q4_K_M Q4_K_S Q5_K_S Q5_K_M Q6_K Q3_K_M IQ4_XS Q5_0 Q8_0 Q4_0)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$gen" -o "$tmp/s7b.gguf" --dim 256 --layers 32 --heads 4 --kv-heads 4 --ffn 512 --vocab 512 --type f32 --seed 7 -q
"$gen" -o "$tmp/s70b.gguf" --dim 256 --layers 80 --heads 8 --kv-heads 1 --ffn 512 --vocab 512 --type f32 --seed 70 -q
"$gen" -o "$tmp/sfb.gguf" --dim 256 --layers 4 --heads 4 --kv-heads 2 --ffn 352 --vocab 512 --type f32 --seed 3 -q
for m in s7b s70b sfb; do
  for t in "${types[@]}"; do
    "$q" "$tmp/$m.gguf" "$tmp/$m-$t.gguf" "$t" 2 >"$tmp/$m-$t.log" 2>&1
    python3 "$here/gguf_tensors.py" "$tmp/$m-$t.gguf" >"$tmp/$m-$t.txt"
  done
  python3 - "$tmp" "$m" "${types[@]}" >"$here/$m.types" <<'PY'
import sys
tmp, m, types = sys.argv[1], sys.argv[2], sys.argv[3:]
cols = [[l.split() for l in open(f"{tmp}/{m}-{t}.txt")] for t in types]
print("tensor " + " ".join(types))
for i, row in enumerate(cols[0]):
    assert all(c[i][0] == row[0] for c in cols)
    print(row[0] + " " + " ".join(c[i][1] for c in cols))
PY
done
for t in "${types[@]}"; do awk -v t="$t" '{print $1, t, $2, $3}' "$tmp/sfb-$t.txt"; done >"$here/sfb.sha256"
