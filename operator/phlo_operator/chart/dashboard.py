"""The Grafana dashboard the chart ships, built from a list of panels so every query names a known metric."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Metrics the runtime's webserver and the operator export (their contract); panels may use only these.
DAGSTER_METRICS = (
    "dagster_runs",
    "dagster_runs_finished_total",
    "dagster_run_duration_seconds",
    "dagster_runs_queued",
    "dagster_runs_in_progress",
    "dagster_asset_materializations_total",
    "dagster_asset_check_evaluations_total",
    "dagster_daemon_heartbeat_age_seconds",
    "dagster_code_location_load_errors",
    "phlo_definitions_build_seconds",
)
OPERATOR_METRICS = (
    "phlo_operator_reconciles_total",
    "phlo_operator_reconcile_duration_seconds",
    "phlo_operator_workflows",
    "phlo_operator_api_errors_total",
)
DASHBOARD_UID = "phlo-dagster"
NS = 'namespace=~"$namespace"'


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 8


ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    (
        "Operator",
        (
            Panel(
                "Reconciles by result",
                "Reconciles per second by outcome; errors mean the operator retries.",
                (("sum by (result) (rate(phlo_operator_reconciles_total[5m]))", "{{result}}"),),
                unit="ops",
            ),
            Panel(
                "Reconcile duration",
                "p50 and p95 of one reconcile pass.",
                (
                    (
                        "histogram_quantile(0.5, sum by (le) "
                        "(rate(phlo_operator_reconcile_duration_seconds_bucket[5m])))",
                        "p50",
                    ),
                    (
                        "histogram_quantile(0.95, sum by (le) "
                        "(rate(phlo_operator_reconcile_duration_seconds_bucket[5m])))",
                        "p95",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Workflows by condition",
                "PhloWorkflows whose condition has the given status.",
                (('sum by (condition, status) (phlo_operator_workflows{status="True"})', "{{condition}}"),),
            ),
            Panel(
                "Kubernetes API errors",
                "Failed API calls of the operator by verb and HTTP code.",
                (("sum by (verb, code) (rate(phlo_operator_api_errors_total[5m]))", "{{verb}} {{code}}"),),
                unit="ops",
                width=24,
            ),
        ),
    ),
    (
        "Dagster runs",
        (
            Panel(
                "Runs in progress",
                "Runs currently executing.",
                ((f"sum(dagster_runs_in_progress{{{NS}}})", "in progress"),),
                kind="stat",
                width=6,
            ),
            Panel(
                "Runs queued",
                "Runs waiting in the run queue.",
                ((f"sum(dagster_runs_queued{{{NS}}})", "queued"),),
                kind="stat",
                width=6,
            ),
            Panel(
                "Runs in storage by status",
                "All runs the instance holds, by status.",
                ((f"sum by (status) (dagster_runs{{{NS}}})", "{{status}}"),),
                width=12,
            ),
            Panel(
                "Finished runs by status",
                "Runs finishing per second, by final status.",
                ((f"sum by (status) (rate(dagster_runs_finished_total{{{NS}}}[5m]))", "{{status}}"),),
                unit="ops",
                width=12,
            ),
            Panel(
                "Run duration p95",
                # Prometheus renames Dagster's `job` label to `exported_job` unless the scrape honours labels.
                "95th percentile run duration by Dagster job.",
                (
                    (
                        "histogram_quantile(0.95, sum by (le, namespace, job, exported_job) "
                        f"(rate(dagster_run_duration_seconds_bucket{{{NS}}}[30m])))",
                        "{{namespace}} {{exported_job}} {{job}}",
                    ),
                ),
                unit="s",
                width=12,
            ),
        ),
    ),
    (
        "Dagster assets and code",
        (
            Panel(
                "Asset materializations",
                "Materializations per second by asset.",
                (
                    (
                        f"sum by (asset_key) (rate(dagster_asset_materializations_total{{{NS}}}[5m]))",
                        "{{asset_key}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Asset check evaluations",
                "Check evaluations per second by outcome and severity.",
                (
                    (
                        "sum by (outcome, severity) "
                        f"(rate(dagster_asset_check_evaluations_total{{{NS}}}[5m]))",
                        "{{outcome}} {{severity}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Daemon heartbeat age",
                "Seconds since each daemon's last heartbeat; a rising line means a stalled daemon.",
                (
                    (
                        f"max by (namespace, daemon_type) (dagster_daemon_heartbeat_age_seconds{{{NS}}})",
                        "{{namespace}} {{daemon_type}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Code location load errors",
                "Code locations that fail to load (1 = error).",
                (
                    (
                        f"max by (namespace, location) (dagster_code_location_load_errors{{{NS}}})",
                        "{{namespace}} {{location}}",
                    ),
                ),
                width=12,
            ),
            Panel(
                "Definitions build time",
                "Seconds the code server took to build the Dagster definitions.",
                (
                    (
                        f"max by (namespace, location) (phlo_definitions_build_seconds{{{NS}}})",
                        "{{namespace}} {{location}}",
                    ),
                ),
                unit="s",
                width=12,
            ),
        ),
    ),
)


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "datasource": _datasource()}
        for i, (expr, legend) in enumerate(panel.targets)
    ]
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": _datasource(),
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if panel.kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": targets,
    }


def _datasource() -> dict[str, str]:
    return {"type": "prometheus", "uid": "${datasource}"}


def dashboard() -> dict[str, Any]:
    """The dashboard model (Grafana schema 39), laid out row by row on the 24-column grid."""
    panels: list[dict[str, Any]] = []
    panel_id, y = 1, 0
    for row_title, row_panels in ROWS:
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id, y, x = panel_id + 1, y + 1, 0
        for panel in row_panels:
            if x + panel.width > 24:
                x, y = 0, y + 8
            panels.append(_panel(panel, panel_id, x, y))
            panel_id, x = panel_id + 1, x + panel.width
        y += 8
    return {
        "uid": DASHBOARD_UID,
        "title": "Phlo Dagster",
        "description": "Dagster runs, assets and daemons of every PhloWorkflow, and the operator.",
        "tags": ["phlo", "dagster"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "timezone": "",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": "namespace",
                    "label": "Namespace",
                    "type": "query",
                    "datasource": _datasource(),
                    "query": {"query": "label_values(dagster_runs, namespace)", "refId": "namespace"},
                    "definition": "label_values(dagster_runs, namespace)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {},
                    "refresh": 2,
                    "hide": 0,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def render_dashboard_json() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"
