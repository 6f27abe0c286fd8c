#!/usr/bin/env bash
# What the metrics cost: the same load against a release-built licensed on Redis + Postgres with the
# metrics on (an ops port, the default) and off (--ops-listen none), alternating in one session so
# that both see the same machine. Prints the medians per scenario and mode, and off/on ratios.
#
#   Benchmarks/metrics-cost.sh [rounds (default 3)] [seconds per run (default 10)]
#
# Build first: swift build -c release --product licensed && swift build -c release --product license-load
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}; duration=${2:-10}
out=$(mktemp -d /tmp/license-metrics-cost.XXXXXX)
for round in $(seq "$rounds"); do
  for scenario in plan heartbeat-only; do
    for mode in on off; do
      flags=""; [ "$mode" = off ] && flags="--ops-listen none"
      BENCH_LICENSED_FLAGS="$flags" "$root/Benchmarks/bench.sh" redis-postgres EdDSA run --scenario "$scenario" \
        --users 1000 --connections 50 --duration "$duration" --report "$out/$scenario-$mode-$round.json" >/dev/null
      echo "round $round $scenario metrics $mode: $(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['total_calls_per_second']))" "$out/$scenario-$mode-$round.json") calls/s" >&2
    done
  done
done
python3 - "$out" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
runs = {}
for path in glob.glob(os.path.join(out, "*.json")):
    scenario, mode, _ = os.path.basename(path)[:-5].rsplit("-", 2)
    with open(path) as f:
        report = json.load(f)
    runs.setdefault((scenario, mode), []).append(report)
print("| scenario | metrics | runs | calls/s (median) | p99 ms (median, slowest call) | daemon cores |")
print("|---|---|---:|---:|---:|---:|")
rate = {}
for (scenario, mode) in sorted(runs, key=lambda k: (k[0] != "plan", k[1] != "on")):
    reports = runs[(scenario, mode)]
    rate[(scenario, mode)] = statistics.median(r["total_calls_per_second"] for r in reports)
    p99 = statistics.median(max(c["p99_ms"] for c in r["calls"] if c["call"] in ("acquire", "heartbeat", "release")) for r in reports)
    cores = statistics.median((r.get("daemon") or {}).get("cpu_cores") or 0 for r in reports)
    print(f"| {scenario} | {mode} | {len(reports)} | {rate[(scenario, mode)]:,.0f} | {p99:.2f} | {cores:.2f} |")
for scenario in ("plan", "heartbeat-only"):
    if (scenario, "on") in rate and (scenario, "off") in rate:
        print(f"\n{scenario}: metrics on run at {rate[(scenario, 'on')] / rate[(scenario, 'off')]:.3f} of the throughput with them off")
PY
rm -rf "$out"
