#!/usr/bin/env python3
"""How long the disk under a folder takes to flush: writes 8 KiB and fdatasyncs it, every 5 ms.

    python3 Benchmarks/fsync-probe.py [--seconds 10] [--folder /tmp]

Prints the flushes' median, p99, p99.9 and maximum (ms) and when each flush over 20 ms happened.
A Postgres commit waits for one such flush of its WAL, so a stall here stalls every commit in
flight: run it beside or around a benchmark to tell the disk's stalls from the daemon's own
waiting (docs/benchmarks.md, "The disk's flush stalls"). Light on purpose: about 200 small
flushes a second.
"""
import argparse
import os
import tempfile
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="how long to probe (default 10)")
    parser.add_argument("--folder", default="/tmp", help="a folder on the disk to probe (default /tmp)")
    args = parser.parse_args()
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if not os.path.isdir(args.folder):
        parser.error(f"--folder {args.folder} is not a folder")
    block = os.urandom(8192)
    latencies, stalls = [], []
    with tempfile.NamedTemporaryFile(dir=args.folder, prefix="fsync-probe.") as file:
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            os.pwrite(file.fileno(), block, 0)
            start = time.perf_counter()
            os.fdatasync(file.fileno())
            took = (time.perf_counter() - start) * 1000
            latencies.append(took)
            if took > 20:
                stalls.append(f"{time.strftime('%H:%M:%S')} {took:.0f}")
            time.sleep(0.005)
    latencies.sort()
    count = len(latencies)

    def at(fraction):
        return latencies[min(count - 1, int(count * fraction))]

    print(f"fsync probe, {args.folder}: {count} flushes in {args.seconds:g} s: p50 {at(0.5):.2f} ms, "
          f"p99 {at(0.99):.2f}, p99.9 {at(0.999):.2f}, max {latencies[-1]:.2f}; "
          f"{len(stalls)} over 20 ms" + (f" ({', '.join(stalls)})" if stalls else ""))


if __name__ == "__main__":
    main()
