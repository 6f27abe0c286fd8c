#!/usr/bin/env python3
"""Checks the Helm chart helm/licensed with real tools, no cluster needed:

- the real Helm v4 engine (PyPI helm-python-sdk): `lint` in strict mode, and render, for the
  default values and every helm/licensed/ci/*-values.yaml;
- every rendered object validated strictly (unknown fields refused) against the Kubernetes API
  schemas of PyPI's kubernetes-validate, for Kubernetes 1.30 and the newest release it knows;
- ServiceMonitor and PrometheusRule against the prometheus-operator CRDs, and cert-manager's
  Certificate against cert-manager's, as the schemas of PyPI's cloudcoil models (generated from
  those CRDs), with unknown fields refused;
- the PrometheusRule's groups are deploy/prometheus/licensed-alerts.yml's (one source), the
  dashboards ConfigMap holds deploy/grafana's dashboards;
- bad values refused (by values.schema.json or the chart's own checks) with a message naming
  the mistake;
- checkov (PyPI) on the rendered manifests: no failed check, except those the chart's README
  lists, each with its reason, under "Checkov findings left open".

    Tools/check_chart.py [--json]

Prints one line per values set and exits 1 with the failures listed when any check fails.
"""
import argparse
import copy
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHART = os.path.join(ROOT, "helm", "licensed")
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
RELEASE, NAMESPACE = "licensed", "licensing"

# Values that must be refused, and a piece of the message that must say why.
BAD_VALUES = [
    ({"replicaCont": 3}, "replicaCont"),
    ({"mode": "cluster"}, "/mode"),
    ({"opsPort": 7443}, "/opsPort"),
    ({"service": {"type": "Ingress"}}, "/service/type"),
    ({"signingKey": {"algorithm": "ES256"}}, "/signingKey/algorithm"),
    ({"signingKey": {"rotation": "90 days"}}, "/signingKey/rotation"),
    ({"image": {"digest": "latest"}}, "/image/digest"),
    ({"config": {"drainTimeoutSeconds": 900}}, "/config/drainTimeoutSeconds"),
    ({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory"),
    ({"lifecycle": {"terminationGracePeriodSeconds": 15}}, "must exceed lifecycle.preStopSleepSeconds + config.drainTimeoutSeconds"),
    ({"production": {"existingSecret": ""}}, "needs production.existingSecret"),
    ({"tls": {"existingSecret": ""}}, "set tls.existingSecret or tls.certManager.enabled"),
    ({"tls": {"certManager": {"enabled": True, "issuerRef": {"name": "ca"}}}}, "not both"),
    ({"mode": "embedded", "replicaCount": 3}, "exactly one replica"),
    ({"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}, "minReplicas must not exceed"),
    ({"keyEncryption": {"existingSecret": "licensed-kek"}}, "needs keyEncryption.ids"),
    ({"keyEncryption": {"ids": ["a b"]}}, "/keyEncryption/ids/0"),
]


def crd_schema(model):
    """The JSON schema of a cloudcoil model (generated from the CRD), made strict: every object
    that names its properties refuses others, as the API server does for structural schemas
    when a client asks for strict field validation."""
    schema = model.model_json_schema(by_alias=True, mode="validation")

    def strict(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            # Go's regexps take inline flags anywhere (`^(?i)abort`); Python's only first.
            pattern = node.get("pattern")
            if isinstance(pattern, str) and "(?i)" in pattern and not pattern.startswith("(?i)"):
                node["pattern"] = "(?i)" + pattern.replace("(?i)", "")
            for value in node.values():
                strict(value)
        elif isinstance(node, list):
            for value in node:
                strict(value)

    strict(schema)
    return schema


def crd_validators():
    from cloudcoil.models.cert_manager import v1 as cert_manager
    from cloudcoil.models.prometheus_operator import v1 as prometheus_operator

    return {
        ("monitoring.coreos.com/v1", "ServiceMonitor"): crd_schema(prometheus_operator.ServiceMonitor),
        ("monitoring.coreos.com/v1", "PrometheusRule"): crd_schema(prometheus_operator.PrometheusRule),
        ("cert-manager.io/v1", "Certificate"): crd_schema(cert_manager.Certificate),
    }


def checkov_skips():
    """The checks the chart's README leaves open: rows `| CKV_… | reason |` of its table."""
    with open(os.path.join(CHART, "README.md"), encoding="utf-8") as readme:
        text = readme.read()
    section = text.split("## Checkov findings left open", 1)
    if len(section) < 2:
        raise SystemExit("check_chart.py: the chart README has no 'Checkov findings left open' section")
    skips = {}
    for line in section[1].split("\n## ", 1)[0].splitlines():
        match = re.match(r"^\|\s*(CKV2?_K8S_\d+)\s*\|\s*(.+?)\s*\|\s*$", line)
        if match:
            skips[match.group(1)] = match.group(2)
    for check, reason in skips.items():
        if len(reason) < 20:
            raise SystemExit(f"check_chart.py: the README gives {check} no real reason")
    return skips


def load_values(path):
    if path is None:
        return None
    with open(path, encoding="utf-8") as file:
        return yaml.safe_load(file) or {}


def objects(manifests):
    found = []
    for template, text in sorted(manifests.items()):
        if not template.endswith((".yaml", ".yml")):
            continue
        for document in yaml.safe_load_all(text):
            if document:
                found.append((template, document))
    return found


def check_values_set(name, values, crds, skips, failures):
    summary = {"values": name}
    # Lint strictly, as `helm lint --strict --kube-version`.
    lint_values = values or {}
    for version in KUBERNETES_VERSIONS:
        report = helm.lint(CHART, lint_values, strict=True, kube_version="v" + version, namespace=NAMESPACE)
        problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2] + [{"error": e} for e in report.get("errors") or []]
        for problem in problems:
            failures.append(f"{name}: helm lint (Kubernetes {version}): {problem.get('path', '')} {problem['error']}")
    summary["lint"] = "clean" if not any(f.startswith(f"{name}: helm lint") for f in failures) else "FAILED"

    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    rendered = objects(manifests)
    summary["objects"] = len(rendered)
    summary["kinds"] = sorted({doc["kind"] for _, doc in rendered})

    # Kubernetes schemas, strict, for each version.
    validated = 0
    for template, document in rendered:
        key = (document.get("apiVersion"), document.get("kind"))
        if key in crds:
            try:
                jsonschema.validate(document, crds[key])
            except jsonschema.ValidationError as error:
                failures.append(f"{name}: {template}: {key[1]} against its CRD: {error.message} at {list(error.absolute_path)}")
            validated += 1
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                failures.append(f"{name}: {template}: Kubernetes {version}: {error.message} at {list(error.path)}")
            except kubernetes_validate.SchemaNotFoundError as error:
                failures.append(f"{name}: {template}: no Kubernetes {version} schema for {key}: {error}")
        validated += 1
    summary["validated"] = validated

    # One source for the rules and the dashboards.
    for template, document in rendered:
        if document["kind"] == "PrometheusRule":
            with open(os.path.join(ROOT, "deploy", "prometheus", "licensed-alerts.yml"), encoding="utf-8") as rules:
                expected = yaml.safe_load(rules)
            base = (values or {}).get("metrics", {}).get("prometheusRule", {}).get("runbookBaseURL")
            if base:
                for group in expected["groups"]:
                    for rule in group["rules"]:
                        url = rule.get("annotations", {}).get("runbook_url", "")
                        rule["annotations"]["runbook_url"] = url.replace("docs/runbook.md", base, 1)
            if document["spec"] != expected:
                failures.append(f"{name}: the PrometheusRule's groups differ from deploy/prometheus/licensed-alerts.yml")
        if document["kind"] == "ConfigMap" and document["metadata"]["name"].endswith("-dashboards"):
            expected = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "deploy", "grafana", "*.json")))
            if sorted(document["data"]) != expected:
                failures.append(f"{name}: the dashboards ConfigMap holds {sorted(document['data'])}, not {expected}")
            for key, text in document["data"].items():
                with open(os.path.join(ROOT, "deploy", "grafana", key), encoding="utf-8") as dashboard:
                    if json.loads(text) != json.load(dashboard):
                        failures.append(f"{name}: the dashboards ConfigMap's {key} differs from deploy/grafana/{key}")

    # checkov on the rendered manifests (hooks and tests included: they run in the cluster too).
    with tempfile.TemporaryDirectory() as folder:
        for index, (template, document) in enumerate(rendered):
            with open(os.path.join(folder, f"{index:02d}-{os.path.basename(template)}"), "w", encoding="utf-8") as file:
                yaml.safe_dump(document, file)
        run = subprocess.run(
            ["checkov", "--compact", "--framework", "kubernetes", "-o", "json", "-d", folder],
            capture_output=True, text=True, check=False,
        )
        try:
            report = json.loads(run.stdout)
        except json.JSONDecodeError:
            failures.append(f"{name}: checkov gave no report: {run.stderr[-2000:]}")
            return summary
        reports = report if isinstance(report, list) else [report]
        passed = failed_total = 0
        left_open = set()
        for item in reports:
            results = item.get("results", {})
            passed += len(results.get("passed_checks", []))
            for check in results.get("failed_checks", []):
                failed_total += 1
                if check["check_id"] in skips:
                    left_open.add(check["check_id"])
                else:
                    failures.append(f"{name}: checkov {check['check_id']} ({check['check_name']}) fails on {check['resource']}")
        summary["checkov"] = {"passed": passed, "failed": failed_total, "left_open": sorted(left_open)}
    return summary


def check_validators_refuse(crds, failures):
    """The validators themselves refuse a misspelt field, so a pass above means something."""
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
                  "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                           "spec": {"containers": [{"name": "x", "image": "x", "livenessProb": {}}]}}}}
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(deployment, version, strict=True)
            failures.append(f"kubernetes-validate {version} accepted a misspelt field (livenessProb)")
        except kubernetes_validate.ValidationError:
            pass
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"},
               "spec": {"selector": {}, "endpoints": [{"port": "ops", "intervall": "1s"}]}}
    try:
        jsonschema.validate(monitor, crds[("monitoring.coreos.com/v1", "ServiceMonitor")])
        failures.append("the ServiceMonitor schema accepted a misspelt field (intervall)")
    except jsonschema.ValidationError:
        pass


def check_bad_values(failures):
    refused = 0
    with helm.Chart.load(CHART) as chart:
        for bad, reason in BAD_VALUES:
            try:
                chart.render(bad, name=RELEASE, namespace=NAMESPACE, is_install=True)
            except helm.HelmError as error:
                if reason not in str(error):
                    failures.append(f"bad values {bad}: refused, but the message does not say {reason!r}: {error}")
                else:
                    refused += 1
                continue
            failures.append(f"bad values {bad}: rendered without complaint")
    return refused


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()
    helm.disable_logging()

    failures = []
    crds = crd_validators()
    skips = checkov_skips()
    sets = [("default", None)] + [
        (os.path.basename(path), path) for path in sorted(glob.glob(os.path.join(CHART, "ci", "*-values.yaml")))
    ]
    summaries = [check_values_set(name, load_values(path), crds, skips, failures) for name, path in sets]
    check_validators_refuse(crds, failures)
    refused = check_bad_values(failures)
    used = set().union(*(s.get("checkov", {}).get("left_open", []) for s in summaries))
    for check in sorted(set(skips) - used):
        failures.append(f"the README leaves {check} open, but no values set fails it: remove the row")

    if args.json:
        print(json.dumps({"values_sets": summaries, "bad_values_refused": refused, "failures": failures}, indent=2))
    else:
        for s in summaries:
            checkov = s.get("checkov", {})
            print(f"{s['values']}: lint {s['lint']} (Kubernetes {', '.join(KUBERNETES_VERSIONS)}); {s['objects']} objects "
                  f"({', '.join(s['kinds'])}), {s.get('validated', 0)} validated strictly; checkov {checkov.get('passed', 0)} passed, "
                  f"{checkov.get('failed', 0)} failed, left open: {', '.join(checkov.get('left_open', [])) or 'none'}")
        print(f"bad values refused: {refused} of {len(BAD_VALUES)}")
        for failure in failures:
            print("FAIL " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
