#!/usr/bin/env python3
"""Checks the Grafana dashboards and the Prometheus alert rules against a live scrape of licensed.

    python3 Tools/check_observability.py --scrape metrics.txt \
        --dashboards deploy/grafana --rules deploy/prometheus/licensed-alerts.yml --runbook docs/runbook.md

- dashboards: each file is JSON with a title and a uid unique among them; a `datasource` variable of
  type datasource exists and every panel and query uses it; every query (and every variable's
  label_values query) parses as PromQL (promql-parser, with Grafana's variables filled in) and names
  only metrics the scrape holds;
- rules: every alert has a severity label, summary, description and a runbook_url whose anchor is a
  heading of the runbook; every expression parses and names only metrics the scrape holds.

Exits 1 with one line per problem; prints what it checked otherwise. Needs `pip install promql-parser`.
"""
import argparse
import json
import re
import sys
from pathlib import Path

import promql_parser
import yaml

# Grafana's variables, filled in so that the query is plain PromQL.
GRAFANA_VARIABLES = [
    ("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h"),
    ("${datasource}", "prometheus"), ("$job", "licensed"), ("$instance", ".*"), ("$tenant", ".*"),
]


def scrape_names(path):
    """The sample names in a Prometheus text exposition (x, x_bucket, x_sum, x_count, ...)."""
    names = set()
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def metric_names(expr):
    """The metric names a PromQL expression selects."""
    names = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.append(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def fill(query):
    for variable, value in GRAFANA_VARIABLES:
        query = query.replace(variable, value)
    return query


def check_query(where, query, exported, problems):
    try:
        names = metric_names(fill(query))
    except Exception as error:  # promql-parser raises ValueError subclasses
        problems.append(f"{where}: does not parse as PromQL: {error}: {query}")
        return 0
    for name in names:
        if name not in exported:
            problems.append(f"{where}: names {name}, which licensed does not export")
    return 1


def check_dashboards(folder, exported, problems):
    uids = {}
    queries = 0
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        problems.append(f"{folder}: no dashboards")
    for path in files:
        try:
            board = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            problems.append(f"{path.name}: not JSON: {error}")
            continue
        uid = board.get("uid")
        if not uid or not board.get("title"):
            problems.append(f"{path.name}: needs a uid and a title")
        elif uid in uids:
            problems.append(f"{path.name}: uid {uid} is also the uid of {uids[uid]}")
        else:
            uids[uid] = path.name
        variables = board.get("templating", {}).get("list", [])
        if not any(v.get("name") == "datasource" and v.get("type") == "datasource" for v in variables):
            problems.append(f"{path.name}: no `datasource` variable of type datasource")
        for variable in variables:
            if variable.get("type") != "query":
                continue
            if variable.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"{path.name}: variable {variable.get('name')} does not use ${{datasource}}")
            query = variable.get("query", {})
            query = query.get("query", "") if isinstance(query, dict) else query
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query)
            if not match:
                problems.append(f"{path.name}: variable {variable.get('name')}: expected label_values(selector, label), got {query}")
                continue
            queries += check_query(f"{path.name} variable {variable.get('name')}", match.group(1), exported, problems)
        for panel in board.get("panels", []):
            if panel.get("type") == "row":
                continue
            title = panel.get("title", "?")
            if panel.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"{path.name} panel '{title}': does not use ${{datasource}}")
            if not panel.get("targets"):
                problems.append(f"{path.name} panel '{title}': no queries")
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("uid") != "${datasource}":
                    problems.append(f"{path.name} panel '{title}' query {target.get('refId')}: does not use ${{datasource}}")
                queries += check_query(f"{path.name} panel '{title}'", target.get("expr", ""), exported, problems)
    return len(files), queries


def anchors(runbook):
    """GitHub's anchors for the runbook's headings."""
    found = set()
    for line in Path(runbook).read_text().splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            found.add(text.replace(" ", "-"))
    return found


def check_rules(path, exported, runbook, problems):
    document = yaml.safe_load(Path(path).read_text())
    sections = anchors(runbook)
    alerts = 0
    for group in document.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            check_query(f"rule {name}", rule.get("expr", ""), exported, problems)
            if "alert" not in rule:
                continue
            alerts += 1
            if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                problems.append(f"alert {name}: severity must be critical, warning or info")
            annotations = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not annotations.get(key):
                    problems.append(f"alert {name}: no {key} annotation")
            url = annotations.get("runbook_url", "")
            anchor = url.split("#", 1)[1] if "#" in url else ""
            if not url.startswith("docs/runbook.md#") or anchor not in sections:
                problems.append(f"alert {name}: runbook_url {url} names no section of {runbook}")
            if anchor != name.lower():
                problems.append(f"alert {name}: runbook_url should point at its own section (#{name.lower()})")
    return alerts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scrape", required=True)
    parser.add_argument("--dashboards", required=True)
    parser.add_argument("--rules", required=True)
    parser.add_argument("--runbook", required=True)
    arguments = parser.parse_args()
    exported = scrape_names(arguments.scrape)
    problems = []
    boards, queries = check_dashboards(arguments.dashboards, exported, problems)
    alerts = check_rules(arguments.rules, exported, arguments.runbook, problems)
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"{boards} dashboards with {queries} queries and {alerts} alerts check out against {len(exported)} exported series names")


if __name__ == "__main__":
    main()
