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
dotnet test EdgeLlm.sln -c Release -nologo 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# Sum the per-assembly summaries: "Passed!  - Failed: 0, Passed: 3, Skipped: 0, Total: 3, ...".
read -r passed failed skipped < <(grep -E '(Passed|Failed)! +- +Failed: +[0-9]+, Passed: +[0-9]+, Skipped: +[0-9]+' "$log" |
  sed -E 's/.*Failed: +([0-9]+), Passed: +([0-9]+), Skipped: +([0-9]+).*/\2 \1 \3/' |
  awk '{p+=$1; f+=$2; s+=$3} END {print p+0, f+0, s+0}')
rm -f "$log"
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi   # build failure or crashed test host
echo "$passed passed, $failed failed, $skipped skipped"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
