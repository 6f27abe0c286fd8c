#!/usr/bin/env python3
"""Summarises the `call trace` lines of a licensed log (`--trace-every N --log-level info`).

    python3 Benchmarks/trace_summary.py [--skip SECONDS] [--between FROM TO] [--per-second] licensed.log [more.log ...]

--skip leaves out the traces of the first SECONDS after each log's first trace (a run's setup:
sign-ins and, with spread phases, the acquires before the loop).
--between keeps only the traces stamped from FROM to TO, both inclusive, written as the log writes
its stamps to the second (2026-12-03T02:34:55): the measured loop of a run that had a warm-up
(bench.sh's BENCH_WARMUP traces its closed-loop warm-up and setup in the same log).
--per-second prints how many traces each second of the log has, instead of the summary: the
measured loop is the stretch at a steady count (the offered rate over --trace-every).

Prints, per call, the median, p90, p99 and mean of the time (ms) each stage took since the previous
stage, largest mean first, and of the whole call. Reads the text log format and the JSON one
(--log-format json).
"""
import argparse
import datetime
import json
import re
import statistics
import sys
from collections import defaultdict

PAIR = re.compile(r'([a-z_.]+(?:#\d+)?)=(\S+)')
SKIP = {"call", "code"}
STAMP = re.compile(r'^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)')


def traces(lines, skip, between=None):
    first = None
    for line in lines:
        if "call trace" not in line:
            continue
        if line.lstrip().startswith("{"):
            record = json.loads(line)
            fields = record.get("metadata", record)
            stamp = str(record.get("timestamp", ""))[:19]
        else:
            fields = dict(PAIR.findall(line.split("call trace")[0]))
            match = STAMP.match(line)
            stamp = match.group(1) if match else ""
        if skip and stamp:
            at = datetime.datetime.fromisoformat(stamp)
            first = first or at
            if (at - first).total_seconds() < skip:
                continue
        if between and not (between[0] <= stamp <= between[1]):
            continue
        yield stamp, fields


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(arguments):
    parser = argparse.ArgumentParser(description="Summarise licensed's call trace lines.")
    parser.add_argument("--skip", type=float, default=0, metavar="SECONDS")
    parser.add_argument("--between", nargs=2, metavar=("FROM", "TO"))
    parser.add_argument("--per-second", action="store_true")
    parser.add_argument("paths", nargs="+")
    options = parser.parse_args(arguments)
    between = tuple(stamp[:19] for stamp in options.between) if options.between else None
    per_call = defaultdict(lambda: defaultdict(list))
    seconds = defaultdict(int)
    for path in options.paths:
        with open(path, encoding="utf-8") as handle:
            for stamp, fields in traces(handle, options.skip, between):
                seconds[stamp] += 1
                call = fields.get("call", "?")
                if fields.get("code"):
                    call += " (refused)"
                stages = {k: int(v) for k, v in fields.items() if k not in SKIP and str(v).lstrip("-").isdigit()}
                for stage, micros in stages.items():
                    per_call[call][stage].append(micros / 1000)
    if options.per_second:
        for stamp, count in sorted(seconds.items()):
            print(f"{stamp} {count}")
        return
    for call, stages in sorted(per_call.items()):
        count = len(stages.get("total_us", []))
        print(f"{call}: {count} traced calls")
        print(f"  {'stage':24} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
        total = stages.pop("total_us", [])
        for stage, values in sorted(stages.items(), key=lambda kv: -statistics.mean(kv[1])):
            print(f"  {stage:24} {statistics.median(values):8.2f} {percentile(values, 0.9):8.2f} {percentile(values, 0.99):8.2f} {statistics.mean(values):8.2f}")
        if total:
            print(f"  {'total':24} {statistics.median(total):8.2f} {percentile(total, 0.9):8.2f} {percentile(total, 0.99):8.2f} {statistics.mean(total):8.2f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
