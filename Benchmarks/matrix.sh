#!/usr/bin/env bash
# Runs the benchmark matrix of docs/benchmarks.md: every built-in scenario at 100, 1,000 and
# 10,000 virtual users, on the embedded default and on Redis + Postgres, with Ed25519 and
# RSA-4096 signing, RUNS times each (a fresh daemon, Redis and Postgres per run), plus idle
# TLS connections. Writes one JSON report per run into OUT, then the medians table.
#
#   Benchmarks/matrix.sh [OUT] [RUNS]        (default: /tmp/license-matrix, 3)
#
# Build first: swift build -c release --product licensed && swift build -c release --product license-load
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-/tmp/license-matrix}; runs=${2:-3}
duration=${MATRIX_DURATION:-5}
mkdir -p "$out"
for run in $(seq "$runs"); do
  for backend in redis-postgres embedded; do
    for alg in EdDSA RS256; do
      for scenario in plan heartbeat-only storm; do
        for users in 100 1000 10000; do
          file="$out/$backend-$alg-$scenario-$users-$run.json"
          [ -s "$file" ] && continue
          if [ "$scenario" = storm ]; then connections=$users; else connections=$(( users / 20 > 5 ? users / 20 : 5 )); fi
          echo "run $run: $backend $alg $scenario $users users / $connections connections" >&2
          "$root/Benchmarks/bench.sh" "$backend" "$alg" run --scenario "$scenario" --users "$users" --connections "$connections" \
            --duration "$duration" --no-progress --report "$file" >"$out/$backend-$alg-$scenario-$users-$run.txt" 2>&1 || echo "  failed (see .txt)" >&2
        done
      done
    done
  done
  for backend in redis-postgres embedded; do
    file="$out/$backend-idle-10000-$run.txt"
    [ -s "$file" ] && continue
    echo "run $run: $backend idle 10000" >&2
    "$root/Benchmarks/bench.sh" "$backend" EdDSA idle --connections 10000 --hold 3 2>/dev/null | tail -2 >"$file" || echo "  failed" >&2
  done
done
python3 "$root/Benchmarks/summarize.py" "$out"
