#!/usr/bin/env bash
# Fuzzes one target with afl-fuzz for a bounded time and reports what fuzzer_stats says.
#
#   fuzz/run.sh <target> <seconds> [findings-dir]
#   FUZZ_RACE=1 fuzz/run.sh ...   racing mode: a second thread flips guest-written bytes during each run
#   FUZZ_EXECS=N fuzz/run.sh ...  stop after about N executions (or the seconds, whichever comes first)
#   fuzz/run.sh list
#   fuzz/run.sh seeds      (re)writes the programmatic seeds into fuzz/corpus/<target>/
#
# Builds fuzz/SharpVhost.Fuzz, instruments a copy of the SharpVhost assemblies with sharpfuzz (the
# local dotnet tool in fuzz/dotnet-tools.json; kept in fuzz/out/instrumented-<hash> per build),
# then runs afl-fuzz in persistent mode on fuzz/corpus/<target>. Without a findings dir the run's output goes to a temporary folder that
# is removed afterwards (crashing inputs are copied to fuzz/out/crashes/<target>/ first); with one,
# afl-fuzz resumes there if it has been there before.
# Prints "fuzz <target>: ..." with executions, crashes and hangs; exits 1 if afl-fuzz found a crash
# or a hang, or could not run at all.
set -euo pipefail

# Everything runs inside main so that bash has read the whole script before it starts: editing the
# file while a long run is going on cannot break that run.
main() {
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  project="$here/SharpVhost.Fuzz/SharpVhost.Fuzz.csproj"
  out="$here/out"
  build="$out/build"

  if [[ ${1:-} == list || ${1:-} == seeds ]]; then
    dotnet build "$project" -c Release -o "$build" --nologo -v q >/dev/null
    if [[ $1 == seeds ]]; then exec "$build/SharpVhost.Fuzz" seeds "$here/corpus"; fi
    exec "$build/SharpVhost.Fuzz" list
  fi
  if [[ $# -lt 2 ]]; then
    echo "usage: fuzz/run.sh <target> <seconds> [findings-dir]  |  fuzz/run.sh list  |  fuzz/run.sh seeds" >&2
    exit 2
  fi
  target="$1"
  seconds="$2"
  corpus="$here/corpus/$target"
  [[ -d $corpus ]] || { echo "fuzz: no corpus at $corpus" >&2; exit 1; }
  command -v afl-fuzz >/dev/null || { echo "fuzz: afl-fuzz not found (Debian package afl++; scripts/install-deps.sh installs it)" >&2; exit 1; }

  mkdir -p "$out"
  work="$(mktemp -d "$out/run-$target.XXXXXX")"
  keep_findings=1
  if [[ $# -ge 3 ]]; then findings="$3"; else findings="$work/findings"; keep_findings=0; fi
  cleanup() { [[ -n ${FUZZ_KEEP_WORK:-} ]] || rm -rf "$work"; }
  trap cleanup EXIT

  # Build, then instrument a copy of the build (once per distinct build: runs share it read-only),
  # under a lock because several runs may start at once.
  prepare() {
    flock 9
    cd "$here"
    dotnet tool restore >/dev/null
    dotnet build "$project" -c Release -o "$build" --nologo -v q >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; return 1; }
    local stamp dir
    stamp="$(cat "$build"/SharpVhost*.dll | md5sum | cut -c1-16)"
    dir="$out/instrumented-$stamp"
    if [[ ! -f $dir/.done ]]; then
      rm -rf "$dir" && cp -r "$build" "$dir"
      for assembly in "$dir"/SharpVhost.{Interop,Memory,Virtio,VhostUser,Devices}.dll; do
        dotnet sharpfuzz "$assembly" >"$work/instrument.log" 2>&1 || { cat "$work/instrument.log" >&2; return 1; }
      done
      touch "$dir/.done"
    fi
    echo "$dir"
  }
  local instrumented
  instrumented="$(prepare 9>"$out/.build.lock")" || exit 1

  resume=()
  if [[ -f $findings/default/fuzzer_stats ]]; then resume=(-i -); else resume=(-i "$corpus"); fi
  mkdir -p "$findings"

  export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_FAST_CAL=1
  export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_FORKSRV_INIT_TMOUT=60000 AFL_AUTORESUME=1
  # Persistent mode: one .NET process runs inputs back to back; -t is per input. (No "+" after -t:
  # afl-fuzz 4.04c then derives a timeout of a few ms from the dry run, and the first GC pause kills
  # the target.) With SharpFuzz's in-process loop a timeout kills the whole target, so afl-fuzz stops
  # with "unable to communicate with fork server" instead of saving a hang: that ends the run with a
  # non-zero status, and the input that was running is kept (below).
  set +e
  # FUZZ_EXECS=N stops after about N executions (afl's -E) if that comes before the time is up.
  nice -n 10 afl-fuzz "${resume[@]}" -o "$findings" -t "${FUZZ_TIMEOUT_MS:-5000}" -m none -V "$seconds" ${FUZZ_EXECS:+-E "$FUZZ_EXECS"} \
    -- "$instrumented/SharpVhost.Fuzz" "$target" >"$work/afl.log" 2>&1
  rc=$?
  set -e

  stats="$findings/default/fuzzer_stats"
  if [[ ! -f $stats ]]; then
    echo "fuzz $target: afl-fuzz did not start (exit $rc); its log:" >&2
    tail -n 40 "$work/afl.log" >&2
    exit 1
  fi
  stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  execs="$(stat execs_done)"
  crashes="$(stat saved_crashes)"; crashes="${crashes:-$(stat unique_crashes)}"
  hangs="$(stat saved_hangs)"; hangs="${hangs:-$(stat unique_hangs)}"
  runtime="$(stat run_time)"
  echo "fuzz $target: ${execs:-0} executions, ${crashes:-?} crashes, ${hangs:-?} hangs, ${runtime:-?} s, $(stat execs_per_sec) execs/s (last), $(stat corpus_count) corpus entries, stability $(stat stability)"

  status=0
  if [[ $rc -ne 0 ]]; then
    # afl-fuzz stopped before its time was up (the target process was killed, or afl aborted).
    echo "fuzz $target: afl-fuzz exited with status $rc before its time was up; its log:" >&2
    tail -n 30 "$work/afl.log" >&2
    cp "$work/afl.log" "$out/last-afl-$target.log" 2>/dev/null || true
    mkdir -p "$out/crashes/$target"
    if cp "$findings/default/.cur_input" "$out/crashes/$target/stopped-$(date +%s)" 2>/dev/null; then
      echo "fuzz $target: the input running when it stopped is in $out/crashes/$target/" >&2
    fi
    status=1
  fi
  if [[ ${execs:-0} -eq 0 ]]; then echo "fuzz $target: no input was executed" >&2; tail -n 40 "$work/afl.log" >&2; status=1; fi
  if [[ ${crashes:-1} -ne 0 || ${hangs:-1} -ne 0 ]]; then
    status=1
    if [[ $keep_findings -eq 0 ]]; then
      mkdir -p "$out/crashes/$target"
      cp "$findings"/default/crashes/id* "$findings"/default/hangs/id* "$out/crashes/$target/" 2>/dev/null || true
      echo "fuzz $target: findings copied to $out/crashes/$target/ (replay: SharpVhost.Fuzz $target replay <file>)" >&2
    fi
  fi
  exit $status
}

main "$@"
