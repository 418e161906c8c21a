"""Writes (or checks) the chart files derived from code: schema, values.yaml, tables, dashboard, RBAC, CRD."""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from phlo_operator.chart import alerts, dashboard, reference, schema
from phlo_operator.doctext import replace_block

CHART_DIR = Path("charts/phlo-dagster")
CRD_SOURCE = Path("crds/phlo.dev_phloworkflows.yaml")
CRD_COPY = CHART_DIR / "files/crds/phlo.dev_phloworkflows.yaml"
# kopf's peering CRDs go to the chart's crds/ folder: installed before templates, never upgraded nor deleted.
PEERING_SOURCE = Path("crds/kopf.dev_peerings.yaml")
PEERING_COPY = CHART_DIR / "crds/kopf.dev_peerings.yaml"
OPERATOR_TPL = CHART_DIR / "templates/_operator.tpl"
TABLE = ("chart-values", "operator/phlo_operator/chart/values.py")
TABLE_FILES = (CHART_DIR / "README.md", Path("docs/chart.md"))
# The metrics and alerts reference tables.
REFERENCE_FILES = (CHART_DIR / "README.md", Path("docs/metrics.md"))


def _rbac_rules() -> dict[str, list[dict[str, Any]]]:
    """The operator's rule lists (phlo_operator.rbac, owned by the operator) by where the chart binds them."""
    rbac = importlib.import_module("phlo_operator.rbac")
    rules = {
        # a Role in each watched namespace (namespaced mode)
        "namespacedRules": rbac.RULES,
        # the ClusterRole of namespaced mode: only the cluster-scoped reads kopf needs
        "namespacedModeClusterRules": rbac.CLUSTER_RULES,
        # added to the namespaced rules in the one ClusterRole of cluster-wide mode
        "clusterWideRules": rbac.CLUSTER_RULES,
    }
    # a JSON round trip un-shares the lists the module reuses, so the YAML has no anchors
    result: dict[str, list[dict[str, Any]]] = json.loads(json.dumps(rules))
    return result


def render_operator_tpl() -> str:
    """Helm defines of facts the operator's code owns: its RBAC rules and its kopf peering name."""
    controller = importlib.import_module("phlo_operator.controller")
    parts = [
        "{{- /* GENERATED from phlo_operator.rbac and phlo_operator.controller by `make generate`. */}}",
        '{{- define "phlo-dagster.peeringName" -}}',
        str(controller.PEERING_NAME),
        "{{- end }}",
    ]
    for name, rules in _rbac_rules().items():
        body = yaml.safe_dump(rules, sort_keys=False, default_flow_style=None, width=1000).rstrip("\n")
        parts.append(f'{{{{- define "phlo-dagster.rbac.{name}" -}}}}')
        if rules:
            parts.append(body)
        parts.append("{{- end }}")
    return "\n".join(parts) + "\n"


def expected_files(root: Path) -> dict[Path, str]:
    """Path (relative to the repository) -> the content `make generate` writes there."""
    table = schema.render_values_table()
    files: dict[Path, str] = {
        CHART_DIR / "values.schema.json": schema.render_schema_json(),
        CHART_DIR / "values.yaml": schema.render_values_yaml(),
        CHART_DIR / "files/dashboards/phlo-dagster.json": dashboard.render_dashboard_json(),
        CHART_DIR / "templates/prometheusrule.yaml": alerts.render_template(),
    }
    for path in TABLE_FILES:
        files[path] = replace_block((root / path).read_text(), *TABLE, table, path)
    for path in REFERENCE_FILES:
        text = files.get(path) or (root / path).read_text()
        text = replace_block(text, *reference.METRICS_BLOCK, reference.metrics_table(), path)
        files[path] = replace_block(text, *reference.ALERTS_BLOCK, reference.alerts_table(), path)
    for source, copy in ((CRD_SOURCE, CRD_COPY), (PEERING_SOURCE, PEERING_COPY)):
        if (root / source).exists():
            files[copy] = (root / source).read_text()
    if importlib.util.find_spec("phlo_operator.rbac") is not None:
        files[OPERATOR_TPL] = render_operator_tpl()
    return files


def stale_files(root: Path) -> list[Path]:
    """Generated files whose committed content differs from what the code generates now."""
    return [
        path
        for path, content in expected_files(root).items()
        if not (root / path).exists() or (root / path).read_text() != content
    ]


def write_files(root: Path, log: Callable[[str], None] = lambda _: None) -> list[Path]:
    changed = stale_files(root)
    for path, content in expected_files(root).items():
        if path in changed:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(content)
            log(f"wrote {path}")
    return changed
