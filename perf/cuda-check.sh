#!/usr/bin/env bash
# perf/cuda-check.sh: the GPU acceptance run of the CUDA backend (issue 5), one command on a Linux x64 machine with an
# NVIDIA GPU, its driver and NVRTC (libnvrtc.so.12/.13/.11.2), the .NET 10 SDK and python3:
#
#   perf/cuda-check.sh            everything below
#   perf/cuda-check.sh --no-70b   skip the 70B-shaped model (39 GB file, needs ~45 GB of disk and GPU memory)
#
# 1. publishes dist/linux-x64/edgellm (Native AOT), the binary every later step runs;
# 2. `edgellm devices --bandwidth`: the device, the kernel target, and the device-to-device copy bandwidth that the
#    benchmark fractions are measured against;
# 3. the in-process GPU tests (tests/EdgeLlm.Tests/Cuda, the [CudaDevice...] ones skip on machines without a GPU);
# 4. random tiny models of every weight type edgellm-modelgen writes (F32 F16 Q8_0 Q4_0 Q4_K Q6_K, every matrix of
#    that type): `edgellm logits --device cuda` against `--device cpu` at every position of a 64-token sequence.
#    Tolerance, per position: NMSE = sum (cuda - cpu)^2 / sum cpu^2 over the vocabulary <= 2e-3 for the
#    block-quantized types (the GPU dots 8-bit-quantized activations with dp4a, the CPU does not) and <= 1e-4 for
#    F32/F16 (only the fp16 KV cache and summation order differ);
# 5. stories260K greedy: `edgellm run --temp 0 -n 64 --ignore-eos` prints the same text on CUDA and on the CPU;
# 6. `edgellm bench --device cuda` on 7B- and 70B-shaped Q4_0 models; goals: 7B >= 250 tok/s, 70B decode weight
#    traffic >= 65% of the measured copy bandwidth.
# Prints a table per step and exits non-zero if any check fails. Work files go to perf/out/cuda-check (or
# $EDGELLM_CHECK_DIR); the big models are deleted after their benchmark unless --keep is given.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

skip70=0 keep=0
for a in "$@"; do
  case "$a" in
    --no-70b) skip70=1 ;;
    --keep) keep=1 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "cuda-check: unknown option $a (see --help)" >&2; exit 2 ;;
  esac
done

work=${EDGELLM_CHECK_DIR:-$root/perf/out/cuda-check}
mkdir -p "$work"
export EDGELLM_KERNEL_CACHE="$work/kernel-cache"
bin="$root/dist/linux-x64/edgellm"
failures=()
fail() { failures+=("$1"); echo "FAIL: $1"; }
step() { echo; echo "== $*"; }
for tool in dotnet python3; do command -v $tool >/dev/null || { echo "cuda-check: $tool is not on PATH" >&2; exit 1; }; done

step "1/6 publish the linux-x64 binary"
tools/publish.sh linux-x64 >&2
"$bin" --version

step "2/6 device"
"$bin" devices --bandwidth | tee "$work/devices.txt"
if ! grep -q '^cuda:0 .*: usable' "$work/devices.txt"; then
  echo "cuda-check: cuda:0 is not usable here (the line above says why); nothing else can be checked" >&2
  exit 1
fi
copy_bw=$(sed -n 's/^cuda:0 device-to-device copy bandwidth: \([0-9.]*\) GB\/s.*/\1/p' "$work/devices.txt")
echo "copy bandwidth used as 100%: $copy_bw GB/s"

step "3/6 in-process GPU tests (tests/EdgeLlm.Tests/Cuda)"
if dotnet test tests/EdgeLlm.Tests -c Release -nologo --filter "FullyQualifiedName~EdgeLlm.Tests.Cuda" 2>&1 | tee "$work/tests.txt" | grep -E '^(Passed|Failed)!|  Failed '; then :; fi
grep -q '^Passed!' "$work/tests.txt" || fail "in-process GPU tests (see $work/tests.txt)"
grep -qE '(CudaAgreementTests|CudaOpAgreementTests).*\[SKIP\]' "$work/tests.txt" \
  && fail "the GPU agreement tests were skipped: the test process found no usable device"

step "4/6 CUDA vs CPU logits, published binary, random models, 64 positions"
[ -f tools/EdgeLlm.ModelGen/EdgeLlm.ModelGen.csproj ] || { echo "cuda-check: tools/EdgeLlm.ModelGen (the random model generator) is missing" >&2; exit 1; }
dotnet build tools/EdgeLlm.ModelGen -c Release -nologo -v:q >&2
gen_dll=$(ls tools/EdgeLlm.ModelGen/bin/Release/net10.0/edgellm-modelgen.dll)
gen() { dotnet "$gen_dll" -q "$@" >/dev/null; }
tokens=$(python3 -c 'import random; r=random.Random(64); print(",".join(["1"]+[str(r.randrange(3,512)) for _ in range(63)]))')
printf '%-6s %9s %12s %12s %12s %10s  %s\n' type positions "worst NMSE" tolerance "max |diff|" "argmax" result | tee "$work/logits.txt"
for t in f32 f16 q8_0 q4_0 q4_k q6_k; do
  m="$work/tiny-$t.gguf"
  [ -f "$m" ] || gen -o "$m" --shape tiny --type "$t" --output-type "$t" --seed 5
  "$bin" logits -m "$m" --tokens "$tokens" --top 1000000 --device cpu > "$work/logits-$t.cpu.jsonl"
  if ! "$bin" logits -m "$m" --tokens "$tokens" --top 1000000 --device cuda -v > "$work/logits-$t.cuda.jsonl" 2> "$work/logits-$t.cuda.err"; then
    fail "logits $t: the CUDA run failed: $(tail -n1 "$work/logits-$t.cuda.err")"
    continue
  fi
  grep -q 'device cuda:' "$work/logits-$t.cuda.err" || { fail "logits $t: the run did not say it used CUDA"; continue; }
  python3 - "$t" "$work/logits-$t.cpu.jsonl" "$work/logits-$t.cuda.jsonl" <<'PY' | tee -a "$work/logits.txt"
import json, sys
t, cpu_path, gpu_path = sys.argv[1:4]
tol = 1e-4 if t in ("f32", "f16", "bf16") else 2e-3
def rows(path):
    out = []
    for line in open(path):
        o = json.loads(line)
        v = {i: l for i, l in o["top"]}
        out.append([v[i] for i in range(len(v))])
    return out
a, b = rows(cpu_path), rows(gpu_path)
assert len(a) == len(b) == 64, (len(a), len(b))
worst, maxdiff, agree = 0.0, 0.0, 0
for x, y in zip(a, b):
    num = sum((p - q) ** 2 for p, q in zip(x, y)); den = sum(p * p for p in x)
    worst = max(worst, num / den if den else num)
    maxdiff = max(maxdiff, max(abs(p - q) for p, q in zip(x, y)))
    agree += x.index(max(x)) == y.index(max(y))
ok = worst <= tol
print(f"{t:<6} {len(a):>9} {worst:>12.3e} {tol:>12.0e} {maxdiff:>12.4f} {agree:>6}/{len(a):<3}  {'PASS' if ok else 'FAIL'}")
PY
  tail -n1 "$work/logits.txt" | grep -q 'PASS$' || fail "logits $t outside the tolerance"
done

step "5/6 stories260K greedy tokens, CUDA vs CPU"
run_greedy() { "$bin" run -m models/stories260K.gguf -p "Once upon a time" -n 64 --temp 0 --ignore-eos --device "$1" 2>/dev/null; }
run_greedy cpu > "$work/greedy.cpu.txt"
run_greedy cuda > "$work/greedy.cuda.txt" || fail "stories260K on CUDA failed"
if cmp -s "$work/greedy.cpu.txt" "$work/greedy.cuda.txt"; then
  echo "identical: $(head -c 120 "$work/greedy.cuda.txt" | tr '\n' ' ')..."
else
  fail "stories260K greedy text differs (diff $work/greedy.cpu.txt $work/greedy.cuda.txt)"
fi

step "6/6 decode benchmarks on CUDA"
if ! "$bin" bench --help 2>/dev/null | grep -q -- '--device'; then
  fail "this build's 'edgellm bench' has no --device option (the bench command must pass ModelOptions.DeviceOption(args) to BackendOptions.Device)"
else
  printf '%-10s %10s %10s %12s %12s %10s %14s  %s\n' model "size GB" "pp512 t/s" "tg128 t/s" "weights GB/s" "of copy bw" goal result | tee "$work/bench.txt"
  bench_one() { # name shape goal-kind goal-value
    local name=$1 shape=$2 kind=$3 goal=$4 m="$work/$1.gguf"
    local need_gb=$([ "$shape" = 70b ] && echo 45 || echo 6)
    local free_gb=$(df -P -BG "$work" | awk 'NR==2 {gsub("G","",$4); print $4}')
    if [ ! -f "$m" ] && [ "$free_gb" -lt "$need_gb" ]; then fail "$name: $free_gb GB of disk free, $need_gb GB needed"; return; fi
    [ -f "$m" ] || gen -o "$m" --shape "$shape" --type q4_0
    if ! "$bin" bench -m "$m" --device cuda -p 512 -n 128 -r 3 --bw-mib 0 --json -v > "$work/bench-$name.out" 2> "$work/bench-$name.err"; then
      fail "$name: bench failed: $(tail -n1 "$work/bench-$name.err")"; return
    fi
    python3 - "$name" "$work/bench-$name.out" "$copy_bw" "$kind" "$goal" <<'PY' | tee -a "$work/bench.txt"
import json, sys
name, path, bw, kind, goal = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
r = json.loads(open(path).read().strip().splitlines()[-1])
assert r["backend"].startswith("cuda"), "bench did not run on CUDA: " + r["backend"]
gbs = r["bytes_per_token"] * r["tg_tok_s"] / 1e9
frac = gbs / bw
ok = (r["tg_tok_s"] >= goal) if kind == "toks" else (frac >= goal)
goal_s = f">= {goal:.0f} t/s" if kind == "toks" else f">= {goal:.0%} bw"
print(f"{name:<10} {r['size']/1e9:>10.2f} {r['pp_tok_s']:>10.1f} {r['tg_tok_s']:>12.2f} {gbs:>12.1f} {frac:>10.1%} {goal_s:>14}  {'PASS' if ok else 'FAIL'}")
PY
    tail -n1 "$work/bench.txt" | grep -q 'PASS$' || fail "$name below its goal"
    [ "$keep" = 1 ] || rm -f "$m"
  }
  bench_one llama-7b 7b toks 250
  if [ "$skip70" = 0 ]; then bench_one llama-70b 70b frac 0.65; else echo "70B skipped (--no-70b)"; fi
fi

echo
if [ ${#failures[@]} -eq 0 ]; then
  echo "cuda-check: all checks passed"
else
  echo "cuda-check: ${#failures[@]} check(s) failed:"
  printf '  - %s\n' "${failures[@]}"
  exit 1
fi
