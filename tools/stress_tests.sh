#!/usr/bin/env bash
# The test command under load: runs tools/run_tests.sh three times in a row while two
# CPU-burning processes run beside it, as on a busy CI machine, and prints one line per run.
# Exits non-zero if any run failed. Extra arguments go to pytest, e.g. `tools/stress_tests.sh -x`.
#
# Environment: STRESS_RUNS (default 3), STRESS_BURNERS (default 2).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${STRESS_RUNS:-3}
burners=${STRESS_BURNERS:-2}
log_dir=$root/build/stress
mkdir -p "$log_dir"

# Set up first, unloaded and untimed: the runs measure the suite, not a venv install.
"$root/tools/setup_env.sh"

pids=()
cleanup() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq "$burners"); do
  python3 -c "while True: pass" &
  pids+=("$!")
done
echo "[stress] $burners CPU burners running (pids ${pids[*]}) on $(nproc) cores"

failed=0
for run in $(seq "$runs"); do
  log=$log_dir/run_$run.log
  started=$(date +%s)
  if "$root/tools/run_tests.sh" -q -p no:cacheprovider "$@" > "$log" 2>&1; then
    verdict=passed
  else
    verdict=FAILED
    failed=1
  fi
  summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed)' "$log" | tail -n 1 || true)
  echo "[stress] run $run/$runs: $verdict in $(( $(date +%s) - started )) s: ${summary:-no summary} (log: $log)"
done
exit "$failed"
