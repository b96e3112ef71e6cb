#!/usr/bin/env bash
# The test suite, as CI runs it: publishes the linux-x64 binary (some tests run the published file), runs
# every xunit test in Release, and ends with one line: "N passed, N failed, N skipped".
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! tools/publish.sh linux-x64; then
  echo "test: publishing dist/linux-x64/edgellm failed" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

log=$(mktemp)
# Every test's result and duration goes to the log; the terminal gets everything but the passed-test lines, then the
# slowest tests (what to look at when the suite slows down).
dotnet test EdgeLlm.sln -c Release -nologo --logger "console;verbosity=normal" 2>&1 | tee "$log" | grep --line-buffered -vE '^ +Passed [A-Za-z_]'
rc=${PIPESTATUS[0]}
# Durations: "[< 1 ms]", "[12 ms]", "[4 s]", "[1 m 3 s]". Per test, then per class (theories add up).
durations() {
  awk '/^ +Passed [A-Za-z_].*\[[^]]*\]$/ {
         d = $0; sub(/.*\[/, "", d); sub(/\]$/, "", d); ms = 0; n = split(d, w, " ")
         for (i = 1; i < n; i += 2) { v = w[i] + 0; u = w[i + 1]; ms += (u == "m") ? v * 60000 : (u == "s") ? v * 1000 : (u == "ms") ? v : 0 }
         name = $0; sub(/^ +Passed /, "", name); sub(/ \[[^]]*\]$/, "", name); print ms "\t" name }' "$1"
}
echo "test: the slowest tests:"
durations "$log" | sort -t$'\t' -k1,1 -rn | head -n 15 | awk -F'\t' '{ printf "%8.1f s  %s\n", $1 / 1000, substr($2, 1, 140) }'
echo "test: the slowest classes (sum of their tests):"
durations "$log" | awk -F'\t' '{ c = $2; sub(/\(.*/, "", c); sub(/\.[^.]*$/, "", c); t[c] += $1; k[c]++ }
  END { for (c in t) printf "%.0f\t%s\t%d\n", t[c], c, k[c] }' | sort -t$'\t' -k1,1 -rn | head -n 15 |
  awk -F'\t' '{ printf "%8.1f s  %s (%d tests)\n", $1 / 1000, $2, $3 }'

# Sum the per-assembly summaries. At normal verbosity vstest ends each assembly with a block
# "Total tests: N / Passed: N / Failed: N / Skipped: N" (a count it has none of is left out); at minimal verbosity
# with one line "Passed!  - Failed: 0, Passed: 3, Skipped: 0, Total: 3, ...". Either is read.
read -r passed failed skipped < <(awk '
  /(Passed|Failed)! +- +Failed: +[0-9]+, Passed: +[0-9]+, Skipped: +[0-9]+/ {
    s = $0; sub(/.*Failed: +/, "", s); f += s + 0; s = $0; sub(/.*Passed: +/, "", s); p += s + 0; s = $0; sub(/.*Skipped: +/, "", s); k += s + 0; next }
  /^Total tests: +[0-9]+/ { block = 1; next }
  block && /^ +Passed: +[0-9]+$/ { p += $2; next }
  block && /^ +Failed: +[0-9]+$/ { f += $2; next }
  block && /^ +Skipped: +[0-9]+$/ { k += $2; next }
  block && /^ +Total time:/ { block = 0 }
  END { print p + 0, f + 0, k + 0 }' "$log")
rm -f "$log"
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi   # build failure or crashed test host

# The NuGet package `EdgeLlm` (the Core assembly and its README), and the Native AOT sample that uses it through
# Microsoft.Extensions.AI's IChatClient, built from that package: it must print a story from the bundled model.
rm -rf dist/nuget dist/sample
if dotnet pack src/EdgeLlm.Core -c Release -nologo -v:q -o dist/nuget &&
   grep -aq 'lib/net10.0/EdgeLlm.Core.dll' dist/nuget/EdgeLlm.*.nupkg && grep -aq 'README.md' dist/nuget/EdgeLlm.*.nupkg; then
  passed=$((passed + 1)); echo "test: dotnet pack: $(ls dist/nuget)"
else
  failed=$((failed + 1)); echo "test: dotnet pack src/EdgeLlm.Core failed or the package lacks the assembly/README" >&2
fi
# The sample is built against the package just packed (its cached copy dropped first: the version does not change).
version=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' Directory.Build.props | head -n1)
rm -rf "${NUGET_PACKAGES:-$HOME/.nuget/packages}/edgellm/$version"
if dotnet publish samples/EdgeLlm.Sample -c Release -r linux-x64 -nologo -v:q -o dist/sample \
     -p:EdgeLlmPackageVersion="$version" -p:RestoreAdditionalProjectSources="$root/dist/nuget" &&
   story=$(dist/sample/edgellm-sample models/stories260K.gguf) && [ "${#story}" -gt 40 ]; then
  passed=$((passed + 1)); echo "test: AOT sample: ${story:0:80}..."
else
  failed=$((failed + 1)); echo "test: the Native AOT sample (samples/EdgeLlm.Sample) did not build or print a story" >&2
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
