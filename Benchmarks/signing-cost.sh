#!/usr/bin/env bash
# What keeping the lease-signing key in a PKCS#11 token costs: `plan` at 1,000 users over 50
# connections against a release-built licensed on Redis + Postgres, with the key in the repository
# and in a SoftHSM2 token (Debian's softhsm2; keys made with OpenSC's pkcs11-tool), for EdDSA and
# RS256 (RSA-4096, as licensed generates), alternating in one session. Prints the medians and the
# daemon's mean time per signature (licensed_signing_duration_seconds from its metrics).
#
#   Benchmarks/signing-cost.sh [rounds (default 3)] [seconds per run (default 10)] [users (default 1000)]
#
# "ms per signature" is the daemon's mean time from asking for a signature to having it, waiting
# for the token's threads included; a run with few users (e.g. 20) shows the signature alone.
#
# Build first: swift build -c release --product licensed && swift build -c release --product license-load
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}; duration=${2:-10}; users=${3:-1000}
out=$(mktemp -d /tmp/license-signing-cost.XXXXXX)
trap 'rm -rf "$out"' EXIT
module=/usr/lib/softhsm/libsofthsm2.so
mkdir -p "$out/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$out" > "$out/softhsm2.conf"
export SOFTHSM2_CONF="$out/softhsm2.conf"
echo 1234 > "$out/pin"
chmod 755 "$out"; chmod 644 "$out/pin"
softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 >/dev/null
pkcs11-tool --module "$module" --token-label bench --login --pin 1234 --keypairgen --key-type EC:edwards25519 --label ed --id 01 >/dev/null
pkcs11-tool --module "$module" --token-label bench --login --pin 1234 --keypairgen --key-type rsa:4096 --label rsa --id 02 >/dev/null
uri() { echo "pkcs11:token=bench;object=$1?module-path=$module&pin-source=file:$out/pin"; }

for round in $(seq "$rounds"); do
  for alg in EdDSA RS256; do
    for place in repository softhsm; do
      flags=""
      if [ "$place" = softhsm ]; then
        if [ "$alg" = EdDSA ]; then flags="--signing-key $(uri ed)"; else flags="--signing-key $(uri rsa)"; fi
      fi
      BENCH_LICENSED_FLAGS="$flags" BENCH_METRICS_FILE="$out/$alg-$place-$round.metrics" "$root/Benchmarks/bench.sh" redis-postgres "$alg" run --scenario plan \
        --users "$users" --connections "$(( users < 50 ? users : 50 ))" --duration "$duration" --report "$out/$alg-$place-$round.json" >/dev/null
      echo "round $round $alg $place: $(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['total_calls_per_second']))" "$out/$alg-$place-$round.json") calls/s" >&2
    done
  done
done
python3 - "$out" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
runs = {}
for path in glob.glob(os.path.join(out, "*.json")):
    alg, place, _ = os.path.basename(path)[:-5].split("-")
    with open(path) as f:
        runs.setdefault((alg, place), []).append(json.load(f))
def signature_ms(path):
    total = count = 0.0
    for line in open(path):
        if line.startswith("licensed_signing_duration_seconds_sum"):
            total = float(line.split()[-1])
        elif line.startswith("licensed_signing_duration_seconds_count"):
            count = float(line.split()[-1])
    return 1000 * total / count if count else float("nan")
print("| signing | key in | runs | calls/s (median) | failed calls (median) | acquire p50 ms | acquire p99 ms | ms per signature (median of means) | daemon cores |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
rate = {}
for alg in ("EdDSA", "RS256"):
    for place in ("repository", "softhsm"):
        reports = runs.get((alg, place), [])
        if not reports:
            continue
        def call(report, name, field):
            return next((c[field] for c in report["calls"] if c["call"] == name), 0)
        rate[(alg, place)] = statistics.median(r["total_calls_per_second"] for r in reports)
        p50 = statistics.median(call(r, "acquire", "p50_ms") for r in reports)
        p99 = statistics.median(call(r, "acquire", "p99_ms") for r in reports)
        cores = statistics.median((r.get("daemon") or {}).get("cpu_cores") or 0 for r in reports)
        signing = statistics.median(signature_ms(p) for p in glob.glob(os.path.join(out, f"{alg}-{place}-*.metrics")))
        failed = statistics.median(sum(sum(c["errors"].values()) for c in r["calls"]) for r in reports)
        reasons = sorted({reason for r in reports for c in r["calls"] for reason in c["errors"]})
        print(f"| {alg} | {place} | {len(reports)} | {rate[(alg, place)]:,.0f} | {failed:,.0f}{' (' + ', '.join(reasons) + ')' if reasons else ''} | {p50:.2f} | {p99:.2f} | {signing:.3f} | {cores:.2f} |")
for alg in ("EdDSA", "RS256"):
    if (alg, "repository") in rate and (alg, "softhsm") in rate:
        print(f"\n{alg}: the key in SoftHSM2 runs at {rate[(alg, 'softhsm')] / rate[(alg, 'repository')]:.3f} of the throughput with it in the repository")
PY
