#!/usr/bin/env bash
# Starts a release-built licensed (and, for redis-postgres, its own Redis and PostgreSQL 15) in a
# temporary folder on free loopback ports, runs one `license-load` command against it with the
# daemon's pid, and stops everything.
#
#   Benchmarks/bench.sh embedded|redis-postgres EdDSA|RS256 run --scenario plan --users 1000 --connections 50 --duration 10
#   Benchmarks/bench.sh redis-postgres EdDSA idle --connections 10000
#
# Build first (two commands: with two --product flags SwiftPM builds only the last):
#   swift build -c release --product licensed && swift build -c release --product license-load
# Optional: BENCH_POSTGRES_OPTIONS="&writers=8" (Postgres URL options), BENCH_POSTGRES_FLAGS="-c ..."
# (server settings), BENCH_LICENSED_FLAGS="--ops-listen none" (more daemon flags; by default the
# daemon gets an ops port of its own, so metrics are on), BENCH_KEEP_LOG=FILE (keep the daemon's log),
# BENCH_METRICS_FILE=FILE (its /metrics after the run), BENCH_WORKDIR=DIR (where the run's folder,
# Postgres's data included, is made; default /tmp. BENCH_WORKDIR=/dev/shm puts Postgres on tmpfs,
# where fsync returns at once: a diagnostic that takes the disk's flush stalls out of a run, never a
# figure of a durable setup; docs/benchmarks.md, "The disk's flush stalls"),
# BENCH_WARMUP=SECONDS (redis-postgres: first a closed-loop `plan` of that long, then VACUUM
# ANALYZE, so the measured run meets tables with history and statistics, as on a server in
# service, not the plans Postgres caches for tables a few pages long; docs/benchmarks.md, "The
# plan a fresh database caches").
set -euo pipefail
backend=${1:?embedded or redis-postgres}; alg=${2:?EdDSA, RS256 or PS256}; shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BENCH_BIN:-$root/.build/release}
work=$(mktemp -d "${BENCH_WORKDIR:-/tmp}/license-bench.XXXXXX")
chmod 755 "$work"
pids=()
cleanup() {
  # The daemon first (its graceful shutdown writes pending lease expiries to Postgres), then the
  # backends. A daemon still running after 30 s is reported and killed, so a run never hangs.
  if [ -n "${daemon:-}" ] && kill -INT "$daemon" 2>/dev/null; then
    for _ in $(seq 300); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$daemon" 2>/dev/null; then echo "bench.sh: licensed did not stop within 30 s of SIGINT; killed" >&2; kill -KILL "$daemon"; fi
  fi
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_postgres() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --clear-groups "$@"; else "$@"; fi; }
# In the background, `exec` so that $! is the server's own pid (and a signal to it stops it).
start_postgres() { if [ "$(id -u)" = 0 ]; then exec setpriv --reuid=postgres --regid=postgres --clear-groups postgres "$@"; else exec postgres "$@"; fi; }

args=(--data-dir "$work/data" --listen "127.0.0.1:$(port)" --signing-alg "$alg" --log-level warning)
listen=${args[3]}
ops="127.0.0.1:$(port)"
args+=(--ops-listen "$ops")
if [ "$backend" = redis-postgres ]; then
  redis_port=$(port); pg_port=$(port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
  pids+=($!)
  mkdir -p "$work/pg"; chown postgres "$work/pg" 2>/dev/null || true
  as_postgres initdb -D "$work/pg" -A trust -U postgres >"$work/initdb.log" 2>&1
  start_postgres -D "$work/pg" -p "$pg_port" -k "$work/pg" -c listen_addresses=127.0.0.1 -c max_connections=300 \
    -c shared_buffers=256MB ${BENCH_POSTGRES_FLAGS:-} >"$work/postgres.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do as_postgres psql -h 127.0.0.1 -p "$pg_port" -U postgres -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done
  as_postgres psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "CREATE ROLE licensed LOGIN PASSWORD 'licensed'" -c "CREATE DATABASE licenses OWNER licensed"
  args+=(--redis-url "redis://127.0.0.1:$redis_port" --postgres-url "postgres://licensed:licensed@127.0.0.1:$pg_port/licenses?sslmode=disable${BENCH_POSTGRES_OPTIONS:-}" --migrate)
fi
export LICENSED_BOOTSTRAP_API_KEY=lk_bench_operator_key_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
# shellcheck disable=SC2206 # BENCH_LICENSED_FLAGS is split into flags on purpose
"$bin/licensed" "${args[@]}" ${BENCH_LICENSED_FLAGS:-} >"$work/licensed.log" 2>&1 &
daemon=$!
pids+=($daemon)
for _ in $(seq 200); do grep -q "listening on" "$work/licensed.log" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$work/licensed.log" || { cat "$work/licensed.log"; exit 1; }
[ -n "${BENCH_KEEP_LOG:-}" ] && trap 'cp "$work/licensed.log" "$BENCH_KEEP_LOG"; cleanup' EXIT
if [ -n "${BENCH_WARMUP:-}" ] && [ "$backend" = redis-postgres ]; then
  LICENSECTL_API_KEY=$LICENSED_BOOTSTRAP_API_KEY "$bin/license-load" run --scenario plan --users 1000 --connections 50 \
    --duration "$BENCH_WARMUP" --no-progress --server "$listen" --ca "$work/data/tls/ca.pem" >"$work/warmup.log" 2>&1 \
    || { echo "bench.sh: the warm-up run failed:" >&2; cat "$work/warmup.log" >&2; exit 1; }
  as_postgres psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -d licenses -c "VACUUM ANALYZE"
fi
status=0
LICENSECTL_API_KEY=$LICENSED_BOOTSTRAP_API_KEY "$bin/license-load" "$@" --server "$listen" --ca "$work/data/tls/ca.pem" --pid "$daemon" || status=$?
if [ -n "${BENCH_METRICS_FILE:-}" ]; then
  python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen('http://$ops/metrics').read().decode())" >"$BENCH_METRICS_FILE"
fi
exit "$status"
