#!/usr/bin/env bash
# Runs every test: installs the peers the tests need (QEMU, a guest kernel, Spin, ...), then the
# whole solution's test suite. Prints "tests: N passed, N failed" as its last line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install-deps.sh
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
dotnet test SharpVhost.slnx -c Release --nologo 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
passed=$(grep -oE 'Passed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
failed=$(grep -oE 'Failed: +[0-9]+' "$log" | awk '{s+=$2} END {print s+0}')
echo "tests: $passed passed, $failed failed"
if [[ $rc -ne 0 || $failed -ne 0 || $passed -eq 0 ]]; then exit 1; fi
