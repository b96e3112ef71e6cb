#!/usr/bin/env bash
# The linux-arm64 tests, run from x64 under qemu-aarch64-static (issue 6): makes the bullseye sysroot if needed,
# cross-publishes dist/linux-arm64/edgellm and the kernelcheck harness (tests/EdgeLlm.KernelCheck), checks the glibc
# floor, runs the harness with QEMU_CPU=cortex-a53 (AdvSimd, no dot product), cortex-a76 (sdot) and cortex-a76 with
# EDGELLM_KERNEL_DP=0, the stories260K greedy-256 run through the published edgellm on both CPUs, and a greedy run in a
# root that holds only the C library (no OpenSSL: issue 14.2).
# Ends with one line: "N passed, N failed, 0 skipped". Step timings go to stderr.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
sysroot="$root/.sysroot/bullseye-arm64"
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "PASS $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
finish() { echo "$passed passed, $failed failed, 0 skipped"; [ "$failed" -eq 0 ]; exit; }
timed() { local t0=$SECONDS; "$@"; local rc=$?; echo "test-arm64: $(($SECONDS - t0)) s: $*" >&2; return $rc; }

timed tools/arm64-sysroot.sh "$sysroot" || { bad "arm64 sysroot (tools/arm64-sysroot.sh)"; finish; }
# publish.sh checks the glibc floor of rid-matrix.json itself and fails when a symbol is newer.
timed tools/publish.sh linux-arm64 || { bad "publish linux-arm64 (build or glibc floor)"; finish; }
bin="$root/dist/linux-arm64/edgellm"
kc_out="$root/obj/kernelcheck/linux-arm64"
rm -rf "$kc_out"
timed dotnet publish tests/EdgeLlm.KernelCheck/EdgeLlm.KernelCheck.csproj -c Release -r linux-arm64 \
  -p:SysRoot="$sysroot" -o "$kc_out" -nologo -v:q >&2 || { bad "publish kernelcheck for linux-arm64"; finish; }
kc="$kc_out/kernelcheck"

# One native file per program, an arm64 ELF (e_machine 183 = b7 00), no GLIBC symbol version newer than 2.31.
if [ "$(ls "$root/dist/linux-arm64" | wc -l)" -ge 1 ] && ! ls "$root/dist/linux-arm64" | grep -qv -e '^edgellm$' -e '^edgellm-convert$' -e '^edgellm-modelgen$' &&
   [ "$(od -An -tx1 -j18 -N2 "$bin" | tr -d ' ')" = "b700" ]; then ok "linux-arm64: native arm64 files only ($(ls "$root/dist/linux-arm64" | tr '\n' ' '))"
else bad "linux-arm64: dist/linux-arm64 holds $(ls "$root/dist/linux-arm64" | tr '\n' ' ')"; fi
need=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)
if [ -n "$need" ] && [ "$(printf '%s\n2.31\n' "$need" | sort -V | tail -n1)" = "2.31" ]; then ok "edgellm glibc floor: needs GLIBC_$need <= 2.31"
else bad "edgellm glibc floor: needs GLIBC_${need:-?}, newer than 2.31"; fi
echo "test-arm64: edgellm $(stat -c %s "$bin") bytes" >&2

export QEMU_LD_PREFIX="$sysroot"   # bullseye's glibc 2.31: the binaries run against the floor itself
q() { local cpu=$1; shift; QEMU_CPU=$cpu qemu-aarch64-static "$@"; }

harness() {  # cpu label [env...]
  local cpu=$1 label=$2; shift 2
  local log; log=$(mktemp)
  local t0=$SECONDS
  env "$@" QEMU_CPU="$cpu" qemu-aarch64-static "$kc" "$root" > "$log" 2>&1
  local rc=$?
  echo "test-arm64: $(($SECONDS - t0)) s: kernelcheck $label" >&2
  grep '^FAIL' "$log"
  local p f
  read -r p f < <(tail -n1 "$log" | sed -nE 's/^([0-9]+) passed, ([0-9]+) failed$/\1 \2/p')
  if [ -z "${p:-}" ]; then bad "kernelcheck $label: no summary (exit $rc): $(tail -n3 "$log" | tr '\n' ' ')"
  else
    passed=$((passed + p)); failed=$((failed + f))
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && bad "kernelcheck $label: exit $rc"
    echo "kernelcheck $label: $(head -n1 "$log"); $p passed, $f failed"
  fi
  rm -f "$log"
}
harness cortex-a53 "cortex-a53"
harness cortex-a76 "cortex-a76"
harness cortex-a76 "cortex-a76 EDGELLM_KERNEL_DP=0" EDGELLM_KERNEL_DP=0

# --version names the SIMD the binary sees: Neon everywhere, DotProd only on the A76.
v53=$(q cortex-a53 "$bin" --version 2>&1); v76=$(q cortex-a76 "$bin" --version 2>&1)
if echo "$v53" | grep -qw Neon && ! echo "$v53" | grep -qw DotProd; then ok "edgellm --version on cortex-a53: Neon, no DotProd"
else bad "edgellm --version on cortex-a53: $v53"; fi
if echo "$v76" | grep -qw Neon && echo "$v76" | grep -qw DotProd; then ok "edgellm --version on cortex-a76: Neon DotProd"
else bad "edgellm --version on cortex-a76: $v76"; fi

# stories260K greedy-256 through the published binary: stdout must be the reference text (as CommandTests builds it).
want=$(mktemp); got=$(mktemp)
q cortex-a76 "$kc" --reference-text 256 "$root" > "$want" 2>&1
for cpu in cortex-a53 cortex-a76; do
  t0=$SECONDS
  q $cpu "$bin" run -n 256 --temp 0 -c 512 --ignore-eos -m "$root/models/stories260K.gguf" > "$got" 2>/dev/null </dev/null
  rc=$?
  echo "test-arm64: $(($SECONDS - t0)) s: edgellm run -n 256 on $cpu" >&2
  if [ "$rc" -eq 0 ] && [ -s "$want" ] && cmp -s "$want" "$got"; then ok "edgellm greedy-256 on $cpu matches the reference text"
  else bad "edgellm greedy-256 on $cpu (exit $rc): $(diff <(fold -w 80 "$want") <(fold -w 80 "$got") | head -n 4 | tr '\n' ' ')"; fi
done
rm -f "$want" "$got"

# A root with only the C library of the sysroot (ld.so, libc, libm, libdl, librt, libpthread: what glibc's libc6 holds;
# no libssl, no libstdc++, no ICU), as on a distroless or minimal Jetson image. `run` (sampled: the random seed was what
# loaded OpenSSL, and greedy: the reference text) must work there; the loader's trace (LD_DEBUG=libs) must show that no
# TLS library was even looked for (qemu falls back to host paths for files the prefix lacks, so the trace is the proof).
minroot=$(mktemp -d); want=$(mktemp); got=$(mktemp); trace=$(mktemp)
mkdir -p "$minroot/lib"
for l in ld-linux-aarch64.so.1 libc.so.6 libm.so.6 libdl.so.2 librt.so.1 libpthread.so.0; do
  cp -L "$sysroot/lib/aarch64-linux-gnu/$l" "$minroot/lib/" || bad "libc-only root: $l missing in $sysroot"
done
QEMU_LD_PREFIX="$sysroot" q cortex-a76 "$kc" --reference-text 32 "$root" > "$want" 2>&1
QEMU_LD_PREFIX="$minroot" LD_DEBUG=libs q cortex-a76 "$bin" run -n 32 --temp 0 -m "$root/models/stories260K.gguf" > "$got" 2> "$trace"
rc=$?
if [ "$rc" -eq 0 ] && [ -s "$want" ] && cmp -s "$want" "$got"; then ok "edgellm run (greedy) in a libc-only root matches the reference text"
else bad "edgellm run in a libc-only root (exit $rc): $(grep -v '^ *[0-9]*:' "$trace" | tail -n 2 | tr '\n' ' ')"; fi
QEMU_LD_PREFIX="$minroot" LD_DEBUG=libs q cortex-a76 "$bin" run -n 16 --ignore-eos -p Once -m "$root/models/stories260K.gguf" > "$got" 2>> "$trace"
rc=$?
if [ "$rc" -eq 0 ] && grep -q 'generation: 16 tokens' "$trace"; then ok "edgellm run (sampled, random seed) in a libc-only root"
else bad "edgellm run (sampled) in a libc-only root (exit $rc): $(grep -v '^ *[0-9]*:' "$trace" | tail -n 2 | tr '\n' ' ')"; fi
if grep -q 'find library=libc.so.6' "$trace" && ! grep -qE 'libssl|libcrypto' "$trace"; then ok "edgellm run looks for no TLS library (LD_DEBUG=libs)"
else bad "edgellm run in a libc-only root: $(grep -m1 -E 'libssl|libcrypto' "$trace" || echo 'no loader trace')"; fi
rm -rf "$minroot" "$want" "$got" "$trace"
finish
