#!/usr/bin/env python3
"""Medians of the matrix runs (Benchmarks/matrix.sh) as the Markdown tables of docs/benchmarks.md."""
import glob, json, os, re, statistics, sys

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/license-matrix"
cells = {}
for path in glob.glob(os.path.join(out, "*.json")):
    m = re.match(r"(embedded|redis-postgres)-(EdDSA|RS256)-(plan|heartbeat-only|storm)-(\d+)-(\d+)\.json", os.path.basename(path))
    if not m:
        continue
    with open(path) as f:
        report = json.load(f)
    cells.setdefault(m.groups()[:4], []).append(report)

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def call(report, names):
    for c in report["calls"]:
        if c["call"] in names:
            return c
    return None

def fmt(v, digits=1):
    if v is None:
        return "–"
    return f"{v:,.0f}" if v >= 100 else f"{v:.{digits}f}"

main_call = {"plan": ("acquire", "heartbeat", "release"), "heartbeat-only": ("heartbeat",), "storm": ("acquire",)}
print("| backend | signing | scenario | VUs | runs | calls/s | p50 ms | p99 ms | p99.9 ms | errors | daemon cores | daemon peak MiB |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
order = {"redis-postgres": 0, "embedded": 1, "EdDSA": 0, "RS256": 1, "plan": 0, "heartbeat-only": 1, "storm": 2}
for key in sorted(cells, key=lambda k: (order[k[0]], order[k[1]], order[k[2]], int(k[3]))):
    backend, alg, scenario, users = key
    reports = cells[key]
    rate = med([r["total_calls_per_second"] for r in reports])
    # Latency of the scenario's loop calls: the median over runs of each run's slowest loop call.
    def worst(field):
        return med([max((c[field] for c in r["calls"] if c["call"] in main_call[scenario]), default=None) for r in reports])
    errors = med([sum(sum(c["errors"].values()) for c in r["calls"]) for r in reports])
    cores = med([(r.get("daemon") or {}).get("cpu_cores") for r in reports])
    peak = med([(r.get("daemon") or {}).get("peak_resident_mib") for r in reports])
    if scenario == "storm":
        rate = med([sum(c["count"] for c in r["calls"] if c["call"] == "acquire") / r["seconds"] if r["seconds"] else None for r in reports])
    print(f"| {backend} | {'Ed25519' if alg == 'EdDSA' else 'RSA-4096'} | {scenario} | {int(users):,} | {len(reports)} | {fmt(rate)} | {fmt(worst('p50_ms'), 2)} | {fmt(worst('p99_ms'), 2)} | {fmt(worst('p99_9_ms'), 2)} | {fmt(errors, 0)} | {fmt(cores, 2)} | {fmt(peak, 0)} |")

idle = {}
for path in glob.glob(os.path.join(out, "*-idle-10000-*.txt")):
    backend = os.path.basename(path).split("-idle-")[0]
    text = open(path).read()
    m = re.search(r"with the connections open \(peak (\d+) MiB\): ([\d.]+) KiB per connection", text)
    opened = re.search(r"(\d+) connections open \((\d+) failed", text)
    if m and opened:
        idle.setdefault(backend, []).append((int(m.group(1)), float(m.group(2)), int(opened.group(1)), int(opened.group(2))))
if idle:
    print()
    print("| backend | runs | idle TLS connections held | failed | daemon peak MiB | KiB per connection |")
    print("|---|---:|---:|---:|---:|---:|")
    for backend, rows in sorted(idle.items()):
        print(f"| {backend} | {len(rows)} | {med([r[2] for r in rows]):,.0f} | {med([r[3] for r in rows]):,.0f} | {med([r[0] for r in rows]):,.0f} | {med([r[1] for r in rows]):.1f} |")
