#!/usr/bin/env python3
"""Writes the Grafana dashboards for licensed (JSON, schema 39, Grafana 10 and later).

The JSON files next to this script are its output and are committed; edit this script and run it
(python3 deploy/grafana/generate.py) rather than editing the JSON by hand. `--check` exits non-zero
when a committed file differs from what the script writes (the test suite runs it).

Every panel queries the data source chosen in the `datasource` variable; `job` picks the licensed
scrape job and `instance` the replicas.
"""
import json
import sys
from pathlib import Path

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job="$job",instance=~"$instance"'
SERVER_ERRORS = 'code=~"UNAVAILABLE|INTERNAL|DEADLINE_EXCEEDED"'


def variables(extra=()):
    out = [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "hide": 0,
         "current": {}, "refresh": 1},
        {"name": "job", "label": "Job", "type": "query", "datasource": DS, "hide": 0, "refresh": 2,
         "query": {"query": "label_values(licensed_build_info, job)", "refId": "job"},
         "definition": "label_values(licensed_build_info, job)", "current": {}, "includeAll": False, "multi": False},
        {"name": "instance", "label": "Replica", "type": "query", "datasource": DS, "hide": 0, "refresh": 2,
         "query": {"query": 'label_values(licensed_build_info{job="$job"}, instance)', "refId": "instance"},
         "definition": 'label_values(licensed_build_info{job="$job"}, instance)', "current": {},
         "includeAll": True, "allValue": ".*", "multi": True},
    ]
    out.extend(extra)
    return out


class Layout:
    """Places panels on Grafana's 24-column grid, rows of equal height."""

    def __init__(self):
        self.panels = []
        self.y = 0
        self.x = 0
        self.next_id = 1

    def row(self, title):
        self._new_line()
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def panel(self, title, targets, unit="short", width=8, kind="timeseries", description="", stack=False, max_value=None):
        if self.x + width > 24:
            self._new_line()
        defaults = {"unit": unit}
        if max_value is not None:
            defaults["max"] = max_value
        if kind == "timeseries":
            defaults["custom"] = {"stacking": {"mode": "normal" if stack else "none"}, "fillOpacity": 10 if stack else 0}
        panel = {
            "type": kind, "title": title, "description": description, "id": self._id(), "datasource": DS,
            "gridPos": {"h": 8, "w": width, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
                for i, (expr, legend) in enumerate(targets)
            ],
        }
        self.panels.append(panel)
        self.x += width

    def _new_line(self):
        if self.x:
            self.y += 8
            self.x = 0

    def _id(self):
        self.next_id += 1
        return self.next_id - 1


def dashboard(uid, title, description, layout, extra_variables=()):
    return {
        "uid": uid, "title": title, "description": description, "tags": ["licensed"], "editable": True,
        "schemaVersion": 39, "version": 1, "graphTooltip": 1, "refresh": "30s", "timezone": "",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "links": [{"title": "licensed dashboards", "type": "dashboards", "tags": ["licensed"], "asDropdown": True}],
        "templating": {"list": variables(extra_variables)},
        "panels": layout.panels,
    }


def overview():
    tenant = {"name": "tenant", "label": "Tenant", "type": "query", "datasource": DS, "hide": 0, "refresh": 2,
              "query": {"query": 'label_values(licensed_seats_capacity{job="$job"}, tenant)', "refId": "tenant"},
              "definition": 'label_values(licensed_seats_capacity{job="$job"}, tenant)', "current": {},
              "includeAll": True, "allValue": ".*", "multi": True}
    g = Layout()
    g.row("Calls: rate, errors, duration")
    g.panel("Calls per second by call", [(f"sum by (call) (rate(licensed_calls_total{{{SEL}}}[$__rate_interval]))", "{{call}}")], "reqps", stack=True)
    g.panel("Server-side error ratio", [
        (f"sum(rate(licensed_calls_total{{{SEL},{SERVER_ERRORS}}}[$__rate_interval])) / sum(rate(licensed_calls_total{{{SEL}}}[$__rate_interval]))", "errors"),
    ], "percentunit", description="UNAVAILABLE, INTERNAL and DEADLINE_EXCEEDED answers over all answers; the LicensedHighErrorRate alert fires above 5 %.")
    g.panel("Refusals by call and reason", [
        (f'sum by (call, reason) (rate(licensed_calls_total{{{SEL},code!="OK"}}[$__rate_interval]))', "{{call}} {{reason}}"),
    ], "reqps")
    g.panel("Seat-call duration p50 / p99", [
        (f'histogram_quantile(0.5, sum by (call, le) (rate(licensed_call_duration_seconds_bucket{{{SEL},call=~"acquire|heartbeat|release"}}[$__rate_interval])))', "p50 {{call}}"),
        (f'histogram_quantile(0.99, sum by (call, le) (rate(licensed_call_duration_seconds_bucket{{{SEL},call=~"acquire|heartbeat|release"}}[$__rate_interval])))', "p99 {{call}}"),
    ], "s", width=12)
    g.panel("Admin-call duration p99", [
        (f'histogram_quantile(0.99, sum by (call, le) (rate(licensed_call_duration_seconds_bucket{{{SEL},call!~"acquire|heartbeat|release"}}[$__rate_interval])))', "{{call}}"),
    ], "s", width=12)

    g.row("Seats and licenses")
    g.panel("Seats in use vs capacity per license", [
        ('max by (tenant, license) (licensed_seats_in_use{job="$job",tenant=~"$tenant"})', "in use {{tenant}}/{{license}}"),
        ('max by (tenant, license) (licensed_seats_capacity{job="$job",tenant=~"$tenant"})', "capacity {{tenant}}/{{license}}"),
    ], width=12)
    g.panel("Seat use per tenant", [
        ('sum by (tenant) (max by (tenant, license) (licensed_seats_in_use{job="$job",tenant=~"$tenant"})) / sum by (tenant) (max by (tenant, license) (licensed_seats_capacity{job="$job",tenant=~"$tenant"}))', "{{tenant}}"),
    ], "percentunit", width=12, max_value=1)
    g.panel("Acquires by outcome", [(f"sum by (outcome) (rate(licensed_acquires_total{{{SEL}}}[$__rate_interval]))", "{{outcome}}")], "reqps", stack=True)
    g.panel("Denied acquires by reason", [
        (f'sum by (reason) (rate(licensed_acquires_total{{{SEL},outcome="denied"}}[$__rate_interval]))', "{{reason}}"),
    ], "reqps")
    g.panel("Time left on licenses", [
        ('min by (tenant, license) (licensed_license_expiry_timestamp_seconds{job="$job",tenant=~"$tenant"}) - time()', "{{tenant}}/{{license}}"),
    ], "s", description="Licenses with an end date; the alerts fire at 14 and 3 days.")
    g.panel("Licenses", [
        ('max(licensed_licenses{job="$job"})', "licenses"),
        ('max(licensed_license_series_omitted{job="$job"})', "without series (over --metrics-license-series)"),
    ], width=12)

    g.row("Connections")
    g.panel("Open connections and calls in flight", [
        (f"sum by (instance) (licensed_connections_open{{{SEL}}})", "connections {{instance}}"),
        (f"sum by (instance) (licensed_calls_in_flight{{{SEL}}})", "in flight {{instance}}"),
    ])
    g.panel("Connections refused and shed", [
        (f"sum by (instance) (rate(licensed_connections_refused_total{{{SEL}}}[$__rate_interval]))", "refused {{instance}}"),
        (f"sum by (instance) (rate(licensed_connections_shed_total{{{SEL}}}[$__rate_interval]))", "shed {{instance}}"),
    ], "cps")
    g.panel("TLS handshake failures by reason", [
        (f"sum by (reason) (rate(licensed_tls_handshake_failures_total{{{SEL}}}[$__rate_interval]))", "{{reason}}"),
    ], "cps")

    g.row("Backends and readiness")
    g.panel("Ready replicas", [('sum(licensed_ready{job="$job"})', "ready"), ('count(licensed_ready{job="$job"})', "replicas")])
    g.panel("Backend probes (1 = answered)", [(f"licensed_backend_up{{{SEL}}}", "{{instance}} {{backend}}")], max_value=1)
    g.panel("Backend latency p99", [
        (f"histogram_quantile(0.99, sum by (le) (rate(licensed_redis_command_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", "Redis command"),
        (f"histogram_quantile(0.99, sum by (operation, le) (rate(licensed_postgres_operation_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", "Postgres {{operation}}"),
    ], "s")
    g.panel("Backend errors", [
        (f"sum by (code) (rate(licensed_redis_errors_total{{{SEL}}}[$__rate_interval]))", "Redis {{code}}"),
        (f"sum by (operation, kind) (rate(licensed_postgres_errors_total{{{SEL}}}[$__rate_interval]))", "Postgres {{operation}} {{kind}}"),
    ], "cps")
    g.panel("Write-behind lag", [(f"licensed_write_behind_lag_seconds{{{SEL}}}", "{{instance}}")], "s")
    g.panel("Signing p99", [
        (f"histogram_quantile(0.99, sum by (le) (rate(licensed_signing_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", "p99"),
        (f"sum(rate(licensed_signing_errors_total{{{SEL}}}[$__rate_interval]))", "errors per second"),
    ], "s")

    g.row("Process")
    g.panel("CPU", [(f"rate(process_cpu_seconds_total{{{SEL}}}[$__rate_interval])", "{{instance}}")], "percentunit")
    g.panel("Resident memory", [(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")], "bytes")
    g.panel("File descriptors used", [(f"process_open_fds{{{SEL}}} / process_max_fds{{{SEL}}}", "{{instance}}")], "percentunit", max_value=1)
    g.panel("Versions", [(f"count by (version) (licensed_build_info{{{SEL}}})", "{{version}}")])
    g.panel("Signing key age", [(f"licensed_signing_key_age_seconds{{{SEL}}}", "{{instance}}")], "s")
    g.panel("TLS certificate time left", [(f"licensed_tls_certificate_expiry_timestamp_seconds{{{SEL}}} - time()", "{{instance}}")], "s")
    return dashboard("licensed-overview", "licensed / Overview",
                     "The licensed fleet: calls (rate, errors, duration), seats per tenant and license, connections, backends, process.",
                     g, [tenant])


def redis():
    g = Layout()
    g.row("Redis seat store")
    g.panel("Commands per second", [(f"sum by (instance) (rate(licensed_redis_command_duration_seconds_count{{{SEL}}}[$__rate_interval]))", "{{instance}}")], "reqps", width=12)
    g.panel("Command duration p50 / p99", [
        (f"histogram_quantile(0.5, sum by (le) (rate(licensed_redis_command_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", "p50"),
        (f"histogram_quantile(0.99, sum by (le) (rate(licensed_redis_command_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", "p99"),
    ], "s", width=12)
    g.panel("Errors by code", [(f"sum by (code) (rate(licensed_redis_errors_total{{{SEL}}}[$__rate_interval]))", "{{code}}")], "cps")
    g.panel("Commands in flight per connection", [
        (f"licensed_redis_commands_in_flight{{{SEL}}} / clamp_min(licensed_redis_connections_open{{{SEL}}}, 1)", "{{instance}}"),
    ], description="The LicensedRedisPoolExhausted alert fires above 64.")
    g.panel("Open connections", [(f"licensed_redis_connections_open{{{SEL}}}", "{{instance}}")])
    g.panel("Seat store probe (1 = answered)", [(f'licensed_backend_up{{{SEL},backend="seat_store"}}', "{{instance}}")], max_value=1, width=12)
    g.panel("Seat calls refused for an unavailable backend", [
        (f'sum by (call) (rate(licensed_calls_total{{{SEL},reason="BACKEND_UNAVAILABLE"}}[$__rate_interval]))', "{{call}}"),
    ], "reqps", width=12)
    return dashboard("licensed-redis", "licensed / Redis", "The Redis seat store as licensed sees it.", g)


def postgres():
    g = Layout()
    g.row("Postgres repository")
    g.panel("Operations per second", [
        (f"sum by (operation) (rate(licensed_postgres_operation_duration_seconds_count{{{SEL}}}[$__rate_interval]))", "{{operation}}"),
    ], "reqps", width=12)
    g.panel("Operation duration p50 / p99", [
        (f"histogram_quantile(0.5, sum by (operation, le) (rate(licensed_postgres_operation_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", "p50 {{operation}}"),
        (f"histogram_quantile(0.99, sum by (operation, le) (rate(licensed_postgres_operation_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", "p99 {{operation}}"),
    ], "s", width=12)
    g.panel("Errors by operation and kind", [
        (f"sum by (operation, kind) (rate(licensed_postgres_errors_total{{{SEL}}}[$__rate_interval]))", "{{operation}} {{kind}}"),
    ], "cps")
    g.panel("Pool: connections in use / size", [
        (f"licensed_postgres_connections_in_use{{{SEL}}}", "in use {{instance}}"),
        (f"licensed_postgres_pool_size{{{SEL}}}", "size {{instance}}"),
    ])
    g.panel("Repository probe (1 = answered)", [(f'licensed_backend_up{{{SEL},backend="repository"}}', "{{instance}}")], max_value=1)
    g.panel("Group commit: duration p99", [
        (f"histogram_quantile(0.99, sum by (le) (rate(licensed_group_commit_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))", "p99"),
    ], "s")
    g.panel("Group commit: writes per batch (mean)", [
        (f"sum(rate(licensed_group_commit_batch_size_sum{{{SEL}}}[$__rate_interval])) / sum(rate(licensed_group_commit_batch_size_count{{{SEL}}}[$__rate_interval]))", "writes per batch"),
    ])
    g.panel("Write-behind lag", [(f"licensed_write_behind_lag_seconds{{{SEL}}}", "{{instance}}")], "s")
    return dashboard("licensed-postgres", "licensed / Postgres", "The Postgres repository as licensed sees it: operations, pool, group commit.", g)


DASHBOARDS = {"licensed-overview.json": overview, "licensed-redis.json": redis, "licensed-postgres.json": postgres}


def main():
    here = Path(__file__).resolve().parent
    check = "--check" in sys.argv[1:]
    stale = []
    for name, make in DASHBOARDS.items():
        text = json.dumps(make(), indent=2, sort_keys=True) + "\n"
        path = here / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("out of date (run python3 deploy/grafana/generate.py): " + ", ".join(stale), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
