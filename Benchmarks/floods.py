#!/usr/bin/env python3
"""Hostile-client floods against a licensed binary: the daemon's memory and a good client's
throughput under each.

    python3 Benchmarks/floods.py [--binary .build/release/licensed] [--seconds 20] [--report FILE]

Each flood runs against a fresh daemon on its embedded default (a temporary data folder, a free
loopback port), stopped afterwards. Floods:

  id0, garbage, unsigned  4 connections each writing one kind of bad frame before any Hello
                          (request id 0; bytes that are not protobuf; a call before Hello),
                          as fast as the daemon takes them, never reading an answer
  signed                  4 connections that sign in, then write GetSigningKeys calls without
                          ever reading an answer
  bad-hello               8 processes sending Hellos with a wrong API key as fast as they are
                          answered, reconnecting whenever the daemon closes the connection

Flooders connect from 127.0.0.2, the good client from 127.0.0.1. For each: the daemon's resident memory after a good client signed in (baseline), its peak
(VmHWM) during the flood, its resident memory after the flooders left, and the good client's
GetSigningKeys calls per second (one call at a time) before and during the flood.
Everything targets 127.0.0.1 and stops by itself.
"""
import argparse
import json
import multiprocessing
import os
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import tempfile
import time

KEY = "lk_floods_bench_operator_key_0001"
ALPN = "coditect-license/1"


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(number, value):
    return varint(number << 3) + varint(value)


def field_bytes(number, data):
    return varint(number << 3 | 2) + varint(len(data)) + data


def frame(body):
    return struct.pack(">I", len(body)) + body


def hello(request_id, key):
    body = field_varint(1, 1) + field_bytes(4, key.encode())
    return frame(field_varint(1, request_id) + field_bytes(10, body))


def signing_keys(request_id):
    return frame(field_varint(1, request_id) + field_bytes(14, b""))


BAD_FRAMES = {
    "id0": frame(field_varint(1, 0)),
    "garbage": frame(b"\xff\xff"),
    "unsigned": frame(field_varint(1, 7) + field_bytes(4, b"")),
}


def read_varint(data, index):
    shift = value = 0
    while True:
        byte = data[index]
        index += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, index


def status_code(body):
    """The code of a ServerFrame's status (0: OK)."""
    index = 0
    while index < len(body):
        key, index = read_varint(body, index)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, index = read_varint(body, index)
        elif wire == 2:
            length, index = read_varint(body, index)
            if number == 2:
                inner = body[index:index + length]
                if inner[:1] == b"\x08":
                    return read_varint(inner, 1)[0]
                return 0
            index += length
        else:
            return -1
    return 0


def connect(port, ca, rcvbuf=None, source="127.0.0.1"):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca)
    context.set_alpn_protocols([ALPN])
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(10)
    raw.bind((source, 0))
    raw.connect(("127.0.0.1", port))
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def read_frame(tls):
    header = b""
    while len(header) < 4:
        chunk = tls.recv(4 - len(header))
        if not chunk:
            return None
        header += chunk
    (length,) = struct.unpack(">I", header)
    body = b""
    while len(body) < length:
        chunk = tls.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return body


def never_reading(port, ca, kind, seconds, stop):
    """Writes one kind of frame as fast as the daemon takes it, never reading."""
    try:
        tls = connect(port, ca, rcvbuf=4096, source="127.0.0.2")
        tls.settimeout(2)
        if kind == "signed":
            tls.sendall(hello(1, KEY))
            chunk = b"".join(signing_keys(2 + i) for i in range(2000))
        else:
            chunk = BAD_FRAMES[kind] * 10000
        start = time.time()
        while time.time() - start < seconds and not stop.is_set():
            try:
                tls.sendall(chunk)
            except (socket.timeout, ssl.SSLError, OSError):
                time.sleep(0.1)  # backpressure (or closed): keep the connection, try again
        stop.wait(seconds)
    except OSError:
        stop.wait(seconds)


def bad_hellos(port, ca, seconds, stop, counter):
    start = time.time()
    while time.time() - start < seconds and not stop.is_set():
        try:
            tls = connect(port, ca, source="127.0.0.2")
            request_id = 1
            while not stop.is_set():
                tls.sendall(hello(request_id, "lk_not_a_real_key_0000000000000"))
                if read_frame(tls) is None:
                    break
                with counter.get_lock():
                    counter.value += 1
                request_id += 1
            tls.close()
        except OSError:
            time.sleep(0.01)


def good_client_rate(port, ca, seconds):
    """GetSigningKeys calls answered OK per second, one at a time, on a signed-in connection."""
    tls = connect(port, ca)
    tls.sendall(hello(1, KEY))
    assert status_code(read_frame(tls)) == 0, "the good client's Hello was refused"
    calls, request_id, start = 0, 2, time.time()
    while time.time() - start < seconds:
        tls.sendall(signing_keys(request_id))
        body = read_frame(tls)
        if body is None:
            break
        if status_code(body) == 0:
            calls += 1
        request_id += 1
    elapsed = time.time() - start
    tls.close()
    return calls / elapsed


def memory_kib(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_flood(binary, kind, seconds):
    work = tempfile.mkdtemp(prefix="licensed-floods.")
    port = free_port()
    log = open(os.path.join(work, "licensed.log"), "w")
    daemon = subprocess.Popen(
        [binary, "--data-dir", os.path.join(work, "data"), "--listen", f"127.0.0.1:{port}", "--log-level", "error"],
        stdout=log, stderr=log, env=dict(os.environ, LICENSED_BOOTSTRAP_API_KEY=KEY),
    )
    ca = os.path.join(work, "data", "tls", "ca.pem")
    try:
        deadline = time.time() + 60
        while True:
            try:
                good_client_rate(port, ca, 0.2)
                break
            except (OSError, AssertionError):
                if time.time() > deadline or daemon.poll() is not None:
                    raise SystemExit(f"licensed did not start: {open(log.name).read()}")
                time.sleep(0.2)
        quiet_rate = good_client_rate(port, ca, 5)
        baseline = memory_kib(daemon.pid, "VmRSS")
        cpu_before = cpu_seconds(daemon.pid)
        stop = multiprocessing.Event()
        counter = multiprocessing.Value("q", 0)
        if kind == "bad-hello":
            flooders = [multiprocessing.Process(target=bad_hellos, args=(port, ca, seconds, stop, counter)) for _ in range(8)]
        else:
            flooders = [multiprocessing.Process(target=never_reading, args=(port, ca, kind, seconds, stop)) for _ in range(4)]
        for flooder in flooders:
            flooder.start()
        time.sleep(min(3, seconds / 4))
        flood_start = time.time()
        try:
            flooded_rate, flooded_error = good_client_rate(port, ca, max(1, seconds - 8)), None
        except (OSError, AssertionError) as error:
            # The good client could not even connect or sign in: that is the result.
            flooded_rate, flooded_error = 0, f"{type(error).__name__}: {error}"
        flood_cpu = (cpu_seconds(daemon.pid) - cpu_before)
        stop.set()
        for flooder in flooders:
            flooder.join(30)
            if flooder.is_alive():
                flooder.kill()
        peak = memory_kib(daemon.pid, "VmHWM")
        time.sleep(2)
        after = memory_kib(daemon.pid, "VmRSS")
        flood_seconds = time.time() - flood_start
        daemon.terminate()
        daemon.wait(30)
        # Refused sign-ins in the audit log: rows, and the refusals they stand for.
        with sqlite3.connect(os.path.join(work, "data", "licensed.sqlite")) as db:
            columns = [row[1] for row in db.execute("PRAGMA table_info(audit_log)")]
            counted = "SUM(count)" if "count" in columns else "COUNT(*)"
            audit_rows, audited = db.execute(f"SELECT COUNT(*), COALESCE({counted}, 0) FROM audit_log WHERE action = 'hello'").fetchone()
        return {
            "flood": kind,
            "baseline_rss_mib": round(baseline / 1024, 1),
            "peak_rss_mib": round(peak / 1024, 1),
            "rss_after_mib": round(after / 1024, 1),
            "good_calls_per_s_quiet": round(quiet_rate),
            "good_calls_per_s_flooded": round(flooded_rate),
            "good_client_error": flooded_error,
            "refused_hellos_per_s": round(counter.value / flood_seconds) if kind == "bad-hello" else None,
            "daemon_cpu_s": round(flood_cpu, 1),
            "hello_audit_rows": audit_rows,
            "hello_refusals_audited": audited,
        }
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        subprocess.run(["rm", "-rf", work])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--binary", default=os.path.join(root, ".build", "release", "licensed"))
    parser.add_argument("--seconds", type=float, default=20, help="length of each flood (default 20)")
    parser.add_argument("--floods", default="id0,garbage,unsigned,signed,bad-hello")
    parser.add_argument("--report", help="also write the results as JSON here")
    options = parser.parse_args()
    results = []
    for kind in options.floods.split(","):
        result = run_flood(options.binary, kind, options.seconds)
        print(json.dumps(result), flush=True)
        results.append(result)
    if options.report:
        with open(options.report, "w") as report:
            json.dump(results, report, indent=2)


if __name__ == "__main__":
    main()
