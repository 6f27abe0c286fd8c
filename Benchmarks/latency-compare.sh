#!/usr/bin/env bash
# Open-loop latency of two builds of licensed (and license-load), alternating in one session:
# `plan` at 1,000 users over 50 connections on Redis + Postgres with Ed25519, at each offered rate
# (`closed`: closed loop), ROUNDS times each. Prints the medians per build, rate and call.
#
#   Benchmarks/latency-compare.sh BEFORE_DIR AFTER_DIR [rounds (default 3)] [seconds (default 10)] [rates (default "2000 5000 closed")]
#
# A DIR holds release-built `licensed` and `license-load` (e.g. a copy of .build/release). Each
# run gets a fresh daemon, Redis and Postgres (Benchmarks/bench.sh with BENCH_BIN=DIR).
# LOAD_FLAGS adds options to every license-load run (e.g. LOAD_FLAGS="--phases aligned"); give
# both directories the same license-load to compare daemons alone. BEFORE_ENV and AFTER_ENV set
# bench.sh variables for one side only, to compare settings of one build (e.g.
# AFTER_ENV="BENCH_POSTGRES_OPTIONS=&writers=1" with the same DIR twice). Every run is preceded by
# a 5 s warm-up and VACUUM ANALYZE (bench.sh's BENCH_WARMUP; BENCH_WARMUP= to measure a fresh database).
# Before the first run and after the last, Benchmarks/fsync-probe.py reports for FSYNC_PROBE seconds
# (default 10; 0 skips it) how the disk under /tmp flushes: its stalls stall every commit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
before=${1:?directory of the first build}; after=${2:?directory of the second build}
rounds=${3:-3}; duration=${4:-10}; rates=${5:-"2000 5000 closed"}
export BENCH_WARMUP=${BENCH_WARMUP-5}
out=$(mktemp -d /tmp/license-latency.XXXXXX)
trap 'rm -rf "$out"' EXIT
probe() { [ "${FSYNC_PROBE:-10}" = 0 ] || python3 "$root/Benchmarks/fsync-probe.py" --seconds "${FSYNC_PROBE:-10}" --folder /tmp >&2; }
probe
for round in $(seq "$rounds"); do
  for build in before after; do
    dir=$before; side_env=${BEFORE_ENV:-}
    [ "$build" = after ] && dir=$after && side_env=${AFTER_ENV:-}
    for rate in $rates; do
      pacing=(--rate "$rate"); [ "$rate" = closed ] && pacing=()
      # shellcheck disable=SC2086 # the side's settings are split into VAR=value words on purpose
      env $side_env BENCH_BIN="$dir" "$root/Benchmarks/bench.sh" redis-postgres EdDSA run --scenario plan --users 1000 --connections 50 \
        "${pacing[@]}" ${LOAD_FLAGS:-} --duration "$duration" --report "$out/$build-$rate-$round.json" >/dev/null 2>&1 || echo "run failed: $build $rate $round" >&2
      echo "round $round $build $rate: $(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['total_calls_per_second']))" "$out/$build-$rate-$round.json" 2>/dev/null) calls/s" >&2
    done
  done
done
probe
python3 - "$out" "$rates" <<'PY'
import glob, json, os, statistics, sys
out, rates = sys.argv[1], sys.argv[2].split()
def runs(build, rate):
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, f"{build}-{rate}-*.json")))]
print("| offered calls/s | build | runs | achieved calls/s | call | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | daemon cores |")
print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
for rate in rates:
    for build in ("before", "after"):
        reports = runs(build, rate)
        if not reports:
            continue
        achieved = statistics.median(r["total_calls_per_second"] for r in reports)
        cores = statistics.median((r.get("daemon") or {}).get("cpu_cores", float("nan")) for r in reports)
        for call in ("acquire", "heartbeat", "release"):
            rows = [c for r in reports for c in r["calls"] if c["call"] == call]
            if not rows:
                continue
            med = lambda key: statistics.median(c[key] for c in rows)
            errors = sum(sum(c["errors"].values()) for c in rows)
            label = "closed loop" if rate == "closed" else f"{int(rate):,}"
            print(f"| {label} | {build} | {len(reports)} | {achieved:,.0f} | {call} | {med('p50_ms'):.2f} | {med('p90_ms'):.2f} | {med('p99_ms'):.2f} | {med('p99_9_ms'):.2f} | {errors} | {cores:.2f} |")
        # Which errors, per run and call, setup and teardown included (a failed setup acquire
        # shows later as its user's NO_SESSION): the reports go with the folder when the script ends.
        for number, report in enumerate(reports, 1):
            for c in report["calls"]:
                if c["errors"]:
                    print(f"errors: {build} {rate} run {number} {c['call']}: {c['errors']}", file=sys.stderr)
PY
