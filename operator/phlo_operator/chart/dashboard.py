"""The Grafana dashboard the chart ships, built from a list of panels so every query names a known metric."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from phlo_dagster import constants as c

# Metrics the runtime's webserver and the operator export (their contract); panels may use only these.
DAGSTER_METRICS = tuple(name for name, _kind, _labels, _doc in c.DAGSTER_METRIC_FAMILIES)
OPERATOR_METRICS = (
    "phlo_operator_reconciles_total",
    "phlo_operator_reconcile_duration_seconds",
    "phlo_operator_workflows",
    "phlo_operator_api_errors_total",
    "phlo_operator_api_retries_total",
    "phlo_operator_build_info",
    "phlo_operator_workflow_webserver",
)
DASHBOARD_UID = "phlo-dagster"
NS = 'namespace=~"$namespace"'
OPERATOR_NS = 'namespace=~"$operator_namespace"'
# Series present from a process's first scrape, before any run: the variables read their label values.
NAMESPACE_SOURCE = "dagster_build_info"
OPERATOR_NAMESPACE_SOURCE = "phlo_operator_build_info"


def one_replica(expr: str) -> str:
    """Every webserver replica reports the same totals (read from the shared storage): keep one of them.

    Prometheus tells replicas apart by `instance` and `pod`; what is left identifies the deployment
    (`namespace` and the target's `job`). Dagster's own `job` label is `exported_job` in Prometheus, since the
    scrape does not honour the target's labels.
    """
    return f"max without (instance, pod) ({expr})"


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    kind: str = "timeseries"  # timeseries | stat | table (a table shows the latest value of each series)
    unit: str = "short"
    width: int = 8


def _quantile(q: float, metric: str, by: str, window: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (le, {by}) "
        f"({one_replica(f'rate({metric}_bucket{{{NS}}}[{window}])')}))"
    )


ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    (
        "Operator",
        (
            Panel(
                "Reconciles by result",
                "Reconciles per second by outcome; errors mean the operator retries.",
                (
                    (
                        f"sum by (result) (rate(phlo_operator_reconciles_total{{{OPERATOR_NS}}}[5m]))",
                        "{{result}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Reconcile duration",
                "p50 and p95 of one reconcile pass.",
                tuple(
                    (
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(phlo_operator_reconcile_duration_seconds_bucket{{{OPERATOR_NS}}}[5m])))",
                        label,
                    )
                    for q, label in ((0.5, "p50"), (0.95, "p95"))
                ),
                unit="s",
            ),
            Panel(
                "Workflows by condition",
                "PhloWorkflows whose condition is True, by condition type (as the acting replica counts).",
                (
                    (
                        f'max by (condition) (phlo_operator_workflows{{status="True", {OPERATOR_NS}}})',
                        "{{condition}}",
                    ),
                ),
            ),
            Panel(
                "Kubernetes API errors",
                "Failed API calls of the operator, and calls sent again after a backoff (429, 409), by verb "
                "and HTTP code.",
                (
                    (
                        f"sum by (verb, code) (rate(phlo_operator_api_errors_total{{{OPERATOR_NS}}}[5m]))",
                        "{{verb}} {{code}}",
                    ),
                    (
                        f"sum by (verb, code) (rate(phlo_operator_api_retries_total{{{OPERATOR_NS}}}[5m]))",
                        "retried {{verb}} {{code}}",
                    ),
                ),
                unit="ops",
                width=16,
            ),
            Panel(
                "Managed workflows",
                "PhloWorkflows the operator manages, with the webserver Service Prometheus scrapes for each.",
                (
                    (
                        "max by (workflow_namespace, workflow, webserver_service) "
                        f"(phlo_operator_workflow_webserver{{{OPERATOR_NS}}})",
                        "{{workflow_namespace}} {{workflow}} {{webserver_service}}",
                    ),
                ),
                kind="table",
            ),
            Panel(
                "Operator version",
                "The operator's version in each namespace it runs in.",
                (
                    (
                        f"max by (namespace, version) (phlo_operator_build_info{{{OPERATOR_NS}}})",
                        "{{namespace}} {{version}}",
                    ),
                ),
                kind="table",
            ),
        ),
    ),
    (
        "Dagster runs",
        (
            Panel(
                "Runs in progress",
                "Runs currently executing, over the selected namespaces.",
                ((f"sum({one_replica(f'dagster_runs_in_progress{{{NS}}}')})", "in progress"),),
                kind="stat",
                width=6,
            ),
            Panel(
                "Runs queued",
                "Runs waiting in the run queue, over the selected namespaces.",
                ((f"sum({one_replica(f'dagster_runs_queued{{{NS}}}')})", "queued"),),
                kind="stat",
                width=6,
            ),
            Panel(
                "Oldest queued run",
                "Age of the oldest queued run per deployment; rising while runs wait means a stuck queue.",
                (
                    (
                        f"max by (namespace, job) (dagster_runs_queued_oldest_age_seconds{{{NS}}})",
                        "{{namespace}} {{job}}",
                    ),
                ),
                unit="s",
                width=12,
            ),
            Panel(
                "Runs in storage by status",
                "All runs the instances hold, by status.",
                ((f"sum by (status) ({one_replica(f'dagster_runs{{{NS}}}')})", "{{status}}"),),
                width=12,
            ),
            Panel(
                "Finished runs by status",
                "Runs finishing per second, by final status.",
                (
                    (
                        f"sum by (status) ({one_replica(f'rate(dagster_runs_finished_total{{{NS}}}[5m])')})",
                        "{{status}}",
                    ),
                ),
                unit="ops",
                width=12,
            ),
            Panel(
                "Failed runs by job, last 24 h",
                "Runs of each Dagster job that failed in the last 24 hours.",
                (
                    (
                        "sum by (namespace, exported_job) ("
                        + one_replica(f'increase(dagster_runs_finished_total{{status="FAILURE", {NS}}}[24h])')
                        + ") > 0",
                        "{{namespace}} {{exported_job}}",
                    ),
                ),
                kind="table",
                width=12,
            ),
            Panel(
                "Run duration p95",
                "95th percentile run duration by Dagster job.",
                (
                    (
                        _quantile(0.95, "dagster_run_duration_seconds", "namespace, exported_job", "30m"),
                        "{{namespace}} {{exported_job}}",
                    ),
                ),
                unit="s",
                width=12,
            ),
            Panel(
                "Step duration p95",
                "95th percentile step duration by Dagster job and step.",
                (
                    (
                        _quantile(
                            0.95, "dagster_step_duration_seconds", "namespace, exported_job, step", "30m"
                        ),
                        "{{namespace}} {{exported_job}} {{step}}",
                    ),
                ),
                unit="s",
                width=12,
            ),
        ),
    ),
    (
        "Dagster assets and checks",
        (
            Panel(
                "Asset materializations",
                "Materializations per second by asset.",
                (
                    (
                        "sum by (namespace, asset_key) ("
                        + one_replica(f"rate(dagster_asset_materializations_total{{{NS}}}[5m])")
                        + ")",
                        "{{namespace}} {{asset_key}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Time since last materialization",
                "Seconds since each asset was last materialized.",
                (
                    (
                        "time() - max by (namespace, asset_key) "
                        f"(dagster_asset_last_materialization_timestamp_seconds{{{NS}}})",
                        "{{namespace}} {{asset_key}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Asset freshness",
                "Current freshness state (pass, warn, fail, unknown) of each asset with a freshness policy.",
                (
                    (
                        f"max by (namespace, asset_key, state) (dagster_asset_freshness_state{{{NS}}}) == 1",
                        "{{namespace}} {{asset_key}} {{state}}",
                    ),
                ),
                kind="table",
            ),
            Panel(
                "Check evaluations",
                "Check evaluations per second by outcome and severity.",
                (
                    (
                        "sum by (outcome, severity) ("
                        + one_replica(f"rate(dagster_asset_check_evaluations_total{{{NS}}}[5m])")
                        + ")",
                        "{{outcome}} {{severity}}",
                    ),
                ),
                unit="ops",
                width=12,
            ),
            Panel(
                "Failed checks, last 24 h",
                "Failed evaluations of each check in the last 24 hours, its severity and whether it blocks.",
                (
                    (
                        "sum by (namespace, asset_key, check_name, severity, blocking) ("
                        + one_replica(
                            f'increase(dagster_asset_check_evaluations_total{{outcome="failed", {NS}}}[24h])'
                        )
                        + ") > 0",
                        "{{namespace}} {{asset_key}} {{check_name}} {{severity}} blocking={{blocking}}",
                    ),
                ),
                kind="table",
                width=12,
            ),
        ),
    ),
    (
        "Dagster schedules, sensors and daemons",
        (
            Panel(
                "Ticks by status",
                "Schedule and sensor ticks per hour, by result.",
                (
                    (
                        "sum by (namespace, type, name, status) ("
                        + one_replica(f"increase(dagster_instigator_ticks_total{{{NS}}}[1h])")
                        + ")",
                        "{{namespace}} {{type}} {{name}} {{status}}",
                    ),
                ),
                width=12,
            ),
            Panel(
                "Time since last tick",
                "Seconds since each schedule's and sensor's latest finished tick, by its result.",
                (
                    (
                        "time() - max by (namespace, type, name, status) "
                        f"(dagster_instigator_last_tick_timestamp_seconds{{{NS}}})",
                        "{{namespace}} {{type}} {{name}} {{status}}",
                    ),
                ),
                unit="s",
                width=12,
            ),
            Panel(
                "Daemon heartbeat age",
                "Seconds since each daemon's last heartbeat; a rising line means a stalled daemon.",
                (
                    (
                        "max by (namespace, job, daemon_type) "
                        f"(dagster_daemon_heartbeat_age_seconds{{{NS}}})",
                        "{{namespace}} {{job}} {{daemon_type}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Code location load errors",
                "Code locations that fail to load (1 = error).",
                (
                    (
                        f"max by (namespace, job, location) (dagster_code_location_load_errors{{{NS}}})",
                        "{{namespace}} {{job}} {{location}}",
                    ),
                ),
            ),
            Panel(
                "Definitions build time",
                "Seconds the code server took to build the Dagster definitions.",
                (
                    (
                        f"max by (namespace, job, location) (phlo_definitions_build_seconds{{{NS}}})",
                        "{{namespace}} {{job}} {{location}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Versions",
                "Dagster and phlo-dagster versions each webserver deployment runs.",
                (
                    (
                        "max by (namespace, job, dagster_version, phlo_dagster_version) "
                        f"(dagster_build_info{{{NS}}})",
                        "{{namespace}} {{job}} {{dagster_version}} {{phlo_dagster_version}}",
                    ),
                ),
                kind="table",
                width=24,
            ),
        ),
    ),
)


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    table = panel.kind == "table"
    targets = [
        {
            "refId": chr(ord("A") + i),
            "expr": expr,
            "legendFormat": legend,
            "datasource": _datasource(),
            **({"instant": True, "format": "table"} if table else {}),
        }
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
        "options": _options(panel.kind),
        "targets": targets,
    }


def _options(kind: str) -> dict[str, Any]:
    if kind == "timeseries":
        return {"legend": {"displayMode": "list", "placement": "bottom"}}
    if kind == "table":
        return {"showHeader": True}
    return {"reduceOptions": {"calcs": ["lastNotNull"]}}


def _variable(name: str, label: str, source: str) -> dict[str, Any]:
    """A multi-value namespace variable read from a series that exists before any run."""
    query = f"label_values({source}, namespace)"
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": _datasource(),
        "query": {"query": query, "refId": name},
        "definition": query,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {},
        "refresh": 2,
        "hide": 0,
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
                _variable("namespace", "Namespace", NAMESPACE_SOURCE),
                _variable("operator_namespace", "Operator namespace", OPERATOR_NAMESPACE_SOURCE),
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def render_dashboard_json() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"
