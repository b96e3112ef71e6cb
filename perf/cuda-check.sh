#!/usr/bin/env bash
# perf/cuda-check.sh: the GPU acceptance run of the CUDA backend (issue 17), split so that scarce GPU time is spent
# measuring, not building:
#
#   perf/cuda-check.sh --prepare [--quick]
#       On any x64 Linux machine with the .NET SDK (no GPU needed). Publishes dist/linux-x64/edgellm and a native
#       dist/linux-x64/edgellm-modelgen, writes the CPU reference logits and greedy text into perf/out/cuda-ref/, and
#       packs the machine's NVRTC (libnvrtc.so.* + libnvrtc-builtins) into perf/out/nvrtc.tar.gz. Ends by listing
#       what to carry to the GPU machine (about 50 MB).
#   perf/cuda-check.sh --prebuilt [--device cuda|cpu] [--quick] [--no-70b] [--keep]
#       On the GPU machine: no .NET, no network, no python; needs bash, coreutils (timeout, sha256sum), awk, tar and
#       gzip. Puts the carried NVRTC on the library path when the machine has none. Every step has a timeout; the
#       whole run takes about 5 minutes on an H100 machine (model generation included). `--device cpu` runs the same
#       plumbing on the CPU (CI does, with --quick); the speed goals are only judged on CUDA.
#   perf/cuda-check.sh
#       Both, one after the other (a GPU machine that has the SDK).
#   perf/cuda-check.sh --list [--quick]
#       The models the numerics check covers (every weight type) and the kernel each one's prefill takes on CUDA
#       (kernels/gemm.cu): `gemm-int8` (the block types: tensor-core MMA on sm_80+, dp4a tiles on sm_61..75),
#       `gemm-half` (F16, BF16: half-precision tensor-core MMA on sm_80+, float FMA tiles below) or `gemm-float`
#       (F32: float FMA tiles). Runs nothing.
#
# What --prebuilt checks, as one table at the end:
#  1. `edgellm devices --bandwidth` (CUDA): the device and the kernel target.
#  2. Numerics: logits of random models regenerated from their seeds (edgellm-modelgen writes identical bytes for the
#     same options; the sha256 recorded by --prepare is checked) against the CPU logits computed beforehand, for
#     prefill (default batch) and decode (-b 1). Models: every weight type at the tiny shape over 64 positions and,
#     without --quick, every weight type at a 7B-shaped 2-layer GQA model (dim 4096, 32/8 heads, ffn 11008) over
#     600 positions. Measure: the worst position's NMSE over the reference's top 64 ids (sum of squared differences
#     over sum of squares), <= 1e-4 for F32/F16/BF16 and <= 2e-3 for the block types (the GPU dots 8-bit activations
#     with dp4a, in another order), and top-1 agreement (reported, not judged: near-ties may flip).
#  3. stories260K greedy text: the same as on the CPU, decoding one step ahead (the default) and step by step
#     (EDGELLM_DEVICE_PIPELINE=0); sampled text (two seeded settings, penalties on in one): the
#     device sampler gives the host sampler's text on the same device's logits (EDGELLM_DEVICE_SAMPLING=0 for the host).
#  4. Speed (without --quick): 7B Q4_0 pp512/tg128 (goal tg >= 250 tok/s), tg at 4096 tokens of depth (goal >= 150),
#     a 2000-token prefill (goal < 0.5 s), and a 70B-shaped Q4_0 model cut to 10 layers (the same bytes per layer;
#     goal: decode weight traffic >= 75% of the copy bandwidth `bench` measures on the device), then a per-kernel
#     time table when the build supports EDGELLM_CUDA_PROFILE=1. With --quick, one bench on the tiny model (plumbing).
# Exits non-zero if a check fails. Work files go to perf/out/cuda-check (or $EDGELLM_CHECK_DIR); generated models are
# deleted after use unless --keep. $EDGELLM_BIN / $EDGELLM_MODELGEN override the two programs (the CI test runs the
# model generator through `dotnet edgellm-modelgen.dll`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

mode=both device=cuda quick=0 skip70=0 keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) mode=prepare ;;
    --prebuilt) mode=prebuilt ;;
    --list) mode=list ;;
    --device) [ $# -ge 2 ] || { echo "cuda-check: --device needs a value" >&2; exit 2; }; device=$2; shift ;;
    --device=*) device=${1#--device=} ;;
    --quick) quick=1 ;;
    --no-70b) skip70=1 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,39p' "$0"; exit 0 ;;
    *) echo "cuda-check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$device" in cuda|cuda:[0-9]*|cpu) ;; *) echo "cuda-check: --device must be cuda, cuda:N or cpu" >&2; exit 2 ;; esac

ref=${EDGELLM_CHECK_REF:-$root/perf/out/cuda-ref}
work=${EDGELLM_CHECK_DIR:-$root/perf/out/cuda-check}
nvrtc_pack=$root/perf/out/nvrtc.tar.gz
read -r -a edgellm <<<"${EDGELLM_BIN:-$root/dist/linux-x64/edgellm}"
read -r -a gen <<<"${EDGELLM_MODELGEN:-$root/dist/linux-x64/edgellm-modelgen}"

# name | modelgen options | positions (the reference's token count) | vocabulary size
model_list() {
  local t
  for t in f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 iq4_nl q2_k q3_k q4_k q5_k q6_k iq4_xs; do
    echo "tiny-$t|--shape tiny --type $t --output-type $t --seed 5|64|512"
  done
  [ "$quick" = 1 ] && return
  for t in f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 iq4_nl q2_k q3_k q4_k q5_k q6_k iq4_xs q4_k_m; do
    echo "7b2l-$t|--shape 7b --layers 2 --kv-heads 8 --type $t --seed 7|600|32000"
  done
}
# The kernel a CUDA prefill of the model's weight type takes (kernels/gemm.cu): int8 tiles for the block types, half-precision
# tensor-core tiles for F16/BF16 (float tiles below sm_80), float tiles for F32.
prefill_kernel() { case "$1" in *-f32) echo gemm-float ;; *-f16|*-bf16) echo gemm-half ;; *) echo gemm-int8 ;; esac; }
tolerance() { case "$1" in *-f32|*-f16|*-bf16) echo 1e-4 ;; *) echo 2e-3 ;; esac; }
genmodel() { # file "modelgen options"; at most 5 minutes
  # shellcheck disable=SC2086
  timeout 300 "${gen[@]}" -q -j "$(nproc)" -o "$1" $2 >/dev/null
}

prepare() {
  command -v dotnet >/dev/null || { echo "cuda-check --prepare: the .NET SDK (dotnet) is not on PATH" >&2; exit 1; }
  if [ "${NO_PUBLISH:-0}" != 1 ]; then
    echo "== publish dist/linux-x64 (edgellm, and edgellm-modelgen as a native program)" >&2
    tools/publish.sh linux-x64 >&2
    dotnet publish tools/EdgeLlm.ModelGen -c Release -r linux-x64 -p:PublishAot=true -p:StripSymbols=true -nologo -v:q \
      -o "$root/dist/linux-x64/.modelgen" >&2
    mv "$root/dist/linux-x64/.modelgen/edgellm-modelgen" "$root/dist/linux-x64/edgellm-modelgen"
    rm -rf "$root/dist/linux-x64/.modelgen"
  fi
  command -v "${edgellm[0]}" >/dev/null || { echo "cuda-check: ${edgellm[0]} is missing" >&2; exit 1; }
  rm -rf "$ref"; mkdir -p "$ref" "$work"
  "${edgellm[@]}" --version > "$ref/build.txt"
  : > "$ref/manifest.tsv"
  local name opts n vocab m tokens
  while IFS='|' read -r name opts n vocab; do
    m="$work/$name.gguf"
    echo "== reference $name ($n positions)" >&2
    genmodel "$m" "$opts"
    # Token ids: BOS then a fixed pseudo-random walk over the vocabulary (the same list every time).
    tokens=$(awk -v n="$n" -v v="$vocab" 'BEGIN { x = 12345; s = "1"; for (i = 1; i < n; i++) { x = (x * 1103515245 + 12345) % 2147483648; s = s "," (3 + x % (v - 3)) } print s }')
    "${edgellm[@]}" logits -m "$m" --device cpu --tokens "$tokens" --top 64 > "$ref/$name.jsonl"
    printf '%s\t%s\t%s\t%s\n' "$name" "$opts" "$n" "$(sha256sum "$m" | cut -d' ' -f1)" >> "$ref/manifest.tsv"
    rm -f "$m"
  done < <(model_list)
  "${edgellm[@]}" run -m models/stories260K.gguf -p "Once upon a time" -n 64 --temp 0 --ignore-eos --device cpu > "$ref/greedy.txt" 2>/dev/null
  echo "$quick" > "$ref/quick"
  local lib builtins
  lib=$(ldconfig -p 2>/dev/null | awk '/libnvrtc\.so\.[0-9]/ && $NF ~ /x86_64|lib64|\/usr\// {print $NF; exit}')
  if [ "$quick" = 1 ]; then
    echo "cuda-check: --quick: NVRTC not packed (perf/out/nvrtc.tar.gz)" >&2
  elif [ -n "$lib" ]; then
    builtins=$(ls "$(dirname "$lib")"/libnvrtc-builtins.so.* 2>/dev/null | sort | tail -n1)
    local stage; stage=$(mktemp -d)
    cp -L "$lib" "$stage/"
    [ -n "$builtins" ] && cp -L "$builtins" "$stage/"
    mkdir -p "$(dirname "$nvrtc_pack")"
    tar -C "$stage" -czf "$nvrtc_pack" .
    rm -rf "$stage"
  else
    echo "cuda-check: no NVRTC on this machine: the GPU machine must have its own (perf/out/nvrtc.tar.gz not written)" >&2
  fi
  echo
  echo "carry to the GPU machine (relative to the repository root, with the working tree):"
  echo "  dist/linux-x64/edgellm  dist/linux-x64/edgellm-modelgen  perf/out/cuda-ref$([ -f "$nvrtc_pack" ] && echo "  perf/out/nvrtc.tar.gz")"
  du -ch "${edgellm[0]}" "$root/dist/linux-x64/edgellm-modelgen" "$ref" "$nvrtc_pack" 2>/dev/null | tail -n1 || true
}

prebuilt() {
  local t
  for t in timeout awk sha256sum; do command -v $t >/dev/null || { echo "cuda-check: $t is not on PATH" >&2; exit 1; }; done
  command -v "${edgellm[0]}" >/dev/null || { echo "cuda-check: ${edgellm[0]} is missing (run --prepare where the SDK is, and carry dist/linux-x64)" >&2; exit 1; }
  [ -f "$ref/manifest.tsv" ] || { echo "cuda-check: $ref/manifest.tsv is missing (run --prepare and carry perf/out/cuda-ref)" >&2; exit 1; }
  if [ "$(cat "$ref/quick" 2>/dev/null)" = 1 ] && [ "$quick" = 0 ]; then
    echo "cuda-check: the references were prepared with --quick: run --prebuilt --quick, or prepare without it" >&2; exit 1
  fi
  mkdir -p "$work"
  export EDGELLM_KERNEL_CACHE="$work/kernel-cache"
  local rows=() failures=()
  row() { rows+=("$(printf '%-30s %-40s %s' "$1" "$2" "$3")"); echo "$1: $2 $3"; [ "$3" = FAIL ] && failures+=("$1") || true; }

  if [ "$device" != cpu ] && ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so' && [ -z "${EDGELLM_LIBNVRTC:-}" ]; then
    if [ -f "$nvrtc_pack" ]; then
      mkdir -p "$work/nvrtc" && tar -C "$work/nvrtc" -xzf "$nvrtc_pack"
      EDGELLM_LIBNVRTC=$(ls "$work"/nvrtc/libnvrtc.so.* | grep -v builtins | head -n1)
      export EDGELLM_LIBNVRTC LD_LIBRARY_PATH="$work/nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      echo "NVRTC from the carried archive: $EDGELLM_LIBNVRTC"
    else
      echo "cuda-check: warning: no NVRTC on this machine and no perf/out/nvrtc.tar.gz carried" >&2
    fi
  fi

  echo "== build: $("${edgellm[@]}" --version 2>&1 | head -n1) (references: $(head -n1 "$ref/build.txt"))"
  if [ "$device" != cpu ]; then
    echo "== devices"
    timeout 120 "${edgellm[@]}" devices --bandwidth 2>&1 | tee "$work/devices.txt" || true
    if ! grep -q "^${device/cuda/cuda:0}.*: usable\|^cuda:[0-9]* .*: usable" "$work/devices.txt"; then
      row devices "no usable CUDA device (see above)" FAIL
      print_table; exit 1
    fi
    row devices "$(grep -m1 ': usable' "$work/devices.txt" | cut -c1-40)" PASS
  fi

  echo "== numerics against the CPU references ($device)"
  local name opts n sum m tol line nmse agree maxd ok mode b k
  while IFS=$'\t' read -r name opts n sum; do
    m="$work/$name.gguf"
    if [ ! -f "$m" ] || [ "$(sha256sum "$m" | cut -d' ' -f1)" != "$sum" ]; then
      if ! genmodel "$m" "$opts"; then
        row "$name" "model generation failed or timed out" FAIL; continue
      fi
    fi
    if [ "$(sha256sum "$m" | cut -d' ' -f1)" != "$sum" ]; then
      row "$name" "regenerated model differs from the reference's" FAIL; rm -f "$m"; continue
    fi
    tol=$(tolerance "$name")
    for mode in prefill decode; do
      b=(); [ $mode = decode ] && b=(-b 1)
      if ! line=$(timeout 300 "${edgellm[@]}" logits -m "$m" --compare "$ref/$name.jsonl" --device "$device" "${b[@]}" 2> "$work/$name.$mode.err"); then
        row "$name $mode" "run failed: $(tail -n1 "$work/$name.$mode.err" | cut -c1-60)" FAIL; continue
      fi
      nmse=$(echo "$line" | sed -n 's/.*worst_nmse=\([^ ]*\).*/\1/p')
      agree=$(echo "$line" | sed -n 's/.*top1_agree=\([0-9]*\).*/\1/p')
      maxd=$(echo "$line" | sed -n 's/.*max_abs_diff=\([^ ]*\).*/\1/p')
      ok=$(awk -v a="$nmse" -v b="$tol" 'BEGIN { print (a + 0 <= b + 0) ? "PASS" : "FAIL" }')
      k=""; [ $mode = prefill ] && k=" via $(prefill_kernel "$name")"
      row "$name $mode" "nmse $nmse (<= $tol) top1 $agree/$n max|d| $maxd$k" "$ok"
    done
    [ "$keep" = 1 ] || rm -f "$m"
  done < "$ref/manifest.tsv"

  echo "== stories260K greedy text ($device vs CPU reference)"
  if timeout 120 "${edgellm[@]}" run -m models/stories260K.gguf -p "Once upon a time" -n 64 --temp 0 --ignore-eos --device "$device" \
      > "$work/greedy.txt" 2>"$work/greedy.err" && cmp -s "$work/greedy.txt" "$ref/greedy.txt"; then
    row greedy "identical to the CPU's 64 tokens" PASS
  else
    row greedy "differs or failed (diff $work/greedy.txt $ref/greedy.txt)" FAIL
  fi
  # Decoding one step ahead (the next step launched before the last token is read back, the default on a device that
  # picks tokens) against step by step (EDGELLM_DEVICE_PIPELINE=0): the same text. On the CPU both run step by step.
  if timeout 120 env EDGELLM_DEVICE_PIPELINE=0 "${edgellm[@]}" run -m models/stories260K.gguf -p "Once upon a time" -n 64 --temp 0 \
      --ignore-eos --device "$device" > "$work/greedy-step.txt" 2>"$work/greedy-step.err" && cmp -s "$work/greedy-step.txt" "$ref/greedy.txt"; then
    row "greedy step by step" "identical to the CPU's 64 tokens" PASS
  else
    row "greedy step by step" "differs or failed (diff $work/greedy-step.txt $ref/greedy.txt)" FAIL
  fi

  # The device sampler (kernels/sample.cu, the last launch of the captured decode step) against the host Sampler on the
  # same device's logits (EDGELLM_DEVICE_SAMPLING=0 keeps the logits copy and the CPU chain): same seed, same text.
  # On the CPU both runs take the host sampler (the plumbing only).
  echo "== stories260K sampled text (device sampler vs host sampler, $device)"
  local sname sopts
  while IFS='|' read -r sname sopts; do
    # shellcheck disable=SC2086
    if timeout 120 env EDGELLM_DEVICE_SAMPLING=0 "${edgellm[@]}" run -m models/stories260K.gguf -p "Once upon a time" -n 64 $sopts --ignore-eos \
          --device "$device" > "$work/sampled-$sname.host.txt" 2> "$work/sampled-$sname.host.err" \
        && timeout 120 "${edgellm[@]}" run -m models/stories260K.gguf -p "Once upon a time" -n 64 $sopts --ignore-eos \
          --device "$device" > "$work/sampled-$sname.txt" 2> "$work/sampled-$sname.err" \
        && [ -s "$work/sampled-$sname.txt" ] && cmp -s "$work/sampled-$sname.txt" "$work/sampled-$sname.host.txt"; then
      row "sampled $sname" "identical, device vs host sampler" PASS
    else
      row "sampled $sname" "differs or failed (diff $work/sampled-$sname.txt $work/sampled-$sname.host.txt)" FAIL
    fi
  done <<'EOF_SAMPLED'
chain|--temp 0.8 --seed 42 --repeat-penalty 1.1
top-p|--temp 1.3 --seed 7 --top-k 0 --top-p 0.9 --min-p 0
EOF_SAMPLED

  echo "== speed ($device)"
  bench() { # label model-name modelgen-options bench-options... ; prints the JSON line
    local label=$1 mname=$2 mopts=$3; shift 3
    local mm="$work/$mname.gguf"
    if [ ! -f "$mm" ] && ! genmodel "$mm" "$mopts"; then
      row "$label" "model generation failed or timed out" FAIL; return 1
    fi
    if ! timeout 300 "${edgellm[@]}" bench -m "$mm" --device "$device" --json "$@" > "$work/$label.out" 2> "$work/$label.err"; then
      row "$label" "bench failed: $(tail -n1 "$work/$label.err" | cut -c1-60)" FAIL; return 1
    fi
    tail -n1 "$work/$label.out"
  }
  jnum() { sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p"; }
  judge() { [ "$device" = cpu ] && echo "info" || awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN { print ((op == ">=") ? (a + 0 >= b + 0) : (a + 0 < b + 0)) ? "PASS" : "FAIL" }'; }
  local j tg pp frac
  if [ "$quick" = 1 ]; then
    if j=$(bench bench-tiny tiny-q4_0-bench "--shape tiny --type q4_0 --seed 5" -p 64 -n 16 -r 1 --bw-mib 64); then
      row "bench tiny q4_0" "pp64 $(echo "$j" | jnum pp_tok_s | cut -c1-8) tg16 $(echo "$j" | jnum tg_tok_s | cut -c1-8) tok/s" info
    fi
  else
    local m7="--shape 7b --type q4_0 --seed 1"
    if j=$(bench 7b-q4_0 7b-q4_0 "$m7" -p 512 -n 128 -r 3 --bw-mib 1024); then
      tg=$(echo "$j" | jnum tg_tok_s); pp=$(echo "$j" | jnum pp_tok_s)
      row "7B Q4_0 tg128" "$(printf '%.1f tok/s (goal >= 250), pp512 %.0f' "$tg" "$pp")" "$(judge "$tg" ">=" 250)"
    fi
    if j=$(bench 7b-q4_0-d4096 7b-q4_0 "$m7" -p 0 -n 64 -d 4096 -r 2 --bw-mib 0); then
      tg=$(echo "$j" | jnum tg_tok_s)
      row "7B Q4_0 tg64 @ d4096" "$(printf '%.1f tok/s (goal >= 150)' "$tg")" "$(judge "$tg" ">=" 150)"
    fi
    if j=$(bench 7b-q4_0-pp2000 7b-q4_0 "$m7" -p 2000 -n 0 -b 512 -r 2 --bw-mib 0); then
      pp=$(echo "$j" | jnum pp_tok_s)
      local secs; secs=$(awk -v p="$pp" 'BEGIN { printf "%.3f", (p > 0) ? 2000 / p : 1e9 }')
      row "7B Q4_0 prefill 2000" "$secs s (goal < 0.5 s)" "$(judge "$secs" "<" 0.5)"
    fi
    if [ "$device" != cpu ]; then
      EDGELLM_CUDA_PROFILE=1 timeout 300 "${edgellm[@]}" bench -m "$work/7b-q4_0.gguf" --device "$device" -p 512 -n 32 -r 1 --bw-mib 0 \
        > "$work/profile.out" 2> "$work/profile.err" || true
      if grep -q 'kernel' "$work/profile.err" && grep -qi 'profile' "$work/profile.err"; then
        echo "per-kernel times (EDGELLM_CUDA_PROFILE=1):"; grep -i -A60 'profile' "$work/profile.err" | head -n 60
      else
        echo "(this build prints no per-kernel profile for EDGELLM_CUDA_PROFILE=1)"
      fi
    fi
    # The generation loop (bench times its own): greedy 7B decode one step ahead against step by step, same text.
    if [ -f "$work/7b-q4_0.gguf" ]; then
      tps() { sed -n 's/.*generation: [0-9]* tokens in [0-9.]* ms (\([0-9.]*\) tok\/s).*/\1/p' "$1" | tail -n1; }
      local ahead step
      if timeout 300 "${edgellm[@]}" run -m "$work/7b-q4_0.gguf" -p "Once upon a time" -n 128 --temp 0 --ignore-eos --device "$device" \
            > "$work/run-ahead.txt" 2> "$work/run-ahead.err" \
          && timeout 300 env EDGELLM_DEVICE_PIPELINE=0 "${edgellm[@]}" run -m "$work/7b-q4_0.gguf" -p "Once upon a time" -n 128 --temp 0 \
            --ignore-eos --device "$device" > "$work/run-step.txt" 2> "$work/run-step.err" \
          && cmp -s "$work/run-ahead.txt" "$work/run-step.txt"; then
        ahead=$(tps "$work/run-ahead.err"); step=$(tps "$work/run-step.err")
        row "7B Q4_0 run, one step ahead" "$(printf '%.1f tok/s, step by step %.1f, same text' "${ahead:-0}" "${step:-0}")" info
      else
        row "7B Q4_0 run, one step ahead" "failed or the text differs from step by step ($work/run-ahead.txt)" FAIL
      fi
    fi
    [ "$keep" = 1 ] || rm -f "$work/7b-q4_0.gguf"
    if [ "$skip70" = 0 ]; then
      if j=$(bench 70b10-q4_0 70b10-q4_0 "--shape 70b --layers 10 --type q4_0 --seed 1" -p 128 -n 64 -r 2 --bw-mib 1024); then
        frac=$(echo "$j" | jnum tg_bw_fraction); tg=$(echo "$j" | jnum tg_tok_s)
        row "70B-shape (10 layers) tg64" "$(awk -v f="$frac" -v t="$tg" 'BEGIN { printf "%.1f%% of bw, %.1f tok/s (goal >= 75%%)", 100 * f, t }')" "$(judge "$frac" ">=" 0.75)"
      fi
      [ "$keep" = 1 ] || rm -f "$work/70b10-q4_0.gguf"
    fi
  fi
  rm -f "$work/tiny-q4_0-bench.gguf"
  print_table
  [ ${#failures[@]} -eq 0 ] || { echo "cuda-check: ${#failures[@]} check(s) failed: ${failures[*]}"; exit 1; }
  echo "cuda-check: all checks passed ($device)"
}

print_table() {
  echo
  printf '%-30s %-40s %s\n' check result verdict
  printf '%s\n' "${rows[@]}"
}

case "$mode" in
  list) printf '%-14s %s\n' model prefill; while IFS='|' read -r name _; do printf '%-14s %s\n' "$name" "$(prefill_kernel "$name")"; done < <(model_list) ;;
  prepare) prepare ;;
  prebuilt) prebuilt ;;
  both) prepare; prebuilt ;;
esac
