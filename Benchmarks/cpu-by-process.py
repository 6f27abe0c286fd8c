#!/usr/bin/env python3
"""Which processes use the machine's CPU over a few seconds, from /proc (Linux).

    python3 Benchmarks/cpu-by-process.py [--seconds 8] [--top 8]

Prints the cores each command name used (user + system time of all its processes, summed) and
how busy the whole machine was. Run it while a benchmark is in its measured loop: on the
benchmark's machine the daemon shares the cores with Postgres, Redis and the load generator,
and a p99 depends on how busy all of them keep the cores (docs/benchmarks.md, "Where an acquire's
time goes now"). A process that starts or ends within the window is counted only for the part
both readings saw.
"""
import argparse
import collections
import os
import time


def process_times():
    """CPU ticks (user + system) per pid, with the command name."""
    times = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as file:
                stat = file.read()
        except OSError:
            continue  # gone meanwhile
        close = stat.rfind(")")
        name = stat[stat.find("(") + 1:close]
        fields = stat[close + 2:].split()
        # Fields 14 and 15 of stat(5) are utime and stime; `fields` starts at field 3.
        times[pid] = (name, int(fields[11]) + int(fields[12]))
    return times


def machine_times():
    """Busy and idle ticks of all CPUs together (the `cpu` line of /proc/stat)."""
    with open("/proc/stat") as file:
        values = [int(v) for v in file.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, idle


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8, help="how long to measure (default 8)")
    parser.add_argument("--top", type=int, default=8, help="how many command names to print (default 8)")
    args = parser.parse_args()
    if args.seconds <= 0 or args.top <= 0:
        parser.error("--seconds and --top must be positive")
    ticks = os.sysconf("SC_CLK_TCK")
    before, (busy0, idle0) = process_times(), machine_times()
    time.sleep(args.seconds)
    after, (busy1, idle1) = process_times(), machine_times()
    used = collections.Counter()
    for pid, (name, total) in after.items():
        if pid in before and before[pid][0] == name:
            used[name] += total - before[pid][1]
    for name, spent in used.most_common(args.top):
        if spent > 0:
            print(f"{name:24s} {spent / ticks / args.seconds:5.2f} cores")
    busy, idle = busy1 - busy0, idle1 - idle0
    print(f"machine: {100 * busy / max(1, busy + idle):.0f} % busy of {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
